"""``Retriever``: text queries in, ranked passage ids out, over a saved token index."""

from __future__ import annotations

import dataclasses

import numpy as np

import gin
from xtr_jax.data.tokenizer import Tokenizer
from xtr_jax.index.brute_force import BruteForceSearcher, rescore_candidates
from xtr_jax.index.compact import CompactSearcher
from xtr_jax.index.encode import TokenEncoder
from xtr_jax.index.store import TokenIndex, load_index
from xtr_jax.index.xtr_search import maxsim_search, passage_token_groups, xtr_search_batch


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SearchParams:
  """Query-side settings: k' tokens retrieved per query token, query length, re-scoring.

  ``rescore_candidates`` > 0: fetch that many ANN candidates per query token and keep the
  exact top-k' by dot product with the stored float16 vectors (``brute_force.
  rescore_candidates``); 0 keeps ScaNN's approximate scores. Brute-force indexes are exact
  and skip it, and so do indexes built with ScaNN's own reordering (``ScannParams.reorder``
  > 0, e.g. ``reorder_dtype='int8'``: the same re-scoring in C++ from 1-byte codes held in
  RAM). 2000 (2 k') lifts XOR-mini top-100 agreement with brute force from 0.91 to 0.995
  (results/search_agreement.md).

  Compact indexes (``backend='compact'``) score from their codes alone: their float16
  vectors stay on disk unless ``compact_rescore`` asks for the same exact re-scoring.
  ``compact_nprobe`` > 0 overrides the lists searched per query token (0: as built).
  """

  token_top_k: int = 1000
  rescore_candidates: int = 2000
  query_max_length: int = 64
  batch_size: int = 32
  exact_candidates: str = "retrieved"  # exact mode over 'retrieved' union or 'all' passages
  compact_nprobe: int = 0
  compact_rescore: bool = False


def load_model(checkpoint_dir: str, expected_config=None):
  """(params, config, proj_dim, fingerprint, extra) of a retrieval checkpoint.

  ``checkpoint_dir`` may name an embedded model (``me5-small``); ``extra['pooling']`` is
  the model's own pooling, which an index may override (one vector per token or per text).
  ``expected_config`` (the fields a run config binds, or a function giving them: the CLI
  passes ``gin_utils.bound_config_fields``) must agree with the checkpoint's architecture.
  """
  from xtr_jax.checkpoints.embedded import resolve_checkpoint  # noqa: PLC0415
  from xtr_jax.checkpoints.orbax_io import check_config_matches, load_checkpoint  # noqa: PLC0415

  checkpoint_dir = resolve_checkpoint(checkpoint_dir)
  ckpt = load_checkpoint(checkpoint_dir)
  if expected_config is not None:
    check_config_matches(ckpt.config, expected_config, checkpoint_dir)
  extra = dict(ckpt.extra or {})
  if ckpt.model_kind != "retrieval":
    raise ValueError(
      f"checkpoint {checkpoint_dir} is a {ckpt.model_kind!r} model, not a retrieval encoder"
    )
  return ckpt.params, ckpt.config, int(extra.get("proj_dim", 128)), ckpt.fingerprint, extra


