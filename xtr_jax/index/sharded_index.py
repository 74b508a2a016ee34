"""A sharded token index: a directory of normal indexes searched as one.

Why: one ScaNN searcher over the 2.7B-token XOR-TyDi corpus needs ~170 GB of AH codes plus
build memory; each corpus shard is built by its own process (or machine) as a normal
``xtr_jax.token_index`` directory, and the set is searched as one index.

Layout (format ``xtr_jax.sharded_token_index`` version 1)::

  manifest.json      format, version, shared fingerprints, per-shard dir / tokens / passages
  shard_00000/       a normal index (``store.build_index``), passage rows local to the shard
  shard_00001/ ...

Reading lives with the other formats in ``store.py`` (``store.load_index`` opens a sharded
directory too, so ``store`` never imports this module back); it reuses the ``segments`` merge: every shard searcher becomes one more
(token offset, searcher) pair of a single ``TokenIndex``, whose ``search_tokens`` merges the
per-shard top-k' exactly (ties to the smaller global token id). Token ids and passage rows
are offset by the shards before, so results equal one index over the concatenated shards.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os

import numpy as np

from xtr_jax.index import store
from xtr_jax.index.store import SHARDED_FORMAT as FORMAT
from xtr_jax.index.store import SHARDED_VERSION as VERSION
from xtr_jax.index.store import ConcatVectors, load_sharded_index
from xtr_jax.io import atomic_write_json

__all__ = ["ConcatVectors", "load_sharded_index"]  # re-exported: they live in store.py
SHARED_KEYS = ("model_fingerprint", "vocabulary_fingerprint", "proj_dim")
COPIED_KEYS = ("checkpoint", "vocabulary", "encode")  # build-time paths Retriever reads


def shard_dir_name(i: int) -> str:
  return f"shard_{i:05d}"


def is_sharded(index_dir: str) -> bool:
  path = os.path.join(index_dir, store.MANIFEST)
  if not os.path.isfile(path):
    return False
  with open(path) as f:
    return json.load(f).get("format") == FORMAT


def write_sharded_manifest(root: str, shard_dirs: list[str], metadata: dict | None = None) -> dict:
  """Checks the shards agree (model, vocabulary, dim) and writes the top manifest atomically.

  ``shard_dirs`` are relative to ``root`` (so the set can be copied as a whole).
  """
  if not shard_dirs:
    raise store.IndexFormatError("a sharded index needs at least one shard")
  shards, first = [], None
  for rel in shard_dirs:
    m = store.read_manifest(os.path.join(root, rel))
    first = first or m
    for key in SHARED_KEYS:
      if m.get(key) != first.get(key):
        raise store.IndexFormatError(
          f"shard {rel}: {key}={m.get(key)!r} but shard {shard_dirs[0]} has {first.get(key)!r}"
        )
    shards.append({"dir": rel, "num_tokens": m["num_tokens"], "num_passages": m["num_passages"]})
  manifest = {
    "format": FORMAT,
    "version": VERSION,
    **{k: first.get(k) for k in SHARED_KEYS},
    **{k: first[k] for k in COPIED_KEYS if k in first},
    "backend": first["backend"],
    "num_shards": len(shards),
    "num_tokens": sum(s["num_tokens"] for s in shards),
    "num_passages": sum(s["num_passages"] for s in shards),
    "shards": shards,
    **(metadata or {}),
  }
  atomic_write_json(os.path.join(root, store.MANIFEST), manifest)
  return manifest


@dataclasses.dataclass(frozen=True)
class ShardInput:
  """One index shard from files: float16 vector arrays [n_i, d] and their token->passage rows.

  Rows in ``token_to_passage_paths`` are global (as ``encode`` writes them); ``row_offset`` is
  subtracted so the shard's rows start at 0.
  """

  vectors_paths: tuple[str, ...]
  token_to_passage_paths: tuple[str, ...]
  passage_ids: tuple[str, ...]
  row_offset: int = 0


def shard_inputs_from_encoded(
  work_dir: str, record: dict, encoded_per_shard: int
) -> list[ShardInput]:
  """Groups ``encoded_per_shard`` consecutive encoded shards (``encode`` / ``beam_encode``
  output, described by its ``progress.json`` record) into each index shard."""
  out = []
  done = sorted(record["shards"], key=lambda s: s["index"])
  for g in range(0, len(done), encoded_per_shard):
    group = done[g : g + encoded_per_shard]
    pids: list[str] = []
    for s in group:
      with open(os.path.join(work_dir, f"passage_ids_{s['index']:05d}.json")) as f:
        pids += json.load(f)
    out.append(
      ShardInput(
        tuple(os.path.join(work_dir, f"vectors_{s['index']:05d}.npy") for s in group),
        tuple(os.path.join(work_dir, f"token_to_passage_{s['index']:05d}.npy") for s in group),
        tuple(pids),
        group[0]["first_row"],
      )
    )
  return out


def _build_one(args: tuple[str, ShardInput, dict]) -> dict:
  out, shard, kwargs = args
  if os.path.isfile(os.path.join(out, store.MANIFEST)):  # done by an earlier run
    return store.read_manifest(out)
  parts = [np.load(p, mmap_mode="r") for p in shard.vectors_paths]
  for path, part in zip(shard.vectors_paths, parts):  # name the file, not the concatenation
    store.check_finite(part, f"encoded shard {path}", np.float16)
  vectors = parts[0] if len(parts) == 1 else np.concatenate(parts)
  t2p = np.concatenate([np.load(p) for p in shard.token_to_passage_paths]) - shard.row_offset
  return store.build_index(out, vectors, t2p, list(shard.passage_ids), overwrite=True, **kwargs)


def build_sharded_index(
  output_dir: str,
  shards: list[ShardInput],
  *,
  num_workers: int = 1,
  metadata: dict | None = None,
  **build_kwargs,
) -> dict:
  """Builds one normal index per shard in ``num_workers`` processes, then the manifest.

  Resumable: a shard whose index directory is finished (atomic ``build_index``) is skipped.
  ``build_kwargs`` go to ``store.build_index`` (``model_fingerprint``, ``backend``, ...).
  """
  os.makedirs(output_dir, exist_ok=True)
  names = [shard_dir_name(i) for i in range(len(shards))]
  jobs = [(os.path.join(output_dir, n), s, build_kwargs) for n, s in zip(names, shards)]
  if num_workers <= 1:
    for job in jobs:
      _build_one(job)
  else:
    ctx = multiprocessing.get_context("spawn")  # no forked TF/XLA/ScaNN thread state
    with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=ctx) as pool:
      list(pool.map(_build_one, jobs))
  return write_sharded_manifest(output_dir, names, metadata)
