"""ScaNN over all token vectors: k-means tree partitions + asymmetric hashing (+ reorder).

Defaults follow the official XTR notebook (google-deepmind/xtr,
``xtr_evaluation_on_beir_miracl.ipynb``): ``tree(num_leaves, num_leaves_to_search=100,
training_sample_size=min(250000, n))``, ``score_ah(1, anisotropic_quantization_threshold=0.1)``
and no reordering. The notebook fixes ``num_leaves=min(2000, n)``; we use about sqrt(n)
(capped at 2000 by default), the usual ScaNN rule, which is 2000 for n = 4M tokens.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re

import numpy as np

import gin


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ScannParams:
  """Build and search parameters of the token index (all gin-configurable)."""

  num_leaves: int | None = None  # None: round(sqrt(n)), capped at max_leaves
  max_leaves: int = 2000
  num_leaves_to_search: int = 100
  training_sample_size: int = 250_000
  dimensions_per_block: int = 1  # AH: 1 dim per 16-centre codebook = 4 bits/dim
  anisotropic_quantization_threshold: float = 0.1
  reorder: int = 0  # >0: ScaNN re-scores this many AH candidates with reorder_dtype vectors
  # float32 (exact, +512 B/token), bfloat16 (+256 B/token) or int8 (fixed point, +128 B/token
  # and per-dimension scales): ScaNN's own reordering, in C++ on its thread pool.
  reorder_dtype: str = "float32"
  num_threads: int = 0  # 0: ScaNN's default pool (all cores); 1: single-threaded search

  def leaves_for(self, n: int) -> int:
    leaves = self.num_leaves or min(self.max_leaves, max(1, round(math.sqrt(n))))
    return max(1, min(leaves, n))


def _scann():
  from scann.scann_ops.py import scann_ops_pybind  # noqa: PLC0415 (imports TensorFlow)

  return scann_ops_pybind


def _load_relocated(directory: str):
  """``load_searcher`` for a directory that was moved after ``serialize``.

  ScaNN writes absolute asset paths into ``scann_assets.pbtxt``; an index is built in a
  temporary directory and renamed (and may be copied elsewhere later), so every asset path
  is re-rooted at ``directory`` before loading, without writing into the index.
  """
  ops = _scann()
  pbtxt = os.path.join(directory, "scann_assets.pbtxt")
  if not os.path.isfile(pbtxt):
    raise FileNotFoundError(f"ScaNN assets file missing: {pbtxt}")
  with open(pbtxt) as f:
    text = f.read()
  root = os.path.abspath(directory)

  def reroot(m: re.Match) -> str:
    path = os.path.join(root, os.path.basename(m.group(1)))
    if not os.path.isfile(path):
      raise FileNotFoundError(f"ScaNN asset missing: {path} (listed in {pbtxt})")
    return f'asset_path: "{path}"'

  text = re.sub(r'asset_path:\s*"([^"]*)"', reroot, text)
  return ops.ScannSearcher(ops.scann_pybind.ScannNumpy(root, text), None)


def check_float_assets(directory: str) -> None:
  """Refuses NaN/Inf in the searcher's float arrays (``dataset.npy`` of float32 reordering,
  ``int8_multipliers.npy``, ``dp_norms.npy``): ScaNN loads them as they are and returns
  NaN scores. Its centroids and AH codebooks are protobufs, trained on checked vectors."""
  from xtr_jax.index.store import check_finite, load_npy  # noqa: PLC0415 (store imports us)

  for path in sorted(glob.glob(os.path.join(directory, "*.npy"))):
    array = load_npy(path, mmap=True)
    if array.dtype.kind == "f":
      check_finite(array, f"index {path}")


def _reorder_type(dtype: str):
  from scann.scann_ops.py.scann_builder import ReorderType  # noqa: PLC0415

  types = {
    "float32": ReorderType.FLOAT32,
    "int8": ReorderType.INT8,
    "bfloat16": ReorderType.BFLOAT16,
  }
  if dtype not in types:
    raise ValueError(f"ScannParams.reorder_dtype={dtype!r}; one of {sorted(types)}")
  return types[dtype]


class ScannSearcher:
  """A built or loaded ScaNN searcher with the search settings it was built with."""

  def __init__(self, searcher, params: ScannParams, size: int):
    self.searcher = searcher
    self.params = params
    self.size = size

  @classmethod
  def build(cls, vectors: np.ndarray, params: ScannParams = ScannParams()) -> ScannSearcher:
    """Builds over ``vectors`` [n, d] (any float dtype; ScaNN trains on float32)."""
    db = np.ascontiguousarray(vectors, dtype=np.float32)
    n = db.shape[0]
    if n == 0:
      raise ValueError("cannot build a ScaNN index over zero token vectors")
    leaves = params.leaves_for(n)
    builder = (
      _scann()
      .builder(db, 10, "dot_product")
      .tree(
        num_leaves=leaves,
        num_leaves_to_search=min(params.num_leaves_to_search, leaves),
        training_sample_size=min(params.training_sample_size, n),
      )
      .score_ah(
        params.dimensions_per_block,
        anisotropic_quantization_threshold=params.anisotropic_quantization_threshold,
      )
    )
    if params.reorder > 0:
      builder = builder.reorder(params.reorder, quantize=_reorder_type(params.reorder_dtype))
    if params.num_threads:
      builder.set_n_training_threads(params.num_threads)
    searcher = builder.build()
    if params.num_threads:
      searcher.set_num_threads(params.num_threads)
    return cls(searcher, dataclasses.replace(params, num_leaves=leaves), n)

  def search_batched(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids [Q, k] int64 with -1 for empty slots, scores [Q, k] float32)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, self.size)
    kwargs = dict(final_num_neighbors=k, leaves_to_search=self.params.num_leaves_to_search)
    if self.params.reorder > 0:
      kwargs["pre_reorder_num_neighbors"] = max(k, self.params.reorder)
    # Batches go through ScaNN's thread pool (2x query tokens/s on 2 cores, same results)
    # unless num_threads == 1.
    if self.params.num_threads != 1 and queries.shape[0] > 1:
      ids, scores = self.searcher.search_batched_parallel(queries, **kwargs)
    else:
      ids, scores = self.searcher.search_batched(queries, **kwargs)
    ids = np.asarray(ids).astype(np.int64)
    scores = np.asarray(scores, np.float32)
    # ScaNN fills missing neighbours with NaN scores (few tokens in the searched leaves).
    empty = np.isnan(scores)
    ids[empty], scores[empty] = -1, -np.inf
    return ids, scores

  def serialize(self, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    self.searcher.serialize(directory)

  @classmethod
  def load(cls, directory: str, params: ScannParams, size: int) -> ScannSearcher:
    if not os.path.isdir(directory):
      raise FileNotFoundError(f"ScaNN searcher directory missing: {directory}")
    check_float_assets(directory)
    searcher = _load_relocated(directory)
    if params.num_threads:
      searcher.set_num_threads(params.num_threads)
    return cls(searcher, params, size)
