"""XTR's evidence for a ranked passage: which passage token each query token retrieved.

An XTR score (``xtr_search.xtr_scores``) is the mean, over the query's real tokens that
retrieved anything, of one number per query token: the best score among the passage's tokens
that this query token retrieved, or, when it retrieved none of them, the imputed score (the
lowest score it retrieved, its k'-th). The evidence lists those numbers with what they came
from (the passage token's piece text and position, or "imputed") and each one's share of the
score, ``similarity / query_tokens``, so the shares add up to the passage's score. With
``exact=True`` the score is MaxSim over all the passage's stored tokens and the evidence is
each query token's best-matching passage token.

Positions: a passage's corpus tokens were written contiguously, in row order, first token of
the text first (``encode.encode_corpus``), so a token's position is its id minus its
passage's first token id. Tokens after ``num_corpus_tokens`` are xQG question vectors
appended to a passage (``store.build_index(extra_vectors=...)``): they have no position in
the text and are marked ``source='xqg'``. The pieces come from tokenising the passage again
as the index did (``formats.passage_text`` with the template in ``manifest['encode']``); if
that does not give as many pieces as the passage has tokens (e.g. an index built by other
code) the pieces are left out and the positions and scores still stand.
"""

from __future__ import annotations

import numpy as np

from xtr_jax.data.formats import passage_text
from xtr_jax.data.tokenizer import split_windows
from xtr_jax.index.corpus_text import CorpusTexts
from xtr_jax.index.xtr_search import passage_token_groups

Hits = tuple[np.ndarray, np.ndarray, np.ndarray]  # token ids, passage rows, scores: [n, k']


def piece_texts(tokenizer, ids: list[int]) -> list[str]:
  """The vocabulary piece of each id (``▁`` marks a word start), whichever library tokenises."""
  sp = getattr(tokenizer, "sp", None)
  if sp is not None:
    return [sp.id_to_piece(int(i)) for i in ids]
  hf = getattr(tokenizer, "tokenizer", None)
  if hf is not None and hasattr(hf, "id_to_token"):
    return [hf.id_to_token(int(i)) or "" for i in ids]
  return [tokenizer.decode([int(i)]) for i in ids]


