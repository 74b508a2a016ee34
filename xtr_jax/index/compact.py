"""The compact token index: inverted lists + residual product-quantisation codes, ~37 B/token.

Why: XTR scores passages from the retrieved tokens' scores alone (plus imputation), so the
index needs approximate dot products, not the float vectors (256 B/token at 128-d float16)
or ScaNN's 1-byte-per-dimension codes (~133 B/token). Each token is stored as

  list id (implicit: tokens are stored list by list)  + 32 one-byte PQ codes of its residual
  to the list centroid (32 sub-spaces of 4 dims, 256 centres each) + its passage row (int32),

and search scores a token as ``q . centroid + q . decoded residual``. The float16 vectors stay
optional, on disk: only exact mode, explicit re-scoring and rebuilds read them.

Search, per batch of query tokens: the ``nprobe`` lists with the best centroid score per query
token; each probed list is decoded once for all the query tokens that probe it and scored with
one matrix product. Per-token top-k' selection avoids a dense [tokens, candidates] buffer: a
first pass over each token's best lists gives a lower bound on its k'-th score, and the full
pass keeps only scores above it (every candidate that can reach the top k' is kept).

Layout inside an index directory (``store.build_index(backend='compact')``)::

  compact/centroids.npy     float32 [L, d]
  compact/codebooks.npy     float32 [M, K, d / M]
  compact/list_offsets.npy  int64 [L + 1]: tokens of list l are [off[l], off[l+1])
  compact/codes.npy         uint8 [n, M], list by list
  token_to_passage.npy      int32 [n] (in the same, list-by-list token order)
  token_order.npy           int64 [n]: the input token id of each stored token (on disk only)
  vectors.npy               float16 [n, d] in stored order (optional, memory-mapped)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import time

import numpy as np

import gin
from xtr_jax.index.brute_force import select_top_k
from xtr_jax.io import atomic_write_bytes

COMPACT_DIR = "compact"
DONE = "DONE"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class CompactParams:
  """Build and search settings of the compact index (gin-configurable)."""

  num_lists: int | None = None  # None: round(sqrt(n)), capped at max_lists
  max_lists: int = 4096
  nprobe: int = 64  # lists searched per query token
  num_subspaces: int = 32  # PQ sub-spaces (1 byte each); d must be divisible by it
  training_sample_size: int = 250_000
  kmeans_iterations: int = 10
  anisotropic_eta: float = 4.0  # > 1: codes weigh the error along the token (0: plain L2)
  chunk_tokens: int = 262_144  # tokens encoded per chunk file during the build
  keep_vectors: bool = True  # write float16 vectors (on disk) for exact mode / re-scoring
  num_threads: int = 2  # search threads over the probed lists (with OPENBLAS_NUM_THREADS=1)
  seed: int = 0

  def lists_for(self, n: int) -> int:
    lists = self.num_lists or min(self.max_lists, max(1, round(math.sqrt(n))))
    return max(1, min(lists, n))


CODEBOOK_SIZE = 256  # one byte per sub-space code


# --- training -------------------------------------------------------------------------------


def _nearest(x: np.ndarray, centres: np.ndarray, step: int = 65_536) -> np.ndarray:
  """Index of the nearest centre (L2) of each row, in chunks of ``step`` rows."""
  half_norms = 0.5 * np.einsum("kd,kd->k", centres, centres)
  out = np.empty((x.shape[0],), np.int32)
  for s in range(0, x.shape[0], step):
    out[s : s + step] = np.argmax(x[s : s + step] @ centres.T - half_norms, axis=1)
  return out


def kmeans(x: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
  """Lloyd's k-means (L2) of ``x`` [n, d] float32; empty clusters are re-seeded."""
  n = x.shape[0]
  centres = x[rng.choice(n, size=k, replace=False)].copy()
  for _ in range(iterations):
    assign = _nearest(x, centres)
    counts = np.bincount(assign, minlength=k)
    sums = np.zeros_like(centres)
    np.add.at(sums, assign, x)
    nonempty = counts > 0
    centres[nonempty] = sums[nonempty] / counts[nonempty, None]
    empty = np.nonzero(~nonempty)[0]
    if empty.size:
      centres[empty] = x[rng.choice(n, size=empty.size, replace=False)]
  return centres


