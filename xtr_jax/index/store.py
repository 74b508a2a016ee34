"""An index on disk: a directory with ``manifest.json``, arrays and ScaNN searchers.

Layout (format ``xtr_jax.token_index`` version 1)::

  manifest.json          format, version, fingerprints, counts, build parameters, files
  passage_ids.json       passage id of each passage row
  token_to_passage.npy   int32 [num_tokens]: passage row of each token vector
  vectors.npy            float16 [num_tokens, proj_dim] (for exact MaxSim / brute force)
  segments/seg_{i:05d}/  one ScaNN searcher per token range (``scann`` backend)
  compact/seg_{i:05d}/   inverted lists + PQ codes per token range (``compact`` backend,
                         ``compact.py``; its tokens are stored list by list, see there)

Tokens ``[0, num_corpus_tokens)`` come from the corpus; the rest are extra vectors
(e.g. xQG generated-question tokens) appended with ``build_index(extra_vectors=...)``.
A build writes into ``.NAME.tmp-PID`` beside the target and renames it at the end, so an
interrupted build never leaves a directory that loads; such leftovers are removed by the
next build of the same target.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable

import numpy as np

from xtr_jax import io as xio
from xtr_jax.index import compact
from xtr_jax.index.brute_force import BruteForceSearcher, first_nonfinite_row, merge_top_k
from xtr_jax.index.scann_index import ScannParams, ScannSearcher
from xtr_jax.io import atomic_write_json

FORMAT = "xtr_jax.token_index"
VERSION = 1
SHARDED_FORMAT = "xtr_jax.sharded_token_index"  # a directory of indexes (sharded_index.py)
SHARDED_VERSION = 1
MANIFEST = "manifest.json"
BACKENDS = ("scann", "brute_force", "compact")

ExtraVectors = Iterable[tuple[int | str, np.ndarray]]


class IndexFormatError(ValueError):
  """A missing, malformed or mismatched index."""


def check_finite(array, where: str, dtype=None) -> None:
  """One-line IndexFormatError naming ``where`` and the first row with a NaN or Inf.

  Why: such a vector loads and searches without complaint, and its NaN dot products make
  the top-k and every passage score built from it garbage. ``dtype``: as stored (see
  ``brute_force.first_nonfinite_row``); the scan is chunked, so memory stays flat.
  """
  row = first_nonfinite_row(array, dtype)
  if row is not None:
    raise IndexFormatError(f"{where}: row {row} has non-finite values")


def _dir_bytes(path: str) -> int:
  return sum(
    os.path.getsize(p)
    for p in glob.glob(os.path.join(path, "**"), recursive=True)
    if os.path.isfile(p)
  )


def _append_extra(
  vectors: np.ndarray,
  token_to_passage: np.ndarray,
  passage_ids: list[str],
  extra_vectors: ExtraVectors | None,
  extra_weight: float,
) -> tuple[np.ndarray, np.ndarray, int]:
  if extra_vectors is None:
    return vectors, token_to_passage, 0
  row_of = None
  dim = vectors.shape[1]
  new_v, new_t = [], []
  for n, (key, vecs) in enumerate(extra_vectors):
    if isinstance(key, str):
      row_of = row_of or {p: i for i, p in enumerate(passage_ids)}
      if key not in row_of:
        raise IndexFormatError(f"extra_vectors[{n}]: passage id {key!r} is not in the corpus")
      row = row_of[key]
    else:
      row = int(key)
      if not 0 <= row < len(passage_ids):
        raise IndexFormatError(
          f"extra_vectors[{n}]: passage row {row} outside [0, {len(passage_ids)})"
        )
    vecs = np.asarray(vecs, np.float32)
    if vecs.ndim != 2 or vecs.shape[1] != dim:
      raise IndexFormatError(f"extra_vectors[{n}]: shape {vecs.shape}, expected [n, {dim}]")
    with np.errstate(over="ignore"):  # an overflow to Inf is refused just below
      scaled = (vecs * extra_weight).astype(np.float16)
    check_finite(scaled, f"build_index: extra_vectors[{n}] (x extra_weight, as float16)")
    new_v.append(scaled)
    new_t.append(np.full((vecs.shape[0],), row, np.int32))
  if not new_v:
    return vectors, token_to_passage, 0
  extra = np.concatenate(new_v)
  return (
    np.concatenate([vectors, extra]),
    np.concatenate([token_to_passage, np.concatenate(new_t)]),
    extra.shape[0],
  )


def build_index(
  output_dir: str,
  vectors: np.ndarray,
  token_to_passage: np.ndarray,
  passage_ids: list[str],
  *,
  model_fingerprint: str,
  vocabulary_fingerprint: str = "",
  backend: str = "scann",
  scann_params: ScannParams = ScannParams(),
  compact_params: compact.CompactParams = compact.CompactParams(),
  segment_tokens: int = 0,
  extra_vectors: ExtraVectors | None = None,
  extra_weight: float = 1.0,
  metadata: dict | None = None,
  overwrite: bool = False,
) -> dict:
  """Writes an index directory atomically and returns its manifest.

  ``extra_vectors``: the augmentation hook, pairs (passage row or passage id, [n, d] vectors)
  appended after the corpus tokens and mapped to that passage, scaled by ``extra_weight``
  (so with unit vectors their dot products are multiplied by it). ``segment_tokens`` > 0
  splits the token table into ScaNN searchers of at most that many tokens, searched one by
  one and merged exactly (for corpora whose single searcher would not fit in memory).
  ``backend='compact'``: inverted lists + PQ codes (``compact.py``), built from ``vectors``
  read in chunks (a memory map is fine) and resumable: its trained quantiser and encoded
  chunks survive an interruption in ``.NAME.compact-work`` beside ``output_dir``.
  """
  if backend not in BACKENDS:
    raise IndexFormatError(f"backend={backend!r}; expected one of {BACKENDS}")
  vectors = np.asarray(vectors)
  token_to_passage = np.asarray(token_to_passage, np.int32)
  if vectors.ndim != 2 or vectors.shape[0] != token_to_passage.shape[0]:
    raise IndexFormatError(
      f"vectors {vectors.shape} and token_to_passage {token_to_passage.shape} disagree"
    )
  if token_to_passage.size and (
    token_to_passage.min() < 0 or token_to_passage.max() >= len(passage_ids)
  ):
    raise IndexFormatError(f"token_to_passage has rows outside [0, {len(passage_ids)})")
  num_corpus_tokens = vectors.shape[0]
  to_float16 = backend != "compact" or extra_vectors is not None  # compact streams from disk
  stored = np.float16 if to_float16 or compact_params.keep_vectors else np.float32
  check_finite(vectors, f"build_index: vectors (as {np.dtype(stored).name})", stored)
  if to_float16:
    with np.errstate(over="ignore"):  # checked above
      vectors = vectors.astype(np.float16)
  vectors, token_to_passage, num_extra = _append_extra(
    vectors, token_to_passage, passage_ids, extra_vectors, extra_weight
  )
  n = vectors.shape[0]
  output_dir = os.path.abspath(output_dir.rstrip("/"))
  parent, name = os.path.split(output_dir)
  os.makedirs(parent, exist_ok=True)
  if os.path.exists(output_dir) and not overwrite:
    raise FileExistsError(f"index directory already exists: {output_dir} (pass overwrite)")
  for leftover in glob.glob(os.path.join(parent, f".{name}.tmp-*")):
    logging.info("removing leftover partial build %s", leftover)
    shutil.rmtree(leftover, ignore_errors=True)
  tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
  os.makedirs(tmp)
  try:
    t0 = time.time()
    with open(os.path.join(tmp, "passage_ids.json"), "w") as f:
      json.dump(list(passage_ids), f)
    step = segment_tokens if segment_tokens > 0 else max(n, 1)
    ranges = [(start, min(n, start + step)) for start in range(0, n, step)]
    if backend == "compact":
      work = os.path.join(parent, f".{name}.compact-work")
      built, stored = _write_compact(tmp, work, vectors, token_to_passage, ranges, compact_params)
    else:
      built, stored = _write_scann(tmp, vectors, token_to_passage, ranges, backend, scann_params)
    build_seconds = time.time() - t0
    manifest = {
      "format": FORMAT,
      "version": VERSION,
      "model_fingerprint": model_fingerprint,
      "vocabulary_fingerprint": vocabulary_fingerprint,
      "proj_dim": int(vectors.shape[1]),
      "num_passages": len(passage_ids),
      "num_tokens": int(n),
      "num_corpus_tokens": int(num_corpus_tokens),
      "num_extra_tokens": int(num_extra),
      "extra_weight": float(extra_weight),
      "backend": backend,
      **built,
      "build_seconds": round(build_seconds, 3),
      "bytes_per_token": _bytes_per_token(tmp, backend, n, int(vectors.shape[1]), stored),
      **(metadata or {}),
    }
    atomic_write_json(os.path.join(tmp, MANIFEST), manifest)
    xio.replace_dir(tmp, output_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  shutil.rmtree(os.path.join(parent, f".{name}.compact-work"), ignore_errors=True)
  return manifest


def _write_scann(tmp, vectors, token_to_passage, ranges, backend, scann_params):
  """vectors.npy, token_to_passage.npy and one ScaNN searcher per range (``scann``)."""
  np.save(os.path.join(tmp, "vectors.npy"), vectors)
  np.save(os.path.join(tmp, "token_to_passage.npy"), token_to_passage)
  segments, built_params = [], scann_params
  for i, (start, end) in enumerate(ranges):
    seg = {"start": start, "end": end}
    if backend == "scann":
      seg["dir"] = f"segments/seg_{i:05d}"
      searcher = ScannSearcher.build(vectors[start:end], scann_params)
      searcher.serialize(os.path.join(tmp, seg["dir"]))
      built_params = searcher.params if i == 0 else built_params
    segments.append(seg)
  return {"scann": dataclasses.asdict(built_params), "segments": segments}, True


def _write_compact(tmp, work, vectors, token_to_passage, ranges, params):
  """One compact segment per range; tokens re-stored list by list within each range, so
  ``token_to_passage.npy`` and the optional ``vectors.npy`` follow that order and
  ``token_order.npy`` maps each stored token back to its input id."""
  n, d = vectors.shape
  order = np.empty((n,), np.int64)
  segments, built = [], {}
  for i, (start, end) in enumerate(ranges):
    seg = {"start": start, "end": end, "dir": f"{compact.COMPACT_DIR}/seg_{i:05d}"}
    local, built = compact.build_segment(
      vectors, start, end, params, os.path.join(tmp, seg["dir"]), os.path.join(work, f"seg_{i:05d}")
    )
    order[start:end] = local + start
    segments.append(seg)
  np.save(os.path.join(tmp, "token_order.npy"), order)
  np.save(os.path.join(tmp, "token_to_passage.npy"), np.asarray(token_to_passage)[order])
  if params.keep_vectors:
    out = np.lib.format.open_memmap(os.path.join(tmp, "vectors.npy"), "w+", np.float16, (n, d))
    for s in range(0, n, params.chunk_tokens):
      idx = order[s : s + params.chunk_tokens]
      srt = np.argsort(idx)
      block = np.empty((idx.size, d), np.float16)
      block[srt] = np.asarray(vectors[idx[srt]], np.float16)  # sorted reads: page locality
      out[s : s + idx.size] = block
    out.flush()
    del out
  return {"compact": built, "segments": segments}, params.keep_vectors


def _bytes_per_token(tmp: str, backend: str, n: int, dim: int, vectors_stored: bool) -> dict:
  """Bytes per token by part; ``resident``: what a loaded index holds in RAM for search."""
  n = max(n, 1)
  out = {"vectors_float16": 2 * dim if vectors_stored else 0, "token_to_passage": 4}
  if backend == "compact":
    parts = _dir_bytes(os.path.join(tmp, compact.COMPACT_DIR))
    out["compact"] = round(parts / n, 2)
    out["resident"] = round((parts + 4 * n) / n, 2)
  else:
    scann_bytes = _dir_bytes(os.path.join(tmp, "segments")) if backend == "scann" else 0
    out["scann"] = round(scann_bytes / n, 2)
  return out


def _read_json(path: str, what: str):
  try:
    with open(path, "rb") as f:
      return json.loads(f.read().decode("utf-8"))
  except UnicodeDecodeError as e:
    raise IndexFormatError(f"{path}: malformed {what}: invalid UTF-8 at byte {e.start}") from None
  except json.JSONDecodeError as e:
    raise IndexFormatError(f"{path}:{e.lineno}: malformed {what} JSON: {e.msg}") from e


def load_npy(path: str, mmap: bool = False) -> np.ndarray:
  try:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
  except Exception as e:  # numpy raises ValueError, EOFError, TokenError, ... without the path
    raise IndexFormatError(f"{path}: unreadable .npy array: {type(e).__name__}: {e}") from None


def _check_manifest(path: str, manifest: dict) -> None:
  """The fields ``load_index`` relies on, with their types (a missing one is a clear error)."""
  for key, kind in (("num_passages", int), ("num_tokens", int), ("proj_dim", int),
                    ("backend", str), ("segments", list)):  # fmt: skip
    if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
      raise IndexFormatError(
        f"{path}: field {key!r} must be {kind.__name__}, got {manifest.get(key)!r}"
      )
  if not manifest["segments"]:
    raise IndexFormatError(f"{path}: 'segments' is empty")
  for i, seg in enumerate(manifest["segments"]):
    if not (
      isinstance(seg, dict)
      and all(type(seg.get(k)) is int for k in ("start", "end"))
      and 0 <= seg["start"] <= seg["end"] <= manifest["num_tokens"]
    ):
      raise IndexFormatError(f"{path}: segments[{i}] = {seg!r} is not a token range")


def read_manifest(index_dir: str) -> dict:
  path = os.path.join(index_dir, MANIFEST)
  if not os.path.isdir(index_dir):
    raise FileNotFoundError(f"index directory not found: {index_dir}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} missing: {index_dir} is not a finished index")
  manifest = _read_json(path, "manifest")
  if not isinstance(manifest, dict):
    raise IndexFormatError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
  if manifest.get("format") == SHARDED_FORMAT:
    return manifest
  if manifest.get("format") != FORMAT:
    raise IndexFormatError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
  if manifest.get("version") != VERSION:
    raise IndexFormatError(
      f"{path}: format version {manifest.get('version')!r}; this code reads version {VERSION}"
    )
  return manifest


@dataclasses.dataclass
class TokenIndex:
  """A loaded index: token search over all segments, passage rows, stored vectors."""

  directory: str
  manifest: dict
  passage_ids: list[str]
  token_to_passage: np.ndarray
  vectors: np.ndarray
  searchers: list[tuple[int, object]]  # (token offset, searcher)

  @property
  def num_passages(self) -> int:
    return len(self.passage_ids)

  def search_tokens(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` token ids and scores for each query vector [Q, d]; -1 = empty slot."""
    ids, scores = [], []
    for offset, searcher in self.searchers:
      i, s = searcher.search_batched(queries, k)
      ids.append(np.where(i >= 0, i + offset, -1))
      scores.append(s)
    if len(ids) == 1:
      return ids[0], scores[0]
    return merge_top_k(ids, scores, k)

  def tokens_to_passages(self, token_ids: np.ndarray) -> np.ndarray:
    return np.where(token_ids >= 0, self.token_to_passage[np.maximum(token_ids, 0)], -1)


