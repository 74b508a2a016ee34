"""projection_fit: the distilled projection keeps what the teacher's retrieval uses."""

import jax.numpy as jnp
import numpy as np
import pytest

from xtr_jax.index.xtr_search import xtr_search
from xtr_jax.training import projection_fit as pf
from xtr_jax.training import projection_init


def _pairs(n: int, seed: int, lq: int = 4, ld: int = 6):
  """Pair i's tokens share a signature s_i in 8 'signal' dims (unit variance); 4 'nuisance'
  dims carry per-token noise of variance 4. The principal axes favour the nuisance dims, the
  retrieval lives in the signal ones."""
  rng = np.random.default_rng(seed)
  sig = rng.normal(size=(n, 1, 8))

  def tokens(length: int) -> np.ndarray:
    signal = sig + 0.3 * rng.normal(size=(n, length, 8))
    return np.concatenate([signal, 2.0 * rng.normal(size=(n, length, 4))], axis=-1)

  q, d = tokens(lq), tokens(ld)
  q_len, d_len = rng.integers(2, lq + 1, n), rng.integers(3, ld + 1, n)
  return pf.pad_states([q[i, : q_len[i]] for i in range(n)], lq), pf.pad_states(
    [d[i, : d_len[i]] for i in range(n)], ld
  )


def test_pad_states_keeps_each_text_and_masks_the_rest():
  states, mask = pf.pad_states([np.ones((2, 3)), 2 * np.ones((5, 3))], 4)
  assert states.shape == (2, 4, 3) and states.dtype == np.float16
  np.testing.assert_array_equal(mask.sum(axis=1), [2, 4])
  assert states[0, 2:].max() == 0 and states[1, 3, 0] == 2


def test_token_kl_is_zero_for_equal_scores_and_matches_numpy():
  rng = np.random.default_rng(0)
  t, s = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
  qm, dm = np.array([1, 1, 0, 1, 1], bool), np.array([1, 1, 1, 0, 1, 1, 1], bool)
  assert float(pf.token_kl(jnp.asarray(t), jnp.asarray(t), qm, dm, 0.1)) == pytest.approx(
    0, abs=1e-6
  )
  pt = np.exp(t[:, dm] / 0.1) / np.exp(t[:, dm] / 0.1).sum(1, keepdims=True)
  ps = np.exp(s[:, dm] / 0.1) / np.exp(s[:, dm] / 0.1).sum(1, keepdims=True)
  want = (pt * np.log(pt / ps)).sum(1)[qm].mean()
  got = float(pf.token_kl(jnp.asarray(t), jnp.asarray(s), qm, dm, 0.1))
  assert got == pytest.approx(want, rel=1e-4)


def test_heldout_retrieval_equals_per_query_xtr_search():
  (q, qm), (d, dm) = _pairs(12, seed=3)
  kernel = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
  got = pf.heldout_retrieval((q, qm), (d, dm), kernel, k_prime=9, chunk=5)
  # Reference: numpy projection, one query at a time through index.xtr_search.
  norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  table = norm(norm(d[dm].astype(np.float32)) @ kernel)
  owner = np.repeat(np.arange(12), dm.sum(1))
  rr = []
  for i in range(12):
    tokens = norm(norm(q[i][qm[i]].astype(np.float32)) @ kernel)
    sims = tokens @ table.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :9]
    rows, _ = xtr_search(owner[top], np.take_along_axis(sims, top, 1), np.ones(len(top), bool), 10)
    hit = np.nonzero(rows == i)[0]
    rr.append(1.0 / (hit[0] + 1) if hit.size else 0.0)
  assert got["queries"] == 12
  assert got["mrr@10"] == pytest.approx(np.mean(rr), abs=1e-6)


def test_distilled_projection_recovers_the_signal_the_principal_axes_drop():
  train, held = _pairs(512, seed=0), _pairs(256, seed=1)
  flat = np.concatenate([train[0][0][train[0][1]], train[1][0][train[1][1]]]).astype(np.float32)
  flat /= np.linalg.norm(flat, axis=1, keepdims=True)
  start = projection_init.principal_axes(flat, 8)
  kernel, history = pf.fit_projection(
    *train,
    start,
    steps=300,
    batch_size=32,
    learning_rate=1e-2,
    k_train=16,
    log_every=50,
    token_temperature=0.1,
  )
  assert kernel.shape == (12, 8) and kernel.dtype == np.float32
  assert history[-1]["step"] == 300 and history[-1]["loss"] < history[0]["loss"]
  teacher = pf.heldout_retrieval(*held, None, k_prime=32)["mrr@10"]
  pca = pf.heldout_retrieval(*held, start, k_prime=32)["mrr@10"]
  fitted = pf.heldout_retrieval(*held, kernel, k_prime=32)["mrr@10"]
  assert pca < teacher - 0.05  # the nuisance dims cost the PCA start real retrieval
  assert fitted > pca + 0.2 and fitted >= teacher - 0.02
  # The fitted kernel weights the signal dims: most of its mass is there.
  assert np.square(kernel[:8]).sum() > 2 * np.square(kernel[8:]).sum()


def test_fit_projection_refuses_too_few_pairs():
  train = _pairs(8, seed=0)
  with pytest.raises(ValueError, match="batch_size=16"):
    pf.fit_projection(*train, np.eye(12, 4, dtype=np.float32), batch_size=16)


@pytest.mark.parametrize("flag", ["--token_temperature", "--fit_learning_rate"])
def test_init_projection_refuses_a_non_positive_rate_before_any_work(flag, tmp_path, capsys):
  out = tmp_path / "never"
  argv = ["--checkpoint", "none", "--pairs", "none", "--output", str(out), flag, "0"]
  with pytest.raises(SystemExit) as exit_info:
    projection_init.main([*argv, "--method", "distill"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].endswith(f"argument {flag}: must be a finite number > 0, got 0.0")
  assert not out.exists()