def xtr_evidence(hits: Hits, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per query token of one query: (status, similarity, token id) behind passage ``row``'s score.

  status: 1 retrieved (similarity = the best retrieved token of ``row``, token id = it),
  0 imputed (similarity = the token's lowest retrieved score, token id -1), -1 retrieved
  nothing at all (left out of the mean, like padding). The same rules as ``xtr_scores``.
  """
  t_ids, t_rows, t_scores = (np.asarray(a) for a in hits)
  t_scores = t_scores.astype(np.float32)
  valid = t_rows >= 0
  live = valid.any(axis=1)
  imputed = np.where(valid, t_scores, np.inf).min(axis=1)
  mine = valid & (t_rows == row)
  found = mine.any(axis=1)
  slot = np.argmax(np.where(mine, t_scores, -np.inf), axis=1)  # first of the best on ties
  at = np.arange(t_ids.shape[0])
  similarity = np.where(found, t_scores[at, slot], np.where(live, imputed, 0.0))
  token = np.where(found, t_ids[at, slot], -1)
  status = np.where(found, 1, np.where(live, 0, -1))
  return status, similarity.astype(np.float32), token


def maxsim_evidence(
  query_vectors: np.ndarray, token_vectors, order: np.ndarray, starts: np.ndarray, row: int
) -> tuple[np.ndarray, np.ndarray]:
  """Per query token (real ones, [n, d]): (best similarity, its token id) over ``row``'s tokens."""
  tokens = order[starts[row] : starts[row + 1]]
  sims = np.asarray(query_vectors, np.float32) @ np.asarray(token_vectors[tokens], np.float32).T
  best = sims.argmax(axis=1)
  return sims[np.arange(sims.shape[0]), best], tokens[best]


class Explainer:
  """Evidence of ranked passages for one retriever, as JSON-ready dicts (``service.Evidence``)."""

  def __init__(self, retriever, texts: CorpusTexts | None):
    self.retriever = retriever
    self.texts = texts
    index = retriever.index
    manifest = index.manifest
    self.mean_pooled = manifest.get("pooling", "token") == "mean"
    t2p = np.asarray(index.token_to_passage)
    self.num_corpus_tokens = int(manifest.get("num_corpus_tokens", -1))
    corpus = t2p[: max(self.num_corpus_tokens, 0)]
    self.first_token = None  # first token id of each passage's text, when tokens are in order
    if self.num_corpus_tokens >= 0 and (corpus.size < 2 or (np.diff(corpus) >= 0).all()):
      self.first_token = np.searchsorted(corpus, np.arange(index.num_passages + 1), side="left")
    self._groups = None

  def query_pieces(self, query: str) -> list[str]:
    """The piece of each real query token, in the order of the query vectors."""
    if self.mean_pooled:
      return ["(whole query)"]
    r = self.retriever
    ids = r.tokenizer.encode([query], r.params.query_max_length, r.lowercase, role="query")[0]
    return piece_texts(r.tokenizer, ids)

  def passage_pieces(self, row: int) -> list[str] | None:
    """The pieces of ``row``'s indexed tokens, position by position; None if not reproducible."""
    if self.mean_pooled or self.texts is None or self.first_token is None:
      return None
    passage = self.texts.get(row)
    if passage is None:
      return None
    r = self.retriever
    enc = r.index.manifest.get("encode", {})
    max_length = int(enc.get("max_length", 256))
    window = enc.get("long_text", "truncate") == "window"
    ids = r.tokenizer.encode(
      [passage_text(passage.title, passage.text, enc.get("passage_template"), passage.id)],
      1 << 30 if window else max_length,
      r.lowercase,
      role="passage",
    )[0]
    ids = [
      i for w in split_windows(ids, max_length, getattr(r.tokenizer, "bos_id", None)) for i in w
    ]
    if len(ids) != self.first_token[row + 1] - self.first_token[row]:
      return None
    return piece_texts(r.tokenizer, ids)

  def explain(
    self,
    query: str,
    query_vectors: np.ndarray,
    query_mask: np.ndarray,
    hits: Hits,
    rows: list[int],
    exact: bool,
  ) -> list[dict]:
    """One evidence dict per passage row in ``rows`` (the query's ranked results)."""
    q_pieces = self.query_pieces(query)
    real = np.asarray(query_vectors, np.float32)[np.asarray(query_mask, bool)]
    out = []
    for row in rows:
      if exact:
        if self._groups is None:
          index = self.retriever.index
          self._groups = passage_token_groups(index.token_to_passage, index.num_passages)
        sim, token = maxsim_evidence(real, self.retriever.index.vectors, *self._groups, row)
        status = np.full(sim.shape, 2)  # 2: the best match over all the passage's tokens
      else:
        status, sim, token = xtr_evidence(hits, row)
      out.append(self._evidence(q_pieces, status, sim, token, row, exact))
    return out

  def _evidence(self, q_pieces, status, sim, token, row: int, exact: bool) -> dict:
    used = int((status >= 0).sum())
    pieces = self.passage_pieces(row)
    names = {2: "maxsim", 1: "retrieved", 0: "imputed", -1: "unused"}
    tokens = []
    for i, (s, v, t) in enumerate(zip(status.tolist(), sim.tolist(), token.tolist())):
      position, source = None, None
      if t >= 0:
        source = "passage" if t < self.num_corpus_tokens or self.num_corpus_tokens < 0 else "xqg"
        if source == "passage" and self.first_token is not None:
          position = int(t - self.first_token[row])
      tokens.append({
        "query_position": i,
        "query_piece": q_pieces[i] if i < len(q_pieces) else "",
        "status": names[s],
        "similarity": float(v),
        "contribution": float(v) / used if s >= 0 else 0.0,
        "passage_position": position,
        "passage_piece": pieces[position] if pieces is not None and position is not None else None,
        "source": source,
      })  # fmt: skip
    return {
      "mode": "exact" if exact else "xtr",
      "query_tokens": used,
      "score": float(sum(t["contribution"] for t in tokens)),
      "tokens": tokens,
      "passage_pieces": pieces,
    }
