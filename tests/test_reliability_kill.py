"""SIGKILL the corpus encoder, the generator and the index builder once output exists, resume:
the result equals an uninterrupted run's byte for byte, and nothing half-written loads.

Real processes and a real ``kill -9``; the victim is killed as soon as its first durable
output appears (a finished encode shard, a committed generated line, a built ScaNN segment
in the index's temporary directory). Reference and resume run in-process (same code).
The campaign version (random kill times, many kills) is benchmarks/crash_resume.py.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from xtr_jax.checkpoints.orbax_io import save_checkpoint
from xtr_jax.index import cli as index_cli
from xtr_jax.index import store
from xtr_jax.index.encode import load_shards
from xtr_jax.index.testing import make_tiny_setup
from xtr_jax.models import t5
from xtr_jax.models.config import tiny_config
from xtr_jax.xqg import cli as generate_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("kill"))
  setup = make_tiny_setup(os.path.join(root, "fx"), num_passages=60)
  mt5 = os.path.join(root, "mt5")
  cfg = tiny_config()
  save_checkpoint(
    mt5, t5.init_params(cfg, jax.random.PRNGKey(3), t5.Transformer), cfg, model_kind="mt5",
    extra={"vocabulary": setup.vocabulary},
  )  # fmt: skip
  small = os.path.join(root, "small.tsv")  # generation is the slow one: fewer passages
  with open(setup.corpus, encoding="utf-8") as f:
    lines = f.readlines()
  with open(small, "w", encoding="utf-8") as f:
    f.writelines(lines[:17])
  return root, setup, mt5, small


def kill_when(args: list[str], ready, timeout: float = 120.0) -> None:
  """Starts ``args``, SIGKILLs it the moment ``ready()`` is true; fails if it ends first."""
  proc = subprocess.Popen(
    args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  deadline = time.time() + timeout
  try:
    while time.time() < deadline:
      if ready():
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        return
      if proc.poll() is not None:
        pytest.fail(f"{args[3:5]} finished (rc {proc.returncode}) before the kill point")
      time.sleep(0.005)
    pytest.fail(f"{args[3:5]}: kill point not reached in {timeout} s")
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def _cli(*args):
  return [sys.executable, "-m", "xtr_jax.cli", *args]


def _index_argv(setup, out):
  return [f"--checkpoint={setup.checkpoint}", f"--corpus={setup.corpus}", f"--output={out}",
          "--gin.index_settings.backend='brute_force'", "--gin.EncodeParams.shard_size=2",
          "--gin.EncodeParams.batch_size=2", "--gin.EncodeParams.buckets=(64,)"]  # fmt: skip


def _files(d, names=("vectors.npy", "token_to_passage.npy", "passage_ids.json")):
  return {n: open(os.path.join(d, n), "rb").read() for n in names}


def test_encoder_killed_after_a_shard_resumes_to_the_same_index(fx):
  root, setup = fx[:2]
  ref = os.path.join(root, "enc_ref")
  assert index_cli.index_main(_index_argv(setup, ref)) == 0
  out = os.path.join(root, "enc_killed")
  progress = os.path.join(root, ".enc_killed.encode", "progress.json")

  def shard_done():
    try:
      return len(json.load(open(progress))["shards"]) >= 2
    except (OSError, ValueError):
      return False

  kill_when(_cli("index", *_index_argv(setup, out)), shard_done)
  assert not os.path.exists(out)  # no index yet, and nothing half-built under its name
  record = json.load(open(progress))
  assert not record["complete"] and 2 <= len(record["shards"]) < 30
  vectors, t2p, pids = load_shards(os.path.dirname(progress), record)  # finished shards load
  assert len(pids) == sum(s["passages"] for s in record["shards"]) and len(t2p) == len(vectors)
  assert index_cli.index_main(_index_argv(setup, out)) == 0  # the resume
  assert _files(out) == _files(ref)
  assert not os.path.exists(os.path.dirname(progress))  # work files cleaned up


def _gen_argv(corpus, mt5, out):
  return [f"--checkpoint={mt5}", f"--corpus={corpus}", f"--output={out}",
          "--languages=ja,ko", "--strategy=topk", "--seed=5", "--batch_size=2",
          "--max_decode_length=6", "--max_input_length=32", "--no_progress"]  # fmt: skip


def test_generator_killed_after_a_batch_resumes_to_the_same_bytes(fx):
  root, _, mt5, corpus = fx
  ref = os.path.join(root, "gen_ref.jsonl")
  assert generate_cli.main(_gen_argv(corpus, mt5, ref)) == 0
  out = os.path.join(root, "gen_killed.jsonl")
  prog = out + ".progress.json"

  def committed():
    try:
      return json.load(open(prog))["state"]["passages"] >= 4
    except (OSError, ValueError, KeyError):
      return False

  kill_when(_cli("generate", *_gen_argv(corpus, mt5, out)), committed)
  state = json.load(open(prog))["state"]
  data = open(out, "rb").read()
  assert 4 <= state["passages"] < 16 and len(data) >= state["output_bytes"]
  rows = [json.loads(x) for x in data[: state["output_bytes"]].decode().splitlines()]
  assert len(rows) == state["passages"]  # the committed prefix is whole lines
  assert generate_cli.main(_gen_argv(corpus, mt5, out)) == 0
  assert open(out, "rb").read() == open(ref, "rb").read()


BUILD_CHILD = """
import sys, numpy as np
from xtr_jax.index import store
from xtr_jax.index.scann_index import ScannParams
a = np.load(sys.argv[1])
store.build_index(sys.argv[2], a["v"], a["t"], [f"p{i}" for i in range(int(a["t"].max()) + 1)],
                  model_fingerprint="fp", backend="scann", segment_tokens=1000,
                  scann_params=ScannParams(num_leaves=4, num_leaves_to_search=4, reorder=1000,
                                           training_sample_size=1000))
