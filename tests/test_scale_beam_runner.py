"""The Beam pipelines themselves (DirectRunner): same files as the no-Beam path; resume.

apache-beam is in the tested environment (the [beam] extra, constraints.txt), so a missing
Beam fails here instead of skipping.
"""

from __future__ import annotations

import json
import os

import apache_beam as beam  # noqa: F401  (fail, not skip, when the test venv lacks it)
import numpy as np
import pytest

from xtr_jax.index import testing
from xtr_jax.index.encode import EncodeParams
from xtr_jax.scale import beam_encode, beam_generate, shards

DIRECT = ["--runner=DirectRunner"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  return testing.make_tiny_setup(str(tmp_path_factory.mktemp("beamrun")), num_passages=20)


def _files(out: str, prefix: str) -> dict[str, bytes]:
  return {
    f: open(os.path.join(out, f), "rb").read()
    for f in sorted(os.listdir(out))
    if f.startswith(prefix)
  }


def test_encode_beam_equals_local_and_resumes(setup, tmp_path):
  params = EncodeParams(max_length=32, batch_size=8, shard_size=8, buckets=(32,))
  local, piped = str(tmp_path / "local"), str(tmp_path / "beam")
  a = beam_encode.encode(setup.corpus, setup.checkpoint, local, params)
  b = beam_encode.encode(setup.corpus, setup.checkpoint, piped, params, beam_args=DIRECT)
  assert a["shards"] == b["shards"] and b["num_passages"] == 20 and len(b["shards"]) == 3
  for prefix in ("token_to_passage_", "passage_ids_"):
    assert _files(local, prefix) == _files(piped, prefix)
  for i in range(3):  # same model, same inputs: the same float16 vectors
    np.testing.assert_array_equal(
      np.load(os.path.join(local, f"vectors_{i:05d}.npy")),
      np.load(os.path.join(piped, f"vectors_{i:05d}.npy")),
    )
  # Resume: drop one shard's output and marker; the rerun redoes only that shard.
  os.remove(shards.done_path(piped, 1))
  os.remove(os.path.join(piped, "vectors_00001.npy"))
  kept = os.stat(os.path.join(piped, "vectors_00000.npy")).st_mtime_ns
  c = beam_encode.encode(setup.corpus, setup.checkpoint, piped, params, beam_args=DIRECT)
  assert os.stat(os.path.join(piped, "vectors_00000.npy")).st_mtime_ns == kept
  assert os.path.isfile(os.path.join(piped, "vectors_00001.npy"))
  assert [s["index"] for s in c["shards"]] == [0, 1, 2]


def test_generate_beam_equals_local_and_resumes(setup, tmp_path):
  import jax

  from xtr_jax.checkpoints.orbax_io import save_checkpoint
  from xtr_jax.models.config import tiny_config
  from xtr_jax.models.t5 import Transformer, init_params
  from xtr_jax.xqg.generate import DecodeSettings

  ckpt = str(tmp_path / "mt5")
  params = init_params(tiny_config(), jax.random.PRNGKey(0), Transformer)
  save_checkpoint(
    ckpt, params, tiny_config(), model_kind="mt5", extra={"vocabulary": setup.vocabulary}
  )
  settings = DecodeSettings(
    strategy="topk", num_questions=2, max_input_length=16, max_decode_length=4
  )
  kw = dict(shard_size=8, settings=settings, batch_size=4, seed=3)
  local, piped = str(tmp_path / "local"), str(tmp_path / "beam")
  a = beam_generate.generate(setup.corpus, ckpt, local, ["ja", "sw"], **kw)
  b = beam_generate.generate(setup.corpus, ckpt, piped, ["ja", "sw"], beam_args=DIRECT, **kw)
  assert [s["passages"] for s in b] == [8, 8, 4]
  assert [s["questions"] for s in a] == [s["questions"] for s in b]
  assert _files(local, "questions_") == _files(piped, "questions_")  # seed-keyed sampling
  rows = [json.loads(x) for f in _files(piped, "questions_").values() for x in f.splitlines()]
  assert [r["docid"] for r in rows] == setup.passage_ids
  os.remove(shards.done_path(piped, 2))
  kept = os.stat(os.path.join(piped, "questions_00000.jsonl")).st_mtime_ns
  c = beam_generate.generate(setup.corpus, ckpt, piped, ["ja", "sw"], beam_args=DIRECT, **kw)
  assert os.stat(os.path.join(piped, "questions_00000.jsonl")).st_mtime_ns == kept
  assert [s["index"] for s in c] == [0, 1, 2]
  assert _files(local, "questions_") == _files(piped, "questions_")


def test_encode_beam_to_gcs_equals_local_and_resumes(setup, tmp_path, memory_gcs):
  """``--output_dir gs://...`` (a Dataflow job's): every shard file, done marker and
  progress.json goes to the bucket through xtr_jax.io and reads back equal to a local run's.
  The DirectRunner runs the DoFns in this process, so they see the in-memory bucket."""
  from xtr_jax import io as xio

  params = EncodeParams(max_length=32, batch_size=8, shard_size=8, buckets=(32,))
  local, remote = str(tmp_path / "local"), "gs://bucket/enc"
  a = beam_encode.encode(setup.corpus, setup.checkpoint, local, params)
  b = beam_encode.encode(setup.corpus, setup.checkpoint, remote, params, beam_args=DIRECT)
  assert a == b and b["num_passages"] == 20
  names = sorted(os.listdir(local))
  assert sorted(k.removeprefix("bucket/enc/") for k in memory_gcs) == names
  assert not os.path.exists("gs:") and not (tmp_path / "gs:").exists()  # nothing went local
  for name in names:
    theirs, ours = xio.read_bytes(xio.join(remote, name)), (tmp_path / "local" / name).read_bytes()
    if name.startswith("done_"):  # stats; only the timing differs
      theirs, ours = json.loads(theirs), json.loads(ours)
      assert theirs.pop("seconds") >= 0 and ours.pop("seconds") >= 0
    if name.startswith("vectors_"):
      with xio.open_file(xio.join(remote, name), "rb") as f:
        np.testing.assert_array_equal(np.load(f), np.load(os.path.join(local, name)))
    else:
      assert theirs == ours, name
  # Resume on the bucket: drop one shard's marker and vectors; only that shard is redone.
  kept = memory_gcs["bucket/enc/vectors_00000.npy"]
  xio.remove(shards.done_path(remote, 1))
  xio.remove(xio.join(remote, "vectors_00001.npy"))
  c = beam_encode.encode(setup.corpus, setup.checkpoint, remote, params, beam_args=DIRECT)
  assert c == b and memory_gcs["bucket/enc/vectors_00000.npy"] is kept  # not rewritten
  assert xio.isfile(xio.join(remote, "vectors_00001.npy")) and shards.is_done(remote, 1)