def load_index(
  index_dir: str,
  expected_fingerprint: str | None = None,
  backend: str | None = None,
  mmap: bool = True,
  compact_nprobe: int = 0,
  check_vectors: bool = True,
) -> TokenIndex:
  """Loads and checks an index; ``backend='brute_force'`` searches the stored vectors.

  ``compact_nprobe`` > 0 overrides the lists searched per query token of a compact index.
  The float16 vectors are memory-mapped (``mmap``), so a compact index keeps only its codes,
  centroids and token->passage rows resident; ``vectors`` is None when it was built without.
  Stored float arrays with a NaN or Inf are refused (``check_finite``); ``check_vectors=False``
  skips only the scan of ``vectors.npy``, a full read of it (~3 GB/s from page cache on 2
  cores, 8 s per 100M 128-d tokens; disk-bound when cold), for an index already checked.
  """
  manifest = read_manifest(index_dir)
  if manifest["format"] != FORMAT:  # a set of shards: one TokenIndex over all of them
    return load_sharded_index(
      index_dir, expected_fingerprint, backend, mmap, compact_nprobe, check_vectors
    )
  got = manifest.get("model_fingerprint")
  if expected_fingerprint is not None and got != expected_fingerprint:
    raise IndexFormatError(
      f"{index_dir} was built with model fingerprint {got!r} but the model loaded has "
      f"{expected_fingerprint!r}; rebuild the index with this checkpoint"
    )
  _check_manifest(os.path.join(index_dir, MANIFEST), manifest)
  built = manifest["backend"]
  backend = backend or built
  if backend not in BACKENDS:
    raise IndexFormatError(f"backend={backend!r}; expected one of {BACKENDS}")
  if backend != "brute_force" and backend != built and "compact" in (backend, built):
    raise IndexFormatError(
      f"{os.path.join(index_dir, MANIFEST)}: a {built!r} index, cannot be searched as "
      f"{backend!r} (backend='brute_force' searches its float16 vectors, if stored)"
    )
  has_vectors = os.path.isfile(os.path.join(index_dir, "vectors.npy"))
  if backend == "brute_force" and not has_vectors:
    raise FileNotFoundError(
      f"index file missing: {os.path.join(index_dir, 'vectors.npy')} (built without float16 "
      "vectors: brute force, exact mode and re-scoring need them)"
    )
  files = ["passage_ids.json", "token_to_passage.npy"]
  files += ["vectors.npy"] if built != "compact" else []  # optional there
  for name in files:
    if not os.path.isfile(os.path.join(index_dir, name)):
      raise FileNotFoundError(f"index file missing: {os.path.join(index_dir, name)}")
  ids_path = os.path.join(index_dir, "passage_ids.json")
  passage_ids = _read_json(ids_path, "passage ids")
  if not isinstance(passage_ids, list) or not all(isinstance(p, str) for p in passage_ids):
    raise IndexFormatError(f"{ids_path}: expected a JSON list of passage id strings")
  t2p = load_npy(os.path.join(index_dir, "token_to_passage.npy"))
  vpath = os.path.join(index_dir, "vectors.npy")
  vectors = load_npy(vpath, mmap) if has_vectors else None
  if t2p.ndim != 1:
    raise IndexFormatError(f"{index_dir}: token_to_passage dims = {t2p.ndim}, expected 1")
  if vectors is not None and vectors.ndim != 2:
    raise IndexFormatError(f"{vpath}: vector dims = {vectors.ndim}, expected 2")
  checks = [
    ("passages", len(passage_ids), manifest["num_passages"]),
    ("token_to_passage rows", t2p.shape[0], manifest["num_tokens"]),
  ]
  if vectors is not None:
    checks += [
      ("vector rows", vectors.shape[0], manifest["num_tokens"]),
      ("vector dim", vectors.shape[1], manifest["proj_dim"]),
    ]
  for what, have, want in checks:
    if have != want:
      raise IndexFormatError(f"{index_dir}: {what} = {have} but manifest.json says {want}")
  if vectors is not None and check_vectors:
    check_finite(vectors, f"index {vpath}")
  if t2p.dtype.kind not in "iu" or (
    t2p.size and not 0 <= t2p.min() <= t2p.max() < len(passage_ids)
  ):
    raise IndexFormatError(
      f"{index_dir}/token_to_passage.npy: dtype {t2p.dtype} or rows outside [0, {len(passage_ids)})"
    )
  searchers: list[tuple[int, object]] = []
  for seg in manifest["segments"]:
    start, end = seg["start"], seg["end"]
    if backend == "scann":
      if "dir" not in seg:
        raise IndexFormatError(
          f"{index_dir} was built without ScaNN; load with backend='brute_force'"
        )
      params = ScannParams(**manifest["scann"])
      searchers.append(
        (start, ScannSearcher.load(os.path.join(index_dir, seg["dir"]), params, end - start))
      )
    elif backend == "compact":
      built_params = manifest.get("compact", {})
      nprobe = compact_nprobe or built_params.get("nprobe", 1)
      seg_dir = os.path.join(index_dir, seg.get("dir", ""))
      dim, threads = manifest["proj_dim"], built_params.get("num_threads", 2)
      searchers.append((start, compact.load_segment(seg_dir, end - start, dim, nprobe, threads)))
    else:
      searchers.append((start, BruteForceSearcher(vectors[start:end])))
  return TokenIndex(index_dir, manifest, passage_ids, t2p, vectors, searchers)