"""


def _build(arrays, out):
  from xtr_jax.index.scann_index import ScannParams

  a = np.load(arrays)
  store.build_index(
    out, a["v"], a["t"], [f"p{i}" for i in range(int(a["t"].max()) + 1)],
    model_fingerprint="fp", backend="scann", segment_tokens=1000,
    scann_params=ScannParams(
      num_leaves=4, num_leaves_to_search=4, reorder=1000, training_sample_size=1000
    ),
  )  # fmt: skip


def test_index_builder_killed_mid_build_leaves_nothing_that_loads(fx):
  pytest.importorskip("scann")
  root = fx[0]
  rng = np.random.default_rng(0)
  v = rng.standard_normal((8000, 32)).astype(np.float16)
  t = np.repeat(np.arange(800), 10).astype(np.int32)
  arrays = os.path.join(root, "arrays.npz")
  np.savez(arrays, v=v, t=t)
  ref = os.path.join(root, "build_ref")
  _build(arrays, ref)
  out = os.path.join(root, "build_killed")

  def segment_written():  # at least one ScaNN segment serialised, the manifest not yet
    segs = glob.glob(os.path.join(root, ".build_killed.tmp-*", "segments", "seg_*"))
    return len(segs) >= 2

  kill_when([sys.executable, "-c", BUILD_CHILD, arrays, out], segment_written)
  assert not os.path.exists(out)
  with pytest.raises(FileNotFoundError):
    store.load_index(out, backend="brute_force")
  assert glob.glob(os.path.join(root, ".build_killed.tmp-*"))  # the partial build is there...
  _build(arrays, out)  # ...and the rerun replaces it
  assert not glob.glob(os.path.join(root, ".build_killed.tmp-*"))
  assert _files(out) == _files(ref)
  # ScaNN's k-means is not deterministic run to run, so the partitions may differ; searching
  # every leaf with exact re-scoring of every candidate makes both exact, hence equal.
  a, b = store.load_index(out), store.load_index(ref)
  q = v[:50].astype(np.float32)
  ia, sa = a.search_tokens(q, 10)
  ib, sb = b.search_tokens(q, 10)
  np.testing.assert_array_equal(ia, ib)
  np.testing.assert_allclose(sa, sb, rtol=1e-5)
