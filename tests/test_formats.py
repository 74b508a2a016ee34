"""data/formats.py: one reader per format, checked against independent references.

References: Python's csv module for DPR's quoting, ir-measures' TREC readers for runs and
qrels, csv's QUOTE_NONE tab reader (what the index used to read) on the real corpus, and
round trips through the writers. Remote files: the in-memory ``gs://`` of test_io.py.
"""

from __future__ import annotations

import csv
import io
import json
import sys

import ir_measures
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xtr_jax import io as xio
from xtr_jax.data import formats
from xtr_jax.scale import shards

_text = st.text(
  st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\r\n"), max_size=20
)


# ----------------------------------------------------------------------------- corpus quoting


@given(value=_text)
def test_unquote_undoes_csv_quoting_like_the_csv_module(value):
  buf = io.StringIO()
  csv.writer(buf, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\n").writerow([value])
  quoted = buf.getvalue().rstrip("\n")
  assert formats.unquote_field(quoted) == value == next(csv.reader([quoted], delimiter="\t"))[0]


def test_only_well_formed_quoted_fields_are_unquoted():
  assert formats.unquote_field('"a ""quoted"" text"') == 'a "quoted" text'
  assert formats.unquote_field('""') == ""
  # XOR-TyDi's raw texts that merely start and end with a quote keep it (xm007625).
  raw = '"Newsweek" named Hideo Kojima one of the top ten; "Hot 100 Developers 2008."'
  assert formats.unquote_field(raw) == raw
  assert formats.unquote_field('"') == '"' and formats.unquote_field('say "hi"') == 'say "hi"'


@settings(
  max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.tuples(_text, _text), max_size=6))
def test_corpus_write_read_round_trip(tmp_path, rows):
  passages = [formats.Passage(f"p{i}", text, title) for i, (text, title) in enumerate(rows)]
  path = tmp_path / "c.tsv"
  formats.write_corpus(path, passages)
  assert list(formats.read_corpus(path)) == passages


def test_header_order_optional_title_and_extra_columns(tmp_path):
  path = tmp_path / "c.tsv"
  path.write_text("Title\tID\turl\ttext\r\nT\tp1\thttp://x\thello\r\n\r\n")
  assert list(formats.read_corpus(path)) == [formats.Passage("p1", "hello", "T")]
  path.write_text("id\ttext\np1\tno title\n")
  assert list(formats.read_corpus(path)) == [formats.Passage("p1", "no title", "")]


@pytest.mark.parametrize(
  ("content", "message"),
  [
    ("", r"c\.tsv:1: empty corpus file"),
    ("pid\tbody\n", r"c\.tsv:1: header must name columns 'id' and 'text'"),
    ("id\ttext\ttitle\np1\tx\tT\np2\tonly two\n", r"c\.tsv:3: expected 3 tab-separated fields"),
    ("id\ttext\ttitle\n\tx\tT\n", r"c\.tsv:2: empty passage id"),
  ],
)
def test_corpus_errors_name_file_and_line(tmp_path, content, message):
  path = tmp_path / "c.tsv"
  path.write_text(content)
  with pytest.raises(formats.FormatError, match=message):
    list(formats.read_corpus(path))
  with pytest.raises(FileNotFoundError, match="corpus file not found"):
    list(formats.read_corpus(tmp_path / "none.tsv"))


def test_skip_bad_records_counts(tmp_path):
  path = tmp_path / "c.tsv"
  path.write_bytes(b"id\ttext\ttitle\np1\ta\tA\np2\t\xff\tB\np3\tonly\np4\td\tD\n")
  stats = formats.ReadStats()
  got = [p.id for p in formats.read_corpus(path, skip_bad_records=True, stats=stats)]
  assert got == ["p1", "p4"] and (stats.records, stats.skipped) == (2, 2)
  assert "c.tsv:3: invalid UTF-8" in stats.errors[0] and "c.tsv:4: expected 3" in stats.errors[1]


def test_byte_range_shards_read_what_the_corpus_reader_reads(tmp_path):
  passages = [
    formats.Passage(f"p{i}", f'"{i}" says ""hi""' if i % 2 else "plain", "T") for i in range(7)
  ]
  path = tmp_path / "c.tsv"
  formats.write_corpus(path, passages)
  specs = shards.plan_shards(str(path), 3)
  assert [s.num_rows for s in specs] == [3, 3, 1]
  assert [p for s in specs for p in shards.read_shard(str(path), s)] == passages