def _pq_assign(residuals: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
  """uint8 [n, M] codes: nearest codeword of each sub-vector."""
  m, _, ds = codebooks.shape
  sub = residuals.reshape(residuals.shape[0], m, ds)
  codes = np.empty((residuals.shape[0], m), np.uint8)
  for j in range(m):
    codes[:, j] = _nearest(np.ascontiguousarray(sub[:, j]), codebooks[j])
  return codes


def _anisotropic_codes(x, residuals, codebooks, codes, eta: float, sweeps: int = 2):
  """Re-picks each sub-space code to minimise ``|e|^2 + (eta - 1) (e . x/|x|)^2``, with
  ``e`` the residual's quantisation error (coordinate descent over sub-spaces).

  Why: an inner product ``q . x`` with a query near ``x`` (a token's top-k' neighbours)
  is hurt mostly by the error along ``x`` (Guo et al. 2020, ScaNN's anisotropic loss); on
  XOR-mini mE5 tokens this lifted top-100 token recall from 0.76 to 0.80 at eta = 4.
  """
  m, _, ds = codebooks.shape
  n = x.shape[0]
  u = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).reshape(n, m, ds)
  sub = residuals.reshape(n, m, ds)
  sq = np.einsum("mkd,mkd->mk", codebooks, codebooks)
  codes = codes.copy()
  decoded = codebooks[np.arange(m)[None, :], codes]  # [n, m, ds]
  par = np.einsum("nmd,nmd->n", sub - decoded, u)  # error along x
  for _ in range(sweeps):
    for j in range(m):
      old = codebooks[j][codes[:, j]]
      base = par + np.einsum("nd,nd->n", old - sub[:, j], u[:, j])  # without block j
      cu = u[:, j] @ codebooks[j].T  # [n, K]
      ru = np.einsum("nd,nd->n", sub[:, j], u[:, j])
      new_par = base[:, None] + ru[:, None] - cu
      loss = sq[j][None, :] - 2 * sub[:, j] @ codebooks[j].T + (eta - 1) * new_par**2
      best = np.argmin(loss, axis=1)
      codes[:, j] = best
      par = new_par[np.arange(n), best]
  return codes


def train_quantizer(sample: np.ndarray, num_lists: int, params: CompactParams):
  """(centroids [L, d], codebooks [M, K, d/M]) trained on a float32 sample."""
  d = sample.shape[1]
  if d % params.num_subspaces:
    raise ValueError(f"dimension {d} is not divisible by num_subspaces={params.num_subspaces}")
  rng = np.random.default_rng(params.seed)
  centroids = kmeans(sample, num_lists, params.kmeans_iterations, rng)
  residuals = sample - centroids[_nearest(sample, centroids)]
  m, ds = params.num_subspaces, d // params.num_subspaces
  k = min(CODEBOOK_SIZE, sample.shape[0])
  sub = residuals.reshape(-1, m, ds)
  codebooks = np.zeros((m, CODEBOOK_SIZE, ds), np.float32)
  for j in range(m):
    codebooks[j, :k] = kmeans(np.ascontiguousarray(sub[:, j]), k, params.kmeans_iterations, rng)
  return centroids.astype(np.float32), codebooks


def encode_chunk(
  vectors: np.ndarray, centroids: np.ndarray, codebooks: np.ndarray, eta: float = 0.0
):
  """(list id int32 [n], codes uint8 [n, M]) of float vectors [n, d]; ``eta`` > 1: the
  anisotropic code choice (``_anisotropic_codes``), else nearest codewords."""
  x = np.asarray(vectors, np.float32)
  lists = _nearest(x, centroids)
  residuals = x - centroids[lists]
  codes = _pq_assign(residuals, codebooks)
  step = 65_536  # bounds the [rows, 256] temporaries
  for s in range(0, x.shape[0], step) if eta > 1 else ():
    part = slice(s, s + step)
    codes[part] = _anisotropic_codes(x[part], residuals[part], codebooks, codes[part], eta)
  return lists, codes


# --- search ---------------------------------------------------------------------------------


@functools.cache
def _blas_set_local_threads():
  """numpy's ``openblas_set_num_threads_local`` (OpenBLAS >= 0.3.27), or None."""
  try:
    with open("/proc/self/maps") as f:
      paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln and ".so" in ln})
  except OSError:
    return None
  for path in paths:
    try:
      fn = ctypes.CDLL(path).openblas_set_num_threads_local
    except (OSError, AttributeError):
      continue
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn
  return None


@contextlib.contextmanager
def _single_threaded_blas():
  """One BLAS thread in the calling thread only. Why: the per-list products are small, and
  OpenBLAS's own threads spin-waiting on a loaded machine made them 5-25x slower; the search
  runs its own threads over lists instead."""
  fn = _blas_set_local_threads()
  previous = fn(1) if fn is not None else None
  try:
    yield
  finally:
    if fn is not None:
      fn(previous)


