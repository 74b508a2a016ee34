"""Readers: round trips, file:line errors, skip_bad_records counts (pure Python, no TF)."""

import gzip
import json

import pytest

from xtr_jax.data import languages, locations, readers


def _write_jsonl(path, rows):
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
  return path


def _swim(i, code="ja"):
  return {
    "_id": f"p{i}",
    "lang": "Japanese",
    "code": code,
    "query": f"q{i}",
    "title": f"T{i}",
    "text": f"text {i}",
    "source": "x",
  }


def test_swim_ir_round_trip_and_extra_keys(tmp_path):
  path = _write_jsonl(tmp_path / "ja.jsonl", [_swim(i) for i in range(5)])
  records = list(readers.read_swim_ir(path))
  assert [r.id for r in records] == [f"p{i}" for i in range(5)]
  assert records[3].query == "q3" and records[3].title == "T3" and records[3].text == "text 3"
  assert records[0].extra == {"source": "x"}


def test_swim_ir_gzip(tmp_path):
  path = tmp_path / "ja.jsonl.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write(json.dumps(_swim(0)) + "\n")
  assert [r.id for r in readers.read_swim_ir(path)] == ["p0"]


def test_swim_ir_missing_key_names_file_and_line(tmp_path):
  bad = _swim(1)
  del bad["query"]
  path = _write_jsonl(tmp_path / "ja.jsonl", [_swim(0), bad, _swim(2)])
  with pytest.raises(readers.RecordError, match=r"ja\.jsonl:2: .*missing key\(s\) query"):
    list(readers.read_swim_ir(path))


def test_swim_ir_bad_json_and_skip_counts(tmp_path):
  path = _write_jsonl(
    tmp_path / "ja.jsonl", [_swim(0), "{not json", _swim(2), "[1, 2]", "", _swim(5)]
  )
  with pytest.raises(readers.RecordError, match=r"ja\.jsonl:2: invalid JSON"):
    list(readers.read_swim_ir(path))
  stats = readers.ReadStats()
  ids = [r.id for r in readers.read_swim_ir(path, skip_bad_records=True, stats=stats)]
  assert ids == ["p0", "p2", "p5"]
  assert stats.records == 3 and stats.skipped == 2
  assert "ja.jsonl:4" in stats.errors[1]


def test_corpus_tsv_streams_and_reports_bad_lines(tmp_path):
  path = tmp_path / "corpus.tsv"
  path.write_text(
    'id\ttext\ttitle\nd1\thello world\tT1\nd2\t"a ""quoted"" text"\tT2\nd3\tonly two\n'
  )
  with pytest.raises(
    readers.RecordError,
    match=r"corpus\.tsv:4: expected 3 tab-separated fields id\\ttext\\ttitle, got 2",
  ):
    list(readers.read_corpus(path))
  stats = readers.ReadStats()
  got = list(readers.read_corpus(path, skip_bad_records=True, stats=stats))
  assert [(p.id, p.text, p.title) for p in got] == [
    ("d1", "hello world", "T1"),
    ("d2", 'a "quoted" text', "T2"),
  ]
  assert (stats.records, stats.skipped) == (2, 1)
  # Streaming: the first passage comes out before the bad line is read.
  assert next(readers.read_corpus(path)).id == "d1"


def test_corpus_bad_header(tmp_path):
  path = tmp_path / "c.tsv"
  path.write_text("pid\tbody\n1\tx\n")
  with pytest.raises(readers.RecordError, match=r"c\.tsv:1: header must name"):
    list(readers.read_corpus(path))


def test_xor_queries_answers_optional_and_typed(tmp_path):
  path = _write_jsonl(
    tmp_path / "q.jsonl",
    [
      {"id": "1", "question": "a?", "lang": "ja", "answers": ["x", "y"]},
      {"id": "2", "question": "b?", "lang": "fi"},
      {"id": "3", "question": "c?", "lang": "fi", "answers": "not a list"},
    ],
  )
  with pytest.raises(readers.RecordError, match=r"q\.jsonl:3: .*'answers' must be a list"):
    list(readers.read_xor_queries(path))
  got = list(readers.read_xor_queries(path, skip_bad_records=True))
  assert got[0].answers == ("x", "y") and got[1].answers == () and got[1].lang == "fi"


