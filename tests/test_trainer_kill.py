"""SIGKILL during `xtr-jax train`, rerun the same command: the losses equal an uninterrupted run.

Real processes, real signal: the victim is killed as soon as its first checkpoint directory
is complete (orbax renames a finished ``N.orbax-checkpoint-tmp-*`` to ``N``); a planted
partial checkpoint at a later step must be ignored by the resume.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from xtr_jax.training import inputs
from xtr_jax.training.plot_metrics import load

STEPS, EVERY = 24, 4
WORDS = "alpha beta gamma delta river mountain city music science history war king".split()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
  root = tmp_path_factory.mktemp("kill_pairs")
  rng = np.random.default_rng(1)
  texts = []
  with open(root / "xx.jsonl", "w", encoding="utf-8") as f:
    for i in range(80):
      words = [WORDS[k] for k in rng.integers(0, len(WORDS), 10)]
      text = " ".join(words) + f" number {i}."
      texts.append(text)
      row = {"_id": f"xx-{i}", "query": " ".join(words[:3]) + "?", "title": "", "text": text}
      f.write(json.dumps(row) + "\n")
  vocab = inputs.train_sentencepiece(texts * 3, str(root / "spm.model"), vocab_size=100)
  return root, vocab


def _command(model_dir, root, vocab):
  return [
    sys.executable,
    "-m",
    "xtr_jax.cli",
    "train",
    "--gin_file=runs/train_xtr_cpu.gin",
    f"--model_dir={model_dir}",
    f"--gin.PAIRS='{root}/*.jsonl'",
    f"--gin.VOCAB='{vocab}'",
    f"--gin.TRAIN_STEPS={STEPS}",
    "--gin.BATCH_SIZE=8",
    "--gin.QUERY_LENGTH=8",
    "--gin.PASSAGE_LENGTH=16",
    "--gin.config.T5Config.vocab_size=128",
    "--gin.config.T5Config.num_encoder_layers=1",
    "--gin.config.T5Config.d_model=16",
    "--gin.config.T5Config.d_ff=32",
    "--gin.config.T5Config.num_heads=2",
    "--gin.config.T5Config.d_kv=8",
    "--gin.trainer.ModelTask.proj_dim=8",
    "--gin.trainer.ModelTask.k_train=16",
    "--gin.inputs.pairs_batches.heldout_fraction=0.2",
    f"--gin.trainer.train.checkpoint_every={EVERY}",
    "--gin.trainer.train.keep_checkpoints=10",
    "--gin.trainer.train.log_every=1",
    "--gin.trainer.train.eval_batches=None",  # one compilation less per process
    "--gin.trainer.train.tensorboard=False",  # no TensorFlow import
    "--gin.trainer.train.export=False",
  ]


def _env(cache_dir):
  """One CPU device; a shared persistent compilation cache, so the rerun does not compile."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  env.update(
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=str(cache_dir),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
  )
  return env


def _complete_steps(ckpt_dir):
  if not os.path.isdir(ckpt_dir):
    return []
  return sorted(
    int(n)
    for n in os.listdir(ckpt_dir)
    if n.isdigit() and os.path.isfile(os.path.join(ckpt_dir, n, "_CHECKPOINT_METADATA"))
  )


def _train_losses(model_dir):
  train, _ = load(os.path.join(model_dir, "metrics.jsonl"))
  return {s: r["loss"] for s, r in train.items()}


def test_sigkill_then_rerun_repeats_the_uninterrupted_run(tmp_path, pairs):
  root, vocab = pairs
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  full_dir, victim_dir = tmp_path / "full", tmp_path / "victim"
  run = lambda d, **kw: subprocess.Popen(
    _command(d, root, vocab), cwd=repo, env=_env(tmp_path / "xla"), stderr=subprocess.STDOUT, **kw
  )
  with open(tmp_path / "full.log", "wb") as full_log, open(tmp_path / "victim.log", "wb") as log:
    full = run(full_dir, stdout=full_log)  # in parallel with the victim
    victim = run(victim_dir, stdout=log)
    ckpt_dir = victim_dir / "checkpoints"
    deadline = time.time() + 300
    while not _complete_steps(ckpt_dir) and victim.poll() is None and time.time() < deadline:
      time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=10) == -signal.SIGKILL, (tmp_path / "victim.log").read_text()
    assert full.wait(timeout=300) == 0, (tmp_path / "full.log").read_text()
  done = _complete_steps(ckpt_dir)
  killed_at = max(_train_losses(victim_dir), default=0)
  assert done and killed_at < STEPS, f"not interrupted mid-run: {done}, step {killed_at}"

  # What a kill during the next save leaves: a later step's unfinished temporary directory.
  latest = done[-1]
  partial = ckpt_dir / f"{latest + EVERY}.orbax-checkpoint-tmp-1234567890"
  shutil.copytree(ckpt_dir / str(latest), partial)
  os.remove(partial / "_CHECKPOINT_METADATA")
  with open(partial / "state" / "garbage", "wb") as f:
    f.write(b"\0" * 10)

  resumed = subprocess.run(
    _command(victim_dir, root, vocab),
    cwd=repo,
    env=_env(tmp_path / "xla"),
    capture_output=True,
    text=True,
  )
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resumed from {ckpt_dir}/{latest}" in resumed.stderr
  want, got = _train_losses(full_dir), _train_losses(victim_dir)
  assert sorted(want) == sorted(got) == list(range(1, STEPS + 1))
  assert len(set(want.values())) > STEPS // 2  # the losses do move
  for step in want:
    np.testing.assert_allclose(got[step], want[step], rtol=0, atol=1e-6, err_msg=f"step {step}")
  assert max(abs(got[s] - want[s]) for s in want) == 0.0  # in fact bit-exact on one device