@dataclasses.dataclass(frozen=True)
class StoredCorpus:
  """An index's own corpus token vectors, in encoding order, without its augmentation rows."""

  vectors: np.ndarray  # [num_corpus_tokens, d] float16 (memory-mapped where it can be)
  token_to_passage: np.ndarray  # [num_corpus_tokens] int32
  passage_ids: list[str]
  manifest: dict


def stored_corpus_vectors(index_dir: str, expected_fingerprint: str | None = None) -> StoredCorpus:
  """The corpus vectors stored in ``index_dir``, for building another index from them.

  Why: encoding is the slow part of an index (hours at corpus scale); changing the backend,
  the ScaNN settings or the xQG augmentation only needs the vectors already on disk. Extra
  (augmentation) rows are dropped, so augmenting an augmented index replaces its questions;
  a compact index's list order is undone through ``token_order.npy``.
  """
  manifest = read_manifest(index_dir)
  if manifest["format"] != FORMAT:
    raise IndexFormatError(
      f"{os.path.join(index_dir, MANIFEST)}: a sharded index; reuse its shards one by one"
    )
  index = load_index(index_dir, expected_fingerprint, backend="brute_force")
  n = manifest.get(
    "num_corpus_tokens", manifest["num_tokens"] - manifest.get("num_extra_tokens", 0)
  )
  order_path = os.path.join(index_dir, "token_order.npy")
  if os.path.isfile(order_path):
    order = load_npy(order_path)
    if order.shape != (manifest["num_tokens"],):
      raise IndexFormatError(
        f"{order_path}: shape {order.shape} but manifest.json says {manifest['num_tokens']} tokens"
      )
    keep = np.flatnonzero(order < n)
    keep = keep[np.argsort(order[keep], kind="stable")]
    vectors, t2p = np.asarray(index.vectors[keep]), index.token_to_passage[keep]
  else:
    vectors, t2p = index.vectors[:n], index.token_to_passage[:n]
  return StoredCorpus(vectors, np.asarray(t2p, np.int32), index.passage_ids, manifest)