def test_generated_queries_and_dpr(tmp_path):
  gq = _write_jsonl(
    tmp_path / "gq.jsonl",
    [{"docid": "d1", "generated_queries": {"ja": ["q1", "q2"]}}, {"docid": "d2"}],
  )
  with pytest.raises(readers.RecordError, match=r"gq\.jsonl:2: .*generated_queries"):
    list(readers.read_generated_queries(gq))
  stats = readers.ReadStats()
  got = list(readers.read_generated_queries(gq, skip_bad_records=True, stats=stats))
  assert got[0].generated_queries == {"ja": ["q1", "q2"]} and stats.skipped == 1

  dpr = tmp_path / "xor_train_full.json"
  dpr.write_text(
    json.dumps(
      [
        {
          "question": "q?",
          "lang": "ja",
          "answers": ["a"],
          "positive_ctxs": [{"title": "T", "text": "pos", "passage_id": 7}],
          "hard_negative_ctxs": [{"title": "N", "text": "neg"}],
        },
        {"question": "q2?", "positive_ctxs": "oops"},
      ]
    )
  )
  with pytest.raises(readers.RecordError, match=r"xor_train_full\.json: record 1: .*positive_ctxs"):
    list(readers.read_dpr(dpr))
  (ex,) = readers.read_dpr(dpr, skip_bad_records=True)
  assert ex.positives[0] == readers.Passage("7", "pos", "T")
  assert ex.hard_negatives[0].text == "neg"


def test_qrels(tmp_path):
  path = tmp_path / "dev.qrels"
  path.write_text("q1 0 d1 1\nq1 0 d2 0\nq2 0 d3 1\n")
  assert readers.read_qrels(path) == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 1}}
  path.write_text("q1 0 d1\n")
  with pytest.raises(readers.RecordError, match=r"dev\.qrels:1: expected 4 fields"):
    readers.read_qrels(path)


def test_missing_files_and_unknown_languages(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match="nope.jsonl"):
    list(readers.read_swim_ir(tmp_path / "nope.jsonl"))
  with pytest.raises(ValueError, match="valid settings: cross_lingual, monolingual"):
    languages.check_setting("bilingual")
  with pytest.raises(ValueError, match="valid languages: ar, bn"):
    languages.check_setting("monolingual", "el")
  monkeypatch.setenv("XTR_JAX_SWIM_IR_DIR", str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r"cross_lingual/xx\.jsonl"):
    locations.swim_ir_file("cross_lingual", "xx")
  monkeypatch.setenv("XTR_JAX_XOR_DIRS", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="xor_dev_retrieve_eng_span_v1_1.jsonl"):
    locations.find_xor_file("dev")


def test_language_lists_follow_the_data_card():
  assert len(languages.SWIM_IR_LANGUAGES) == 33
  assert len(languages.SWIM_IR_MONOLINGUAL) == 18 and "en" in languages.SWIM_IR_MONOLINGUAL
  assert "en" not in languages.SWIM_IR_CROSS_LINGUAL
  assert set(languages.SWIM_IR_INDIC) <= set(languages.SWIM_IR_CROSS_LINGUAL)


def test_shared_data_reads_cleanly(shared_data):
  files = sorted((shared_data / "pairs_swim_ir_layout" / "cross_lingual").glob("*.jsonl"))
  assert len(files) == 13
  for f in files:
    stats = readers.ReadStats()
    codes = {r.code for r in readers.read_swim_ir(f, stats=stats)}
    assert codes == {f.stem} and stats.records > 1000 and stats.skipped == 0
  stats = readers.ReadStats()
  n = sum(1 for _ in readers.read_corpus(shared_data / "xor_mini" / "corpus.tsv", stats=stats))
  assert n == stats.records == 9310
