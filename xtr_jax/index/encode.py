"""Corpus -> token vectors on disk, in resumable shards.

Which tokens are indexed: every real token of ``title + " " + text`` (truncated to
``max_length - 1`` pieces) plus the EOS token the tokenizer appends; padding never. The XTR
release does the same: its notebook tokenises with ``SentencepieceTokenizer(add_eos=True)``
and keeps ``encodings[:mask.sum()]`` per passage, so the EOS vector is in the index. We keep
it because the model was trained with EOS in every passage's MaxSim, so dropping it would
change the scores the model learned, and it gives even an empty passage one vector.

Layout of the work directory (one file set per shard of ``shard_size`` passages):
``vectors_{i:05d}.npy`` float16 [n_i, d], ``token_to_passage_{i:05d}.npy`` int32 [n_i] (global
passage row), ``passage_ids_{i:05d}.json``, and ``progress.json`` (settings + finished shards).
Every file is written to a temporary name and renamed, and a shard counts as done only once
``progress.json`` lists it, so a crash never leaves a partial shard that is reused.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

import gin
from xtr_jax import io as xio
from xtr_jax import partitioning
from xtr_jax.data import formats
from xtr_jax.data.formats import Passage, read_corpus
from xtr_jax.data.tokenizer import (
  Tokenizer,
  bucket_length,
  pad_batch,
  split_windows,
)
from xtr_jax.io import atomic_save_npy, atomic_write_json
from xtr_jax.models.bert import BertConfig
from xtr_jax.models.config import T5Config
from xtr_jax.models.xtr import RetrievalEncoder, output_dim

PROGRESS = "progress.json"

# Batch shapes. ``EncodeParams.token_budget = AUTO_TOKEN_BUDGET`` picks them per platform
# (``TokenEncoder.batch_policy``). On CPU a call's cost per token grows with its size: a
# 2-core run of the mE5-small encoder took 35 us/token at 32 x 32 but 42 at 256 x 32, and 60
# at 2 x 512 but 73 at 32 x 512 (the [rows, 12, L, L] attention logits and the FFN
# activations leave the caches). Batches of about 2048 positions with no row floor encoded
# a synthetic corpus (512 texts, 8-512 tokens) 1.6x faster than 8192 positions with at least
# 32 rows, and with less padding than torch's per-batch padding (1,024 and 2,048 positions
# were alike; 3,072 was slower).
AUTO_TOKEN_BUDGET = -1
CPU_TOKEN_BUDGET = 2048
ACCELERATOR_TOKEN_BUDGET = 8192


def text_to_encode(passage: Passage, params: EncodeParams) -> str:
  """The text ``params`` encodes for ``passage`` (``formats.passage_text`` with its template)."""
  return formats.passage_text(passage.title, passage.text, params.passage_template, passage.id)


# ---------------------------------------------------------------------------- encoder


class TokenEncoder:
  """Jitted ``RetrievalEncoder``: batch over the mesh's ``data`` axis, parameters placed by
  the training's logical axis rules (``partitioning.shard_params_for_inference``), so with
  ``model_parallel > 1`` a model larger than one device is split over ``model_parallel``
  devices per replica.

  ``pooling='mean'`` makes it a single-vector encoder that looks like a token encoder
  whose every text has one token: the index, the XTR scoring (one query token, so the
  score is the dot product) and the store then serve single-vector retrieval unchanged.
  ``proj_dim`` is the width of the vectors it emits (the backbone's with ``proj_dim=0``).
  """

  def __init__(
    self,
    params,
    config: T5Config | BertConfig,
    proj_dim: int = 128,
    pooling: str = "token",
    model_parallel: int = 1,
    rules: partitioning.AxisRules = partitioning.DEFAULT_RULES,
  ):
    self.config = config
    self.proj_dim = output_dim(config, proj_dim)
    self.pooling = pooling
    self.pad_id = config.pad_token_id
    self.model = RetrievalEncoder(config, proj_dim=proj_dim, pooling=pooling)
    mesh = partitioning.inference_mesh(model_parallel)
    self.num_devices = mesh.shape["data"]  # batch rows are split over the replicas
    self.platform = mesh.devices.flat[0].platform
    self.batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    self.params = partitioning.shard_params_for_inference(params, self.model, mesh, rules)
    param_sharding = jax.tree.map(lambda a: a.sharding, self.params)

    def apply(p, ids):
      out = self.model.apply({"params": p}, ids)
      if pooling == "mean":
        out = out[:, None, :]
      return out.astype(jnp.float16)

    self._fn = jax.jit(
      apply, in_shardings=(param_sharding, self.batch_sharding), out_shardings=self.batch_sharding
    )

  def round_batch(self, batch_size: int) -> int:
    """Batch size rounded up to a multiple of the device count (the sharded axis)."""
    return -(-batch_size // self.num_devices) * self.num_devices

  def __call__(self, ids: np.ndarray) -> np.ndarray:
    """[B, L] int32 -> [B, L, proj_dim] float16 (B a multiple of the device count);
    [B, 1, proj_dim] with mean pooling."""
    return np.asarray(self._fn(self.params, jax.device_put(ids, self.batch_sharding)))

  def vectors_per_text(self, n_ids: int) -> int:
    return 1 if self.pooling == "mean" else n_ids

  def batch_policy(self, batch_size: int, token_budget: int) -> tuple[int, int]:
    """``batch_policy`` on this encoder's platform."""
    return batch_policy(self.platform, batch_size, token_budget)

  def encode_tokens(
    self,
    token_ids: list[list[int]],
    batch_size: int,
    max_length: int,
    buckets: tuple[int, ...],
    token_budget: int = 0,
  ) -> list[np.ndarray]:
    """Per text, its [len, proj_dim] float16 vectors (padding dropped, EOS kept).

    Texts go longest first in batches of one bucket length (``plan_batches``); with a
    ``token_budget`` a batch holds about that many positions, so short texts run in wide
    batches (``batch_policy`` gives the row floor; ``AUTO_TOKEN_BUDGET`` picks both by
    platform); every (rows, bucket) shape compiles once and is reused.
    """
    order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
    budget, min_rows = self.batch_policy(batch_size, token_budget)
    out: list[np.ndarray | None] = [None] * len(token_ids)
    plan = plan_batches(
      [len(token_ids[i]) for i in order], max_length, buckets, budget, min_rows, self.round_batch
    )
    for start, rows, length in plan:
      idx = order[start : start + rows]
      vecs = self(pad_batch([token_ids[i] for i in idx], length, rows, self.pad_id))
      for row, i in enumerate(idx):
        out[i] = vecs[row, : self.vectors_per_text(len(token_ids[i]))]
    return out  # type: ignore[return-value]


def batch_policy(platform: str, batch_size: int, token_budget: int) -> tuple[int, int]:
  """(positions per batch, fewest rows per batch) that ``encode_tokens`` plans with.

  ``token_budget`` >= 0 is taken as given, with ``batch_size`` as the row floor (0: every
  batch has ``batch_size`` rows). ``AUTO_TOKEN_BUDGET`` picks by platform: on CPU
  ``CPU_TOKEN_BUDGET`` positions and no row floor, because there a call's cost per token
  grows with its size (its activations fall out of cache; see the constants); accelerators
  want wide calls, so ``ACCELERATOR_TOKEN_BUDGET`` and ``batch_size`` rows.
  """
  if token_budget != AUTO_TOKEN_BUDGET:
    if token_budget < 0:
      raise ValueError(f"token_budget={token_budget}: expected >= 0 or {AUTO_TOKEN_BUDGET} (auto)")
    return token_budget, batch_size
  if platform == "cpu":
    return CPU_TOKEN_BUDGET, 1
  return ACCELERATOR_TOKEN_BUDGET, batch_size


def plan_batches(
  lengths: list[int],
  max_length: int,
  buckets: tuple[int, ...],
  token_budget: int,
  min_rows: int,
  round_rows=lambda rows: rows,
) -> list[tuple[int, int, int]]:
  """[(start, rows, padded length)] covering ``lengths`` (sorted longest first) in order.

  A batch pads to the bucket of its first (longest) text and has
  ``round_rows(max(min_rows, token_budget // bucket))`` rows (``min_rows`` when
  ``token_budget`` is 0); the last batch may hold fewer texts than rows (padding rows).
  """
  plan, start = [], 0
  while start < len(lengths):
    length = bucket_length(lengths[start], max_length, buckets)
    rows = round_rows(max(min_rows, token_budget // max(length, 1), 1))
    plan.append((start, rows, length))
    start += rows
  return plan


# ---------------------------------------------------------------------------- corpus


@gin.configurable
@dataclasses.dataclass(frozen=True)
class EncodeParams:
  max_length: int = 256
  batch_size: int = 32
  shard_size: int = 10_000  # passages per shard
  buckets: tuple[int, ...] = (32, 64, 96, 128, 160, 192, 256, 320, 384, 448, 512)
  # Positions per batch (rows = token_budget // bucket, at least batch_size); 0: fixed
  # batch_size rows; -1 (AUTO_TOKEN_BUDGET): per platform, see TokenEncoder.batch_policy.
  token_budget: int = AUTO_TOKEN_BUDGET
  # Passages longer than max_length: 'truncate', or 'window' (encode consecutive windows
  # and keep every token's vector; a mean-pooled passage is the length-weighted mean of its
  # windows, as multilingual-E5's reference engine computes it).
  long_text: str = "truncate"
  lowercase: bool = False
  # None: ``title text`` as in training (formats.passage_text); else a template with
  # {title}, {text}, {id}. Recorded in the manifest, so explanations re-tokenise alike.
  passage_template: str | None = None


def encode_passages(
  encoder: TokenEncoder, tokenizer, texts: list[str], params: EncodeParams
) -> list[np.ndarray]:
  """Per passage its vectors ([n_tokens, d], or [1, d] mean-pooled), long texts as
  ``params.long_text`` says."""
  if params.long_text not in ("truncate", "window"):
    raise ValueError(f"EncodeParams.long_text={params.long_text!r}; expected truncate or window")
  limit = params.max_length if params.long_text == "truncate" else 1 << 30
  ids = tokenizer.encode(texts, limit, params.lowercase, role="passage")
  bos_id = getattr(tokenizer, "bos_id", None)
  windows = [split_windows(x, params.max_length, bos_id) for x in ids]
  flat = [w for ws in windows for w in ws]
  vecs = encoder.encode_tokens(
    flat, params.batch_size, params.max_length, params.buckets, params.token_budget
  )
  out, at = [], 0
  for ws in windows:
    parts, at = vecs[at : at + len(ws)], at + len(ws)
    out.append(parts[0] if len(ws) == 1 else _join_windows(parts, ws, encoder.pooling, bos_id))
  return out


def _join_windows(
  parts: list[np.ndarray], windows: list[list[int]], pooling: str, bos_id: int | None
) -> np.ndarray:
  if pooling != "mean":
    return np.concatenate(parts, axis=0)
  # Weighted by content tokens (the closing special, and the opening one when there is one,
  # do not count), as the reference engine weights its windows.
  specials = 1 + int(bos_id is not None)
  weights = np.array([len(w) - specials for w in windows], np.float32)[:, None]
  pooled = (np.concatenate(parts, axis=0).astype(np.float32) * weights).sum(0)
  return (pooled / max(np.linalg.norm(pooled), 1e-6))[None].astype(np.float16)


def encode_corpus(
  corpus_path: str,
  work_dir: str,
  encoder: TokenEncoder,
  tokenizer: Tokenizer,
  params: EncodeParams = EncodeParams(),
  settings: dict | None = None,
  progress: bool = True,
) -> dict:
  """Encodes ``corpus_path`` into shards under ``work_dir``; resumes finished shards.

  ``settings`` (model fingerprint, ...) are stored in ``progress.json``; resuming with
  different settings fails rather than mixing vectors of two models in one index.
  Returns the progress record (``shards``: list of {index, passages, tokens}).
  """
  from tqdm import tqdm  # noqa: PLC0415

  xio.makedirs(work_dir)  # local or gs://: every file below goes through the path layer
  settings = {
    **(settings or {}),
    "corpus": xio.abspath(corpus_path),
    "corpus_bytes": xio.getsize(corpus_path),
    "vocabulary_fingerprint": tokenizer.fingerprint,
    "proj_dim": encoder.proj_dim,
    "pooling": encoder.pooling,
    "encode": dataclasses.asdict(params),
  }
  settings = json.loads(json.dumps(settings))  # tuples -> lists, as stored
  progress_path = xio.join(work_dir, PROGRESS)
  record = {"settings": settings, "shards": [], "complete": False}
  if xio.exists(progress_path):
    old = json.loads(xio.read_text(progress_path))
    if old.get("settings") != settings:
      raise ValueError(
        f"{progress_path}: an unfinished encoding with different settings is there "
        f"(stored {old.get('settings')}, now {settings}); delete {work_dir} to start over"
      )
    record = old
    if record["shards"]:
      logging.info("resuming: %d shards already encoded in %s", len(record["shards"]), work_dir)
  done = {s["index"] for s in record["shards"]}

  def flush(index: int, first_row: int, batch: list[Passage]) -> None:
    vecs = encode_passages(encoder, tokenizer, [text_to_encode(p, params) for p in batch], params)
    lengths = np.array([v.shape[0] for v in vecs], np.int64)
    vectors = np.concatenate(vecs, axis=0).astype(np.float16)
    t2p = np.repeat(np.arange(first_row, first_row + len(batch), dtype=np.int32), lengths)
    atomic_save_npy(xio.join(work_dir, f"vectors_{index:05d}.npy"), vectors)
    atomic_save_npy(xio.join(work_dir, f"token_to_passage_{index:05d}.npy"), t2p)
    atomic_write_json(xio.join(work_dir, f"passage_ids_{index:05d}.json"), [p.id for p in batch])
    record["shards"].append(
      {"index": index, "first_row": first_row, "passages": len(batch), "tokens": int(len(t2p))}
    )
    record["shards"].sort(key=lambda s: s["index"])
    atomic_write_json(progress_path, record)

  bar = tqdm(desc="encode passages", unit="psg", disable=not progress)
  batch: list[Passage] = []
  row = 0
  shard = 0
  for passage in read_corpus(corpus_path):
    if shard not in done:
      batch.append(passage)
    row += 1
    if row % params.shard_size == 0:
      if shard not in done:
        flush(shard, row - len(batch), batch)
      bar.update(params.shard_size)  # counts encoded (or already encoded) passages
      batch, shard = [], shard + 1
  if batch and shard not in done:
    flush(shard, row - len(batch), batch)
  bar.update(row % params.shard_size)
  bar.close()
  if row == 0:
    raise ValueError(f"{corpus_path}: no passages after the header")
  record["complete"] = True
  record["num_passages"] = row
  atomic_write_json(progress_path, record)
  return record


def load_shards(work_dir: str, record: dict):
  """(vectors float16 [N, d], token_to_passage int32 [N], passage_ids list) of all shards."""
  vectors, t2p, pids = [], [], []
  for s in record["shards"]:
    i = s["index"]
    names = (f"vectors_{i:05d}.npy", f"token_to_passage_{i:05d}.npy", f"passage_ids_{i:05d}.json")
    paths = [xio.join(work_dir, name) for name in names]
    for path in paths:
      if not xio.exists(path):
        raise FileNotFoundError(f"encoded shard file missing: {path}")
    for path, out in zip(paths[:2], (vectors, t2p), strict=True):
      with xio.open_file(path, "rb") as f:  # read whole (no memory map), so gs:// works too
        out.append(np.load(f))
    pids.extend(json.loads(xio.read_text(paths[2])))
  return np.concatenate(vectors), np.concatenate(t2p), pids
