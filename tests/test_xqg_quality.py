"""benchmarks/xqg_quality.py: the passage-specificity measures on hand-checked cases."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
  "xqg_quality", ROOT / "benchmarks" / "xqg_quality.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

PASSAGES = {"p1": "Helsinki is the capital of Finland since 1812.", "p2": "Tokyo is large."}


def test_question_stats_by_hand():
  questions = [
    ("p1", "fi", "Mikä on Suomen pääkaupunki vuonna 1812?"),  # copies "1812"
    ("p2", "fi", "Mikä on tämä?"),
    ("p1", "fi", "Mikä on tämä?"),
    ("p1", "ru", "Что такое \u2047?"),  # unk piece
    ("p2", "ru", "Where is Tokyo?"),  # wrong script, copies "tokyo"
  ]
  stats = bench.question_stats(questions, PASSAGES)
  assert stats["fi"] == {
    "n": 3,
    "script": 1.0,
    "distinct": 2 / 3,
    "top": 2 / 3,
    "copy": 1 / 3,
    "unk": 0.0,
  }
  assert stats["ru"] == {
    "n": 2,
    "script": 0.5,
    "distinct": 1.0,
    "top": 0.5,
    "copy": 0.5,
    "unk": 0.5,
  }


def test_self_recall_parses_query_ids():
  run = {"p1|fi|0": ["p2", "p1"], "p2|fi|1": ["p1"], "p|x|ru|2": ["p|x"] + ["z"] * 30}
  got = bench.self_recall(run, ks=(1, 2))
  assert got == {"fi": {1: 0.0, 2: 0.5}, "ru": {1: 1.0, 2: 1.0}}


def test_cli_writes_self_queries_and_reads_the_run(tmp_path):
  corpus = tmp_path / "corpus.tsv"
  corpus.write_text("id\ttext\ttitle\n" + "".join(f"{k}\t{v}\t\n" for k, v in PASSAGES.items()))
  gen = tmp_path / "gen.jsonl"
  rows = [{"docid": "p1", "generated_queries": {"fi": ["Milloin 1812?"]}}]
  rows.append({"docid": "p2", "generated_queries": {"fi": ["Mikä on Tokyo?"]}})
  gen.write_text("".join(json.dumps(r) + "\n" for r in rows))
  script = str(ROOT / "benchmarks" / "xqg_quality.py")
  queries = tmp_path / "self.jsonl"
  args = [sys.executable, script, "--generated", str(gen), "--corpus", str(corpus)]
  out = subprocess.run(args + ["--self_queries", str(queries)], capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  written = [json.loads(x) for x in queries.read_text().splitlines()]
  assert sorted(q["id"] for q in written) == ["p1|fi|0", "p2|fi|1"]
  run = tmp_path / "self.trec"
  run.write_text("p1|fi|0 Q0 p1 1 2.0 t\np1|fi|0 Q0 p2 2 1.0 t\np2|fi|1 Q0 p1 1 1.0 t\n")
  out = subprocess.run(args + ["--self_run", str(run)], capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  # fi: 2 questions, both distinct, both copy a passage word; self R@20 = 1 of 2.
  assert "| fi | 2 | 100.0 | 100.0 | 50.0 | 100.0 | 0.0 | 50.0 | 50.0 |" in out.stdout
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps({"docid": "nope", "generated_queries": {"fi": ["?"]}}) + "\n")
  out = subprocess.run(
    [sys.executable, script, "--generated", str(bad), "--corpus", str(corpus)],
    capture_output=True,
    text=True,
  )
  assert out.returncode != 0 and "1 docids not in" in out.stderr
