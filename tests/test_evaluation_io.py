"""Readers/writers: round trips and errors that name the file and line."""

import json

import pytest

from xtr_jax.evaluation import io


def test_trec_run_round_trip_and_order(tmp_path):
  path = tmp_path / "run.trec"
  # Written out of order: reading sorts by score, ties broken by the rank column.
  path.write_text("q1 Q0 b 2 1.0 t\nq1 Q0 a 1 1.0 t\nq1 Q0 c 3 3.5 t\n\nq2 Q0 x 1 -2 t\n")
  run = io.read_trec_run(path)
  assert run == {"q1": [("c", 3.5), ("a", 1.0), ("b", 1.0)], "q2": [("x", -2.0)]}
  out = tmp_path / "out" / "run.trec"
  io.write_trec_run(out, run, tag="me")
  assert io.read_trec_run(out) == run
  assert out.read_text().splitlines()[0] == "q1 Q0 c 1 3.500000 me"
  assert [p.name for p in out.parent.iterdir()] == ["run.trec"]  # no temp file left


@pytest.mark.parametrize(
  "line,match",
  [
    ("q1 Q0 a 1 0.5", "expected 6 fields"),
    ("q1 Q0 a one 0.5 t", "rank must be an int"),
    ("q1 Q0 a 1 high t", "score='high'"),
  ],
)
def test_trec_run_errors_name_file_and_line(tmp_path, line, match):
  path = tmp_path / "bad.trec"
  path.write_text(f"q0 Q0 z 1 1.0 t\n{line}\n")
  with pytest.raises(io.FormatError, match=match) as e:
    io.read_trec_run(path)
  assert f"{path}:2:" in str(e.value)


def test_trec_run_duplicate_passage(tmp_path):
  path = tmp_path / "dup.trec"
  path.write_text("q Q0 a 1 1 t\nq Q0 a 2 0.5 t\n")
  with pytest.raises(io.FormatError, match=r"dup.trec:2: passage 'a' appears twice"):
    io.read_trec_run(path)


def test_missing_files():
  for reader in (io.read_trec_run, io.read_qrels, io.read_queries, io.read_xor_predictions):
    with pytest.raises(FileNotFoundError, match="/no/such/file"):
      reader("/no/such/file")


def test_qrels(tmp_path):
  path = tmp_path / "q.qrels"
  path.write_text("q1 0 a 1\nq1 0 b 2\nq2 0 c 0\n")
  assert io.read_qrels(path) == {"q1": {"a": 1, "b": 2}, "q2": {"c": 0}}
  path.write_text("q1 0 a 1\nq1 0 b\n")
  with pytest.raises(io.FormatError, match=r"q.qrels:2: expected 4 fields"):
    io.read_qrels(path)


def test_queries(tmp_path):
  path = tmp_path / "q.jsonl"
  rows = [
    {"id": "1", "lang": "ja", "question": "東京?", "answers": ["Tokyo"]},
    {"id": "2", "lang": "fi", "question": "Missä?"},
  ]
  path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
  q = io.read_queries(path)
  assert q["1"] == io.Query("1", "ja", "東京?", ("Tokyo",)) and q["2"].answers == ()
  path.write_text(json.dumps(rows[0]) + "\n" + '{"id": "3", "question": "x"}\n')
  with pytest.raises(io.FormatError, match=r"q.jsonl:2: query record lacks field\(s\) \['lang'\]"):
    io.read_queries(path)
  path.write_text(json.dumps(rows[0]) + "\n{broken\n")
  with pytest.raises(io.FormatError, match=r"q.jsonl:2: invalid JSON"):
    io.read_queries(path)
  path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n")
  with pytest.raises(io.FormatError, match=r"q.jsonl:2: duplicate query id '1'"):
    io.read_queries(path)


def test_xor_predictions_round_trip(tmp_path):
  preds = [io.XorPrediction("1", "ja", ("p one", "p two")), io.XorPrediction("2", "te", ())]
  path = tmp_path / "pred.json"
  io.write_xor_predictions(path, preds)
  assert io.read_xor_predictions(path) == preds
  path.write_text(json.dumps([{"id": "1", "lang": "ja", "ctxs": [{"text": "t", "id": 3}]}]))
  assert io.read_xor_predictions(path)[0].ctxs == ("t",)
  path.write_text(json.dumps([{"id": "1", "ctxs": []}]))
  with pytest.raises(io.FormatError, match="prediction #0: needs 'id', 'lang' and 'ctxs'"):
    io.read_xor_predictions(path)
  path.write_text('[\n{"id": 1,,}\n]')
  with pytest.raises(io.FormatError, match=r"pred.json:2: not valid JSON"):
    io.read_xor_predictions(path)


def test_corpus_streaming_and_run_to_predictions(tmp_path):
  corpus = tmp_path / "corpus.tsv"
  corpus.write_text("id\ttext\ttitle\np1\tfirst text\tT1\np2\tsecond\tT2\np3\tthird\tT3\n")
  assert io.read_corpus_texts(corpus, ["p3", "p1"]) == {"p1": "first text", "p3": "third"}
  with pytest.raises(KeyError, match=r"1 passage id\(s\) of the run are not in corpus"):
    io.read_corpus_texts(corpus, ["p1", "p9"])
  queries = {"q": io.Query("q", "ko", "?", ("x",))}
  run = {"q": [("p2", 2.0), ("p1", 1.0)]}
  assert io.run_to_xor_predictions(run, queries, corpus) == [
    io.XorPrediction("q", "ko", ("second", "first text"))
  ]
  with pytest.raises(KeyError, match="not in the queries file"):
    io.run_to_xor_predictions({"zz": []}, queries, corpus)
  corpus.write_text("id\ttext\ttitle\np1\tfirst\n")
  with pytest.raises(io.FormatError, match=r"corpus.tsv:2: expected 3 tab-separated fields"):
    io.read_corpus_texts(corpus)
  corpus.write_text("pid\tbody\np1\tx\n")
  with pytest.raises(io.FormatError, match=r"corpus.tsv:1: header must name"):
    io.read_corpus_texts(corpus)