class ConcatVectors:
  """Read-only row view over per-shard (memory-mapped) vector arrays, for exact MaxSim."""

  def __init__(self, parts: list[np.ndarray]):
    self.parts = parts
    self.offsets = np.cumsum([0] + [p.shape[0] for p in parts])
    self.shape = (int(self.offsets[-1]), parts[0].shape[1])
    self.ndim = 2
    self.dtype = parts[0].dtype

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, idx) -> np.ndarray:
    if isinstance(idx, slice):
      idx = np.arange(*idx.indices(self.shape[0]))
    idx = np.asarray(idx, np.int64)
    flat = idx.reshape(-1)
    out = np.empty((flat.shape[0], self.shape[1]), self.dtype)
    which = np.searchsorted(self.offsets, flat, side="right") - 1
    for s in np.unique(which):
      sel = which == s
      out[sel] = self.parts[s][flat[sel] - self.offsets[s]]
    return out.reshape(idx.shape + (self.shape[1],))


def load_sharded_index(
  index_dir: str,
  expected_fingerprint: str | None = None,
  backend: str | None = None,
  mmap: bool = True,
  compact_nprobe: int = 0,
  check_vectors: bool = True,
) -> TokenIndex:
  """One ``TokenIndex`` over all shards (global token ids and passage rows) of a directory
  written by ``sharded_index.build_sharded_index``."""
  path = os.path.join(index_dir, MANIFEST)
  with open(path) as f:
    manifest = json.load(f)
  if manifest.get("format") != SHARDED_FORMAT or manifest.get("version") != SHARDED_VERSION:
    raise IndexFormatError(f"{path}: not a {SHARDED_FORMAT} v{SHARDED_VERSION} manifest")
  searchers, t2p, pids, vecs = [], [], [], []
  token_off = passage_off = 0
  for s in manifest["shards"]:
    shard = load_index(
      os.path.join(index_dir, s["dir"]),
      expected_fingerprint,
      backend,
      mmap,
      compact_nprobe,
      check_vectors,
    )
    if (shard.manifest["num_tokens"], shard.num_passages) != (s["num_tokens"], s["num_passages"]):
      raise IndexFormatError(f"{index_dir}: shard {s['dir']} changed since the manifest")
    searchers += [(token_off + off, searcher) for off, searcher in shard.searchers]
    t2p.append(shard.token_to_passage.astype(np.int64) + passage_off)
    pids += shard.passage_ids
    vecs.append(shard.vectors)
    token_off += s["num_tokens"]
    passage_off += s["num_passages"]
  rows = np.concatenate(t2p)
  rows = rows.astype(np.int32) if passage_off < 2**31 else rows
  merged = dict(manifest, backend=backend or manifest["backend"])
  vectors = None if any(v is None for v in vecs) else ConcatVectors(vecs)
  return TokenIndex(index_dir, merged, pids, rows, vectors, searchers)