def test_real_corpus_reads_as_the_index_read_it(shared_data):
  """On xor_mini the one reader equals csv's QUOTE_NONE tab reader (the index's before)."""
  path = shared_data / "xor_mini" / "corpus.tsv"
  csv.field_size_limit(sys.maxsize)
  with open(path, encoding="utf-8", newline="") as f:
    rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
  got = list(formats.read_corpus(path))
  assert len(got) == 9310 and got == [formats.Passage(*r) for r in rows]


def test_corpus_on_a_remote_filesystem(memory_gcs):
  passages = [formats.Passage("p1", 'a "b"', "T"), formats.Passage("p2", "c", "")]
  formats.write_corpus("gs://bucket/corpus.tsv", passages)
  assert list(formats.read_corpus("gs://bucket/corpus.tsv")) == passages
  assert list(memory_gcs) == ["bucket/corpus.tsv"]


# ----------------------------------------------------------------------------- queries


def test_queries_jsonl_and_tsv(tmp_path):
  jsonl = tmp_path / "q.jsonl"
  jsonl.write_text(
    json.dumps({"id": 7, "lang": "ja", "question": "東京?", "answers": ["Tokyo"]}) + "\n\n"
    + json.dumps({"id": "8", "question": "no lang"}) + "\n"
  )  # fmt: skip
  with pytest.raises(
    formats.FormatError, match=r"q\.jsonl:3: query record lacks field\(s\) \['lang'\]"
  ):
    formats.read_queries(jsonl)
  got = formats.read_queries(jsonl, require_lang=False)
  assert got == {
    "7": formats.Query("7", "ja", "東京?", ("Tokyo",)),
    "8": formats.Query("8", "", "no lang"),
  }
  tsv = tmp_path / "q.tsv"
  tsv.write_text("1\tfirst question\n2\tsecond\n2\tagain\n")
  with pytest.raises(formats.FormatError, match=r"q\.tsv:3: duplicate query id '2'"):
    formats.read_queries(tsv)
  assert [q.question for q in formats.iter_queries(tsv)] == ["first question", "second", "again"]


# ----------------------------------------------------------------------------- TREC runs, qrels


def test_trec_run_round_trip_and_ir_measures_agree(tmp_path):
  run = {"q1": [("d3", 2.5), ("d1", 1.0), ("d2", 1.0)], "q2": [("d9", -0.5)]}
  path = tmp_path / "sub" / "run.trec"
  formats.write_trec_run(path, run, tag="t")
  assert formats.read_trec_run(path) == run
  ref = {}
  for r in ir_measures.read_trec_run(str(path)):
    ref.setdefault(r.query_id, {})[r.doc_id] = r.score
  assert {q: dict(ranked) for q, ranked in formats.read_trec_run(path).items()} == ref


def test_qrels_agree_with_ir_measures(tmp_path):
  path = tmp_path / "dev.qrels"
  path.write_text("q1 0 d1 1\nq1 0 d2 0\n\nq2 0 d3 2\n")
  ref = {}
  for q in ir_measures.read_trec_qrels(str(path)):
    ref.setdefault(q.query_id, {})[q.doc_id] = q.relevance
  assert formats.read_qrels(path) == ref == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
  path.write_text("q1 0 d1 x\n")
  with pytest.raises(formats.FormatError, match=r"dev\.qrels:1: relevance must be an int"):
    formats.read_qrels(path)


# ----------------------------------------------------------------------------- JSONL formats


def test_generated_questions_line_round_trip(tmp_path):
  path = tmp_path / "gen.jsonl"
  path.write_text(
    formats.generated_queries_line("d1", {"ja": ["質問?"], "fi": []})
    + formats.generated_queries_line("d2", {"ru": ("вопрос?",)})
  )
  got = [(g.docid, g.generated_queries) for g in formats.read_generated_queries(path)]
  assert got == [("d1", {"ja": ["質問?"], "fi": []}), ("d2", {"ru": ["вопрос?"]})]


def test_pairs_jsonl_write_read(tmp_path):
  rows = [
    {"_id": "x1", "lang": "Japanese", "code": "ja", "query": "q?", "title": "T", "text": "t",
     "source": "s"},
  ]  # fmt: skip
  path = tmp_path / "deep" / "ja.jsonl"
  formats.write_jsonl(path, rows)
  (rec,) = formats.read_swim_ir(path)
  assert (rec.id, rec.code, rec.query, rec.extra) == ("x1", "ja", "q?", {"source": "s"})
  assert xio.read_text(path) == json.dumps(rows[0], ensure_ascii=False) + "\n"
