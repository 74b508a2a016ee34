"""``xtr-jax search --query``: the ranked list (text / json / trec) is ``Retriever.search``'s,
with titles and texts looked up in the corpus the index was built from."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from xtr_jax import cli
from xtr_jax.data.formats import read_corpus
from xtr_jax.index.retriever import Retriever
from xtr_jax.index.testing import build_tiny_index, make_tiny_setup

QUESTIONS = ["river king mountain", "book school bank money"]
K = 5


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("cli_search"))
  setup = make_tiny_setup(root, num_passages=40)
  index = build_tiny_index(setup, os.path.join(root, "idx"))
  expected = Retriever.load(index).search(QUESTIONS, K)
  passages = {p.id: p for p in read_corpus(setup.corpus)}
  return setup, index, expected, passages


def _search(capsys, *argv: str) -> str:
  args = ["search", *argv]
  for q in QUESTIONS:
    args += ["--query", q]
  assert cli.main(args) == 0
  return capsys.readouterr().out


def test_json_is_the_retrievers_ranking_with_titles_and_texts(built, capsys):
  _, index, expected, passages = built
  got = json.loads(_search(capsys, "--index", index, "--k", str(K), "--format", "json"))
  assert [q["id"] for q in got] == ["1", "2"] and [q["question"] for q in got] == QUESTIONS
  for query, want in zip(got, expected, strict=True):
    assert [r["id"] for r in query["results"]] == [pid for pid, _ in want]
    assert [r["score"] for r in query["results"]] == pytest.approx([s for _, s in want], abs=1e-6)
    assert [r["rank"] for r in query["results"]] == list(range(1, K + 1))
    for r in query["results"]:
      assert (r["title"], r["text"]) == (passages[r["id"]].title, passages[r["id"]].text)


def test_text_lists_rank_score_id_title_and_snippet(built, capsys):
  _, index, expected, passages = built
  lines = _search(capsys, "--index", index, "--k", str(K), "--snippet_chars", "30").splitlines()
  assert lines[0] == f"query 1: {QUESTIONS[0]}"
  for rank, (pid, score) in enumerate(expected[0], 1):
    head, snippet = lines[2 * rank - 1], lines[2 * rank]
    assert head.split() == [str(rank), f"{score:.4f}", pid, *passages[pid].title.split()]
    text = " ".join(passages[pid].text.split())
    want = text if len(text) <= 30 else text[:29].rstrip() + "…"
    assert snippet.strip() == want and len(snippet.strip()) <= 30
  assert f"query 2: {QUESTIONS[1]}" in lines


def test_trec_output_file_and_queries_file(built, capsys, tmp_path):
  setup, index, expected, _ = built
  run = tmp_path / "new" / "folder" / "run.trec"  # the folder is created
  argv = ["--index", index, "--queries", setup.queries, "--output", str(run), "--k", str(K)]
  assert "format trec" in _search(capsys, *argv)
  rows = [line.split() for line in run.read_text().splitlines()]
  file_ids = [json.loads(line)["id"] for line in open(setup.queries, encoding="utf-8")]
  assert [r[0] for r in rows[::K]] == [*file_ids, "1", "2"]  # --queries first, then --query
  for n, want in enumerate(expected):
    got = rows[(len(file_ids) + n) * K : (len(file_ids) + n + 1) * K]
    assert [(r[2], int(r[3])) for r in got] == [(pid, i) for i, (pid, _) in enumerate(want, 1)]
    assert [float(r[4]) for r in got] == pytest.approx([s for _, s in want], abs=1e-6)


def test_corpus_flag_when_the_recorded_corpus_is_gone(built, capsys, tmp_path):
  setup, index, expected, passages = built
  moved_index = tmp_path / "idx"
  shutil.copytree(index, moved_index)
  manifest_path = moved_index / "manifest.json"
  manifest = json.loads(manifest_path.read_text())
  manifest["corpus"] = str(tmp_path / "gone.tsv")
  manifest_path.write_text(json.dumps(manifest))
  out = json.loads(_search(capsys, "--index", str(moved_index), "--format", "json"))
  assert "title" not in out[0]["results"][0]  # still ranked, no texts
  out = json.loads(
    _search(capsys, "--index", str(moved_index), "--format", "json", "--corpus", setup.corpus)
  )
  top = out[0]["results"][0]
  assert top["id"] == expected[0][0][0] and top["title"] == passages[top["id"]].title
