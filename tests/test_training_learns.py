"""Training improves retrieval, for every retrieval loss, through the real trainer.

The other trainer tests compare the trainer with itself (resumed vs uninterrupted, sharded vs
one device), so an update with the wrong sign would pass them. Here a tiny mT5-shaped encoder
learns a synthetic task from random init in seconds: 24 topics, each with 6 query-side and 6
passage-side token ids (disjoint, like two languages: nothing matches lexically, so a random
model is at chance); a query is 3 of its topic's query ids, its passage 4 of its passage ids
plus 3 noise ids. Held-out pairs are fresh draws (other subsets, other noise) from a
separate seed. The held-out MRR is computed here
in numpy from the encoder's vectors (dot product for single-vector, MaxSim over all tokens
for ColBERT and XTR: XTR's exact re-scoring), not by the trainer's metric code.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

from xtr_jax.models.config import tiny_config
from xtr_jax.training import optimizers, trainer

CONFIG = tiny_config(num_encoder_layers=1, num_decoder_layers=1)
TOPICS, IDS_PER_TOPIC, BATCH = 24, 6, 16
QUERY_IDS = 3  # 0 pad, 1 EOS, 2 unk; then the query-side ids, the passage-side ids, noise
PASSAGE_IDS = QUERY_IDS + TOPICS * IDS_PER_TOPIC
NOISE = np.arange(PASSAGE_IDS + TOPICS * IDS_PER_TOPIC, CONFIG.vocab_size)


def _batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
  """One batch of distinct topics (so every in-batch negative is another topic)."""
  topics = rng.choice(TOPICS, BATCH, replace=False)
  q = np.zeros((BATCH, 4), np.int32)
  p = np.zeros((BATCH, 8), np.int32)
  for row, t in enumerate(topics):
    q[row, :3] = QUERY_IDS + t * IDS_PER_TOPIC + rng.choice(IDS_PER_TOPIC, 3, replace=False)
    q[row, 3] = 1
    topic_ids = PASSAGE_IDS + t * IDS_PER_TOPIC + rng.choice(IDS_PER_TOPIC, 4, replace=False)
    passage = np.concatenate([topic_ids, rng.choice(NOISE, 3)])
    p[row, :7], p[row, 7] = rng.permutation(passage), 1
  return {"query_tokens": q, "passage_tokens": p}


def _batches(seed: int):
  def factory(start_step, shard_index, num_shards):
    step = start_step
    while True:
      yield _batch(np.random.default_rng([seed, step]))
      step += 1

  return factory


def _mrr(scores: np.ndarray) -> float:
  """Mean reciprocal rank of the diagonal (ties count against the positive)."""
  pos = np.diag(scores)
  ranks = 1 + np.sum(scores >= pos[:, None], axis=1) - 1  # others scoring >= the positive
  return float(np.mean(1.0 / ranks))


def _heldout_mrr(task: trainer.ModelTask, params, n_batches: int = 4) -> float:
  values = []
  for i in range(n_batches):
    batch = _batch(np.random.default_rng([99, i]))
    q_ids, p_ids = batch["query_tokens"], batch["passage_tokens"]
    q = np.asarray(task._encode(params, q_ids, None, True), np.float64)
    d = np.asarray(task._encode(params, p_ids, None, True), np.float64)
    if task.kind == "single_vector":
      scores = q @ d.T
    else:  # MaxSim: each real query token's best real passage token, summed
      sim = np.einsum("qid,pjd->qpij", q, d)
      sim = np.where((p_ids != 0)[None, :, None, :], sim, -np.inf)
      scores = np.sum(np.max(sim, axis=-1) * (q_ids != 0)[:, None, :], axis=-1)
    values.append(_mrr(scores))
  return float(np.mean(values))


@pytest.mark.parametrize("kind", ["xtr", "colbert", "single_vector"])
def test_a_tiny_model_learns_synthetic_retrieval(tmp_path, kind):
  steps = 80
  task = trainer.ModelTask(CONFIG, kind=kind)  # what train() builds (no gin bindings)
  before = _heldout_mrr(task, nn.meta.unbox(task.init(jax.random.key(0))))
  result = trainer.train(
    str(tmp_path / kind),
    model_config=CONFIG,
    model_kind=kind,
    train_batches=_batches(seed=1),
    num_train_steps=steps,
    checkpoint_every=steps,
    log_every=1,
    mesh_shape=(2, 2),
    schedule_fn=lambda: optimizers.learning_rate_schedule(1e-2, "constant", 5),
    export=False,
    tensorboard=False,
  )
  first = np.mean([result.losses[s] for s in range(1, 6)])
  last = np.mean([result.losses[s] for s in range(steps - 4, steps + 1)])
  after = _heldout_mrr(task, jax.device_get(result.state["params"]))
  chance = np.mean(1.0 / np.arange(1, BATCH + 1))  # H_16 / 16 = 0.21
  print(f"{kind}: loss {first:.3f} -> {last:.3f}; held-out MRR {before:.3f} -> {after:.3f}")
  assert last < 0.5 * first
  assert after > max(chance + 0.5, before + 0.3), (before, after, chance)
