"""BM25 baseline: ranking, score-0 filler and the TREC output."""

import json

from xtr_jax.evaluation import io
from xtr_jax.experiments import bm25


def test_bm25_ranks_matching_passages_first_and_fills(tmp_path):
  corpus = {f"p{i}": ("", f"filler text number {i}") for i in range(20)}
  corpus["p7"] = ("Sibelius", "Jean Sibelius composed Finlandia in 1899.")
  corpus["p3"] = ("", "Finlandia is a symphonic poem.")
  queries = {
    "a": io.Query("a", "fi", "Who composed Finlandia? Sibelius"),
    "b": io.Query("b", "ja", "誰が"),  # matches nothing
  }
  run = bm25.bm25_run(queries, corpus, k=5)
  assert [p for p, _ in run["a"][:2]] == ["p7", "p3"]
  assert run["a"][0][1] > run["a"][1][1] > 0
  assert all(s == 0.0 for _, s in run["a"][2:]) and len(run["a"]) == 5
  # No match: 5 distinct random passages, not the first ones of the corpus, same every time.
  assert len({p for p, _ in run["b"]}) == 5
  assert run["b"] == bm25.bm25_run(queries, corpus, k=5)["b"]
  assert [p for p, _ in run["b"]] != ["p0", "p1", "p2", "p3", "p4"]


def test_bm25_cli_writes_trec_run(tmp_path):
  (tmp_path / "c.tsv").write_text("id\ttext\ttitle\nx1\tOslo is in Norway\tOslo\nx2\tRome\tRome\n")
  (tmp_path / "q.jsonl").write_text(json.dumps({"id": "q", "lang": "fi", "question": "Oslo"}))
  out = tmp_path / "run.trec"
  argv = ["--queries", str(tmp_path / "q.jsonl"), "--corpus", str(tmp_path / "c.tsv")]
  assert bm25.main([*argv, "--output", str(out), "--k", "2"]) == 0
  assert [p for p, _ in io.read_trec_run(out)["q"]] == ["x1", "x2"]