class Retriever:
  """XTR retrieval: encode queries, token search, aggregate with imputation (or exact)."""

  def __init__(
    self,
    index: TokenIndex,
    encoder: TokenEncoder,
    tokenizer: Tokenizer,
    params: SearchParams = SearchParams(),
  ):
    if encoder.proj_dim != index.manifest["proj_dim"]:
      raise ValueError(
        f"model proj_dim {encoder.proj_dim} != index proj_dim {index.manifest['proj_dim']}"
      )
    want = index.manifest.get("vocabulary_fingerprint")
    if want and tokenizer.fingerprint != want:
      raise ValueError(
        f"vocabulary {tokenizer.path} has fingerprint {tokenizer.fingerprint} but the index "
        f"{index.directory} was built with {want}"
      )
    pooling = index.manifest.get("pooling", "token")
    if getattr(encoder, "pooling", "token") != pooling:
      raise ValueError(
        f"index {index.directory} holds {pooling}-pooled vectors but the query encoder "
        f"pools {encoder.pooling!r}"
      )
    self.index = index
    self.encoder = encoder
    self.tokenizer = tokenizer
    self.params = params
    self.lowercase = bool(index.manifest.get("encode", {}).get("lowercase", False))
    self._groups = None

  @classmethod
  def load(
    cls,
    index_dir: str,
    checkpoint_dir: str | None = None,
    vocabulary: str | None = None,
    backend: str | None = None,
    params: SearchParams | None = None,
    expected_config=None,
    check_vectors: bool = True,
  ) -> Retriever:
    """Loads the index and its model; the model's fingerprint must match the manifest's.

    ``checkpoint_dir`` / ``vocabulary`` default to the paths recorded at build time;
    ``expected_config`` as in ``load_model``. A NaN/Inf stored vector is a one-line
    ``IndexFormatError`` naming the file and row; ``check_vectors=False`` skips that scan of
    ``vectors.npy`` (``store.load_index``), for a trusted large index (the CLI's
    ``--skip_vector_check``).
    """
    from xtr_jax.index.store import read_manifest  # noqa: PLC0415

    manifest = read_manifest(index_dir)
    checkpoint_dir = checkpoint_dir or manifest.get("checkpoint")
    if not checkpoint_dir:
      raise ValueError(f"{index_dir}: no checkpoint recorded in the manifest; pass one")
    model_params, config, proj_dim, fingerprint, extra = load_model(checkpoint_dir, expected_config)
    params = params or SearchParams()
    index = load_index(
      index_dir, expected_fingerprint=fingerprint, backend=backend,
      compact_nprobe=params.compact_nprobe, check_vectors=check_vectors,
    )  # fmt: skip
    from xtr_jax.checkpoints.embedded import resolve_checkpoint  # noqa: PLC0415
    from xtr_jax.checkpoints.tokenizers import tokenizer_for  # noqa: PLC0415

    checkpoint_dir = resolve_checkpoint(checkpoint_dir)
    if not extra.get("tokenizer"):
      vocabulary = vocabulary or manifest.get("vocabulary") or extra.get("vocabulary")
    tokenizer = tokenizer_for(checkpoint_dir, extra, config, vocabulary)
    pooling = manifest.get("pooling", "token")
    encoder = TokenEncoder(model_params, config, proj_dim, pooling=pooling)
    return cls(index, encoder, tokenizer, params)

  def encode_queries(self, queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """[B, L, d] float32 query token vectors and [B, L] mask (padding false, EOS true)."""
    n = self.params.query_max_length
    ids = self.tokenizer.encode(list(queries), n, self.lowercase, role="query")
    vecs = self.encoder.encode_tokens(ids, self.params.batch_size, n, (n,))
    out = np.zeros((len(queries), n, self.encoder.proj_dim), np.float32)
    mask = np.zeros((len(queries), n), bool)
    for i, v in enumerate(vecs):
      out[i, : v.shape[0]] = v
      mask[i, : v.shape[0]] = True
    return out, mask

  @property
  def exact_tokens(self) -> bool:
    """True when the index's token search is already exact (brute force)."""
    return all(isinstance(s, BruteForceSearcher) for _, s in self.index.searchers)

  @property
  def scann_reorders(self) -> bool:
    """True when every ScaNN segment re-scores its candidates itself (built with reorder)."""
    params = [getattr(s, "params", None) for _, s in self.index.searchers]
    return all(p is not None and getattr(p, "reorder", 0) > 0 for p in params)

  @property
  def compact(self) -> bool:
    """True when the token search runs on compact codes (``compact.CompactSearcher``)."""
    return all(isinstance(s, CompactSearcher) for _, s in self.index.searchers)

  def _vectors(self, why: str):
    if self.index.vectors is None:
      raise ValueError(
        f"{why} reads the float16 vectors, but {self.index.directory} was built without "
        "them (CompactParams.keep_vectors=False)"
      )
    return self.index.vectors

  def search_tokens(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k' token ids and scores of query token vectors [T, d], re-scored if configured."""
    n = self.index.manifest["num_tokens"]
    token_k = min(self.params.token_top_k, n)
    fetch = min(max(self.params.rescore_candidates, token_k), n)
    skip = self.params.rescore_candidates <= 0 or self.exact_tokens or self.scann_reorders
    if skip or (self.compact and not self.params.compact_rescore):
      return self.index.search_tokens(flat, token_k)
    cand, _ = self.index.search_tokens(flat, fetch)
    return rescore_candidates(flat, cand, self._vectors("re-scoring"), token_k)

  def search_vectors(
    self,
    query_vectors: np.ndarray,
    query_mask: np.ndarray,
    k: int,
    exact: bool = False,
    hits: list | None = None,
  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query (passage rows, scores), best first, from query token vectors.

    ``hits``, when a list, receives per query the tokens its real tokens retrieved, (token
    ids, passage rows, scores) each [n, k'], that the XTR scores came from (index/explain.py).
    """
    b, length, d = query_vectors.shape
    flat = query_vectors.reshape(b * length, d)[query_mask.reshape(-1)]
    tok_ids, tok_scores = self.search_tokens(flat)
    rows = self.index.tokens_to_passages(tok_ids)
    lengths = query_mask.sum(axis=1)
    if hits is not None:
      bounds = np.cumsum(lengths)[:-1]
      hits.extend(zip(*(np.split(a, bounds) for a in (tok_ids, rows, tok_scores))))
    if not exact:
      return xtr_search_batch(rows, tok_scores, lengths, k)
    vectors = self._vectors("exact mode")
    results, at = [], 0
    for q in range(b):
      n = int(lengths[q])
      t_rows = rows[at : at + n]
      at += n
      if self._groups is None:
        self._groups = passage_token_groups(self.index.token_to_passage, self.index.num_passages)
      if self.params.exact_candidates == "all":
        cands = np.arange(self.index.num_passages)
      else:
        cands = np.unique(t_rows[t_rows >= 0])
      results.append(
        maxsim_search(query_vectors[q], query_mask[q], vectors, *self._groups, cands, k)
      )
    return results

  def search(self, queries: list[str], k: int = 100, exact: bool = False):
    """``[[(passage_id, score), ...] per query]``, best first."""
    if isinstance(queries, str):
      raise TypeError("queries must be a list of strings, not one string")
    if not queries:
      return []
    vecs, mask = self.encode_queries(queries)
    out = []
    for rows, scores in self.search_vectors(vecs, mask, k, exact=exact):
      out.append([(self.index.passage_ids[r], float(s)) for r, s in zip(rows, scores)])
    return out