def _pack_top_k(rows, toks, scores, nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Per query row the ``k`` best (token, score) of ragged kept triples, sorted by score
  descending then token ascending; (-1, -inf) where fewer than ``k`` were kept."""
  order = np.argsort(rows, kind="stable")
  rows, toks, scores = rows[order], toks[order], scores[order]
  counts = np.bincount(rows, minlength=nq)
  width = max(int(counts.max(initial=0)), k)
  col = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
  ids = np.full((nq, width), -1, np.int64)
  dense = np.full((nq, width), -np.inf, np.float32)
  ids[rows, col], dense[rows, col] = toks, scores
  if width > k:
    ids, dense = select_top_k(ids, dense, k)
  big = np.iinfo(np.int64).max
  order = np.lexsort((np.where(ids < 0, big, ids), -dense.astype(np.float64)), axis=-1)
  return np.take_along_axis(ids, order, 1), np.take_along_axis(dense, order, 1)


class CompactSearcher:
  """Token search over one compact index segment; ``search_batched`` as ``ScannSearcher``."""

  def __init__(self, centroids, codebooks, list_offsets, codes, nprobe: int, num_threads=2):
    self.centroids = np.asarray(centroids, np.float32)
    self.codebooks = np.asarray(codebooks, np.float32)
    self.list_offsets = np.asarray(list_offsets, np.int64)
    self.codes = codes
    self.nprobe = nprobe
    self.num_threads = max(1, num_threads)
    m, k, ds = self.codebooks.shape
    self._flat_codebooks = self.codebooks.reshape(m * k, ds)
    self._code_offsets = (np.arange(m) * k).astype(np.intp)

  @property
  def size(self) -> int:
    return int(self.codes.shape[0])

  @property
  def resident_bytes(self) -> int:
    """Bytes this searcher holds in RAM (codes, centroids, codebooks, list offsets)."""
    arrays = (self.codes, self.centroids, self.codebooks, self.list_offsets)
    return int(sum(a.nbytes for a in arrays))

  def decode(self, start: int, end: int) -> np.ndarray:
    """Residuals of stored tokens [start, end) as float32 [n, d] (without the centroid)."""
    idx = self.codes[start:end].astype(np.intp) + self._code_offsets
    return np.take(self._flat_codebooks, idx, axis=0).reshape(end - start, -1)

  def _blocks(self, queries: np.ndarray, rows: np.ndarray, lists: np.ndarray):
    """Per distinct list of the (query row, list) pairs: (list, the pairs' indices, scores
    [pairs, n_l] of those query rows against the list's tokens). One decode and one matrix
    product per list, shared by every query row that probes it."""
    order = np.argsort(lists, kind="stable")
    for pairs in np.split(order, np.flatnonzero(np.diff(lists[order])) + 1):
      lst = int(lists[pairs[0]])
      start, end = self.list_offsets[lst], self.list_offsets[lst + 1]
      if end > start:
        q = queries[rows[pairs]]
        block = q @ self.decode(start, end).T
        block += (q @ self.centroids[lst])[:, None]
        yield lst, pairs, block

  def search_batched(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids [Q, k] int64 with -1 for empty slots, scores [Q, k] float32), best first,
    ties to the smaller id."""
    queries = np.ascontiguousarray(queries, np.float32)
    if queries.ndim != 2 or queries.shape[1] != self.centroids.shape[1]:
      raise ValueError(
        f"queries shape {queries.shape} does not match index dim {self.centroids.shape[1]}"
      )
    k = max(1, min(k, self.size))
    nq, num_lists = queries.shape[0], self.centroids.shape[0]
    nprobe = max(1, min(self.nprobe, num_lists))
    coarse = queries @ self.centroids.T
    probe = np.argpartition(-coarse, nprobe - 1, axis=1)[:, :nprobe]
    ranked = np.take_along_axis(probe, np.argsort(-np.take_along_axis(coarse, probe, 1)), 1)
    with _single_threaded_blas():
      floor = self._score_floor(queries, ranked, k)
    rows = np.repeat(np.arange(nq), nprobe)
    lists = ranked.reshape(-1)
    parts = [np.flatnonzero(lists % self.num_threads == i) for i in range(self.num_threads)]
    if self.num_threads > 1:  # numpy releases the GIL in its matrix products and gathers
      with concurrent.futures.ThreadPoolExecutor(self.num_threads) as pool:
        kept = list(pool.map(lambda p: self._keep(queries, rows[p], lists[p], floor), parts))
    else:
      kept = [self._keep(queries, rows, lists, floor)]
    r, t, sc = (np.concatenate([part[i] for part in kept]) for i in range(3))
    return _pack_top_k(r, t, sc, nq, k)

  def _keep(self, queries, rows, lists, floor):
    """(query row, token, score) of every scored token at or above its row's floor."""
    with _single_threaded_blas():
      return self._keep_blocks(queries, rows, lists, floor)

  def _keep_blocks(self, queries, rows, lists, floor):
    kept_r, kept_t, kept_s = [np.zeros((0,), np.int64)], [np.zeros((0,), np.int64)], []
    kept_s.append(np.zeros((0,), np.float32))
    for lst, pairs, block in self._blocks(queries, rows, lists):
      r = rows[pairs]
      i, c = np.nonzero(block >= floor[r, None])
      kept_r.append(r[i])
      kept_t.append(c + self.list_offsets[lst])
      kept_s.append(block[i, c])
    return np.concatenate(kept_r), np.concatenate(kept_t), np.concatenate(kept_s)

  def _score_floor(self, queries: np.ndarray, ranked: np.ndarray, k: int) -> np.ndarray:
    """Per query row a lower bound on its k-th best score (-inf where none is known).

    The k-th best score over a row's first ranked lists (the fewest holding >= k tokens) is
    at most its k-th best over all probed lists; the margin covers float rounding between
    the two passes' matrix products. Rows whose probed lists hold < k tokens keep all.
    """
    nq = queries.shape[0]
    cum = np.cumsum(np.diff(self.list_offsets)[ranked], axis=1)
    first = np.minimum((cum < k).sum(axis=1) + 1, ranked.shape[1])
    have = np.take_along_axis(cum, (first - 1)[:, None], 1)[:, 0]
    floor = np.full((nq,), -np.inf, np.float32)
    full = np.flatnonzero(have >= k)
    if full.size == 0:
      return floor
    col = np.concatenate([np.zeros((nq, 1), np.int64), cum[:, :-1]], axis=1)
    use = np.arange(ranked.shape[1])[None, :] < first[:, None]
    use[have < k] = False
    rows, j = np.nonzero(use)
    starts = col[rows, j]
    buf = np.full((nq, int(have[full].max())), -np.inf, np.float32)
    for _, pairs, block in self._blocks(queries, rows, ranked[rows, j]):
      cols = starts[pairs][:, None] + np.arange(block.shape[1])[None, :]
      buf[rows[pairs][:, None], cols] = block
    buf = buf[full]
    kth = -np.partition(-buf, k - 1, axis=1)[:, k - 1]
    floor[full] = kth - (np.abs(kth) * 1e-5 + 1e-6)
    return floor


# --- build ----------------------------------------------------------------------------------


def _save_npz_atomic(path: str, **arrays) -> None:
  import io  # noqa: PLC0415

  buf = io.BytesIO()
  np.savez(buf, **arrays)
  atomic_write_bytes(path, buf.getvalue())


def _inputs_key(vectors, start: int, end: int, params: CompactParams) -> str:
  """What a resumed build must agree on: range, shape, build params and sampled rows."""
  h = hashlib.sha256()
  search_only = ("nprobe", "keep_vectors", "num_threads")
  p = {k: v for k, v in dataclasses.asdict(params).items() if k not in search_only}
  h.update(json.dumps([start, end, list(vectors.shape), p], sort_keys=True).encode())
  probe = np.unique(np.linspace(start, end - 1, num=min(64, end - start)).astype(np.int64))
  h.update(np.ascontiguousarray(np.asarray(vectors[probe], np.float16)).tobytes())
  return h.hexdigest()[:16]


def _sample(vectors, start: int, end: int, size: int, seed: int) -> np.ndarray:
  n = end - start
  idx = np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
  return np.asarray(vectors[idx + start], np.float32)


def build_segment(
  vectors, start: int, end: int, params: CompactParams, seg_dir: str, work_dir: str
) -> tuple[np.ndarray, dict]:
  """Trains, encodes and writes one segment (tokens [start, end) of ``vectors``).

  ``vectors`` is read in ``params.chunk_tokens`` slices (a memory map is fine), so build
  memory is the training sample, one chunk and the codes (M bytes/token). ``work_dir`` keeps
  the trained quantiser and one file per encoded chunk, each written atomically, plus a
  ``DONE`` marker: a rerun after an interruption skips what is there. Returns the segment's
  stored token order (local ids, list by list) and the built parameters.
  """
  n = end - start
  if n <= 0:
    raise ValueError("cannot build a compact index over zero token vectors")
  key = _inputs_key(vectors, start, end, params)
  state = os.path.join(work_dir, "inputs_key")
  if os.path.isdir(work_dir) and (not os.path.isfile(state) or open(state).read().strip() != key):
    logging.info("compact build: %s holds another build's state; starting over", work_dir)
    shutil.rmtree(work_dir)
  os.makedirs(work_dir, exist_ok=True)
  atomic_write_bytes(state, key.encode())
  num_lists = params.lists_for(n)
  qpath = os.path.join(work_dir, "quantizer.npz")
  t0 = time.time()
  if not os.path.isfile(qpath):
    sample = _sample(vectors, start, end, params.training_sample_size, params.seed)
    centroids, codebooks = train_quantizer(sample, num_lists, params)
    del sample
    _save_npz_atomic(qpath, centroids=centroids, codebooks=codebooks)
    logging.info("compact build: trained %d lists + PQ%d in %.1f s", num_lists,
                 params.num_subspaces, time.time() - t0)  # fmt: skip
  q = np.load(qpath)
  centroids, codebooks = q["centroids"], q["codebooks"]
  step = max(1, params.chunk_tokens)
  chunks = list(range(start, end, step))
  t1 = time.time()
  for i, s in enumerate(chunks):
    path = os.path.join(work_dir, f"chunk_{i:05d}.npz")
    if os.path.isfile(path):
      continue
    chunk = vectors[s : min(end, s + step)]
    lists, codes = encode_chunk(chunk, centroids, codebooks, params.anisotropic_eta)
    _save_npz_atomic(path, lists=lists, codes=codes)
    done = min(end, s + step) - start
    logging.info("compact build: encoded %d/%d tokens (%.0f tokens/s)", done, n,
                 done / max(time.time() - t1, 1e-9))  # fmt: skip
  atomic_write_bytes(os.path.join(work_dir, DONE), b"")
  parts = [np.load(os.path.join(work_dir, f"chunk_{i:05d}.npz")) for i in range(len(chunks))]
  lists = np.concatenate([p["lists"] for p in parts])
  order = np.argsort(lists, kind="stable")
  offsets = np.searchsorted(lists[order], np.arange(num_lists + 1)).astype(np.int64)
  codes = np.concatenate([p["codes"] for p in parts])[order]
  os.makedirs(seg_dir, exist_ok=True)
  for name, arr in (("centroids", centroids), ("codebooks", codebooks),
                    ("list_offsets", offsets), ("codes", codes)):  # fmt: skip
    np.save(os.path.join(seg_dir, f"{name}.npy"), arr)
  built = dataclasses.replace(params, num_lists=num_lists)
  return order, dataclasses.asdict(built)


def load_segment(
  seg_dir: str, size: int, dim: int, nprobe: int, num_threads: int = 2
) -> CompactSearcher:
  """A segment's searcher; each file's shape is checked against the manifest's numbers, and
  the float parts (centroids, codebooks) for NaN/Inf, which would score every token NaN."""
  from xtr_jax.index.store import IndexFormatError, check_finite, load_npy  # noqa: PLC0415

  arrays = {}
  for name in ("centroids", "codebooks", "list_offsets", "codes"):
    path = os.path.join(seg_dir, f"{name}.npy")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"compact index file missing: {path}")
    arrays[name] = load_npy(path)
  c, b, off, codes = (arrays[k] for k in ("centroids", "codebooks", "list_offsets", "codes"))
  checks = [
    ("centroids.npy", c.ndim == 2 and c.shape[1] == dim, f"[L, {dim}]", c.shape),
    ("codebooks.npy", b.ndim == 3 and b.shape[0] * b.shape[2] == dim, f"[M, K, {dim}/M]", b.shape),
    ("list_offsets.npy", off.shape == (c.shape[0] + 1,), f"[{c.shape[0] + 1}]", off.shape),
    ("codes.npy", codes.ndim == 2 and codes.shape == (size, b.shape[0]) and codes.dtype == np.uint8,
     f"uint8 [{size}, {b.shape[0]}]", f"{codes.dtype} {codes.shape}"),
  ]  # fmt: skip
  for name, ok, want, got in checks:
    if not ok:
      raise IndexFormatError(f"{os.path.join(seg_dir, name)}: shape {got}, expected {want}")
  if off[0] != 0 or off[-1] != size or (np.diff(off) < 0).any():
    raise IndexFormatError(f"{os.path.join(seg_dir, 'list_offsets.npy')}: not offsets of {size}")
  for name, arr in (("centroids.npy", c), ("codebooks.npy", b)):
    check_finite(arr, f"index {os.path.join(seg_dir, name)}")
  return CompactSearcher(c, b, off, codes, nprobe, num_threads)
