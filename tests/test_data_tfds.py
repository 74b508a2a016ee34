"""TFDS builders on fake data written here (TFDS dummy-data style), plus the real data if present."""

import json

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from xtr_jax.data import tfds_builders  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch):
  monkeypatch.setenv("XTR_JAX_OFFLINE", "1")


def _build(cls, config, manual_dir, data_dir):
  builder = cls(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  )
  return builder


def test_swim_ir_configs_cover_the_data_card():
  names = {c.name for c in tfds_builders.SwimIr.BUILDER_CONFIGS}
  assert len(names) == 32 + 18
  assert {"cross_lingual_ja", "cross_lingual_as", "monolingual_en", "monolingual_yo"} <= names
  assert "cross_lingual_en" not in names


def test_swim_ir_builds_from_manual_dir(tmp_path):
  manual = tmp_path / "manual"
  (manual / "cross_lingual").mkdir(parents=True)
  rows = [
    {"_id": f"id{i}", "lang": "Japanese", "code": "ja", "query": f"質問{i}", "title": f"T{i}",
     "text": f"text {i}", "source": "fake"}
    for i in range(7)
  ]  # fmt: skip
  (manual / "cross_lingual" / "ja.jsonl").write_text(
    "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
  )
  builder = _build(tfds_builders.SwimIr, "cross_lingual_ja", manual, tmp_path / "tfds")
  assert builder.info.splits["train"].num_examples == 7
  got = sorted(
    (ex["_id"].decode(), ex["query"].decode(), ex["text"].decode())
    for ex in tfds.as_numpy(builder.as_dataset(split="train"))
  )
  assert got == sorted((r["_id"], r["query"], r["text"]) for r in rows)


def test_swim_ir_missing_file_names_expected_paths(tmp_path):
  (tmp_path / "manual").mkdir()
  with pytest.raises(FileNotFoundError, match=r"monolingual/fi\.jsonl.*manual_dir="):
    _build(tfds_builders.SwimIr, "monolingual_fi", tmp_path / "manual", tmp_path / "tfds")


def test_xor_queries_and_corpus(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "xor_dev_retrieve_eng_span_v1_1.jsonl").write_text(
    json.dumps({"id": "1", "question": "q?", "lang": "ja", "answers": ["a", "b"]}) + "\n"
  )
  (manual / "xor_test_retrieve_eng_span_q_only_v1_1.jsonl").write_text(
    json.dumps({"id": "2", "question": "r?", "lang": "fi"}) + "\n"
  )
  (manual / "corpus.tsv").write_text("id\ttext\ttitle\nd1\tone\tT1\nd2\ttwo\tT2\nd3\tthree\tT3\n")
  q = _build(tfds_builders.XorTydiRetrieve, "queries", manual, tmp_path / "tfds")
  assert set(q.info.splits) == {"dev", "test"}
  (dev,) = tfds.as_numpy(q.as_dataset(split="dev"))
  assert dev["lang"] == b"ja" and list(dev["answers"]) == [b"a", b"b"]
  (test,) = tfds.as_numpy(q.as_dataset(split="test"))
  assert test["id"] == b"2" and len(test["answers"]) == 0
  c = _build(tfds_builders.XorTydiRetrieve, "corpus", manual, tmp_path / "tfds")
  got = sorted((ex["id"], ex["title"]) for ex in tfds.as_numpy(c.as_dataset(split="train")))
  assert got == [(b"d1", b"T1"), (b"d2", b"T2"), (b"d3", b"T3")]


def test_xor_corpus_beam_config_builds_the_same_examples(tmp_path):
  """The Beam build of the corpus (apache-beam is in the tested environment) equals the plain
  one, DPR quoting included: both read through data.formats.read_corpus."""
  import apache_beam  # noqa: F401  (in the tested environment, [all]: fail, not skip)

  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "corpus.tsv").write_text(
    'id\ttext\ttitle\nd1\tone\tT1\nd2\t"a ""quoted"" text"\tT2\nd3\t"kept" as is."\tT3\n'
  )

  def examples(config):
    b = _build(tfds_builders.XorTydiRetrieve, config, manual, tmp_path / config)
    rows = tfds.as_numpy(b.as_dataset(split="train"))
    return sorted((ex["id"].decode(), ex["text"].decode(), ex["title"].decode()) for ex in rows)

  want = [("d1", "one", "T1"), ("d2", 'a "quoted" text', "T2"), ("d3", '"kept" as is."', "T3")]
  assert examples("corpus") == want
  assert examples("corpus_beam") == want


def test_builds_from_shared_data(shared_data, tmp_path):
  b = _build(
    tfds_builders.SwimIr, "cross_lingual_fi", shared_data / "pairs_swim_ir_layout", tmp_path
  )
  assert b.info.splits["train"].num_examples == 1863
  q = _build(tfds_builders.XorTydiRetrieve, "queries", shared_data / "xor_mini", tmp_path)
  assert q.info.splits["dev"].num_examples == 931
