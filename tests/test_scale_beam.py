"""Beam pipeline bodies without Beam: sharded, resumable encode/generate; sharded serving."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from xtr_jax.index import sharded_index as si
from xtr_jax.index import testing
from xtr_jax.scale import beam_encode, beam_generate, shards


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  return testing.make_tiny_setup(str(tmp_path_factory.mktemp("beam")), num_passages=30)


def test_plan_and_read_shards(setup):
  specs = shards.plan_shards(setup.corpus, 8)
  assert [s.num_rows for s in specs] == [8, 8, 8, 6]
  rows = [r.id for s in specs for r in shards.read_shard(setup.corpus, s)]
  assert rows == setup.passage_ids


def test_encode_shards_resume_and_serve_sharded(setup, tmp_path):
  from xtr_jax.index import store
  from xtr_jax.index.encode import EncodeParams, load_shards
  from xtr_jax.index.retriever import Retriever

  out = str(tmp_path / "enc")
  params = EncodeParams(max_length=32, batch_size=8, shard_size=8, buckets=(32,))
  specs = shards.plan_shards(setup.corpus, 8)
  work = beam_encode.EncodeShardWork(setup.corpus, setup.checkpoint, out, params)
  work.setup()  # what DoFn.setup does, once per worker
  os.makedirs(out)
  stats = list(work.process(specs[1]))
  assert stats[0]["passages"] == 8 and shards.is_done(out, 1)
  mtime = os.stat(os.path.join(out, "vectors_00001.npy")).st_mtime_ns
  record = beam_encode.encode(setup.corpus, setup.checkpoint, out, params)  # the rest, no Beam
  assert os.stat(os.path.join(out, "vectors_00001.npy")).st_mtime_ns == mtime  # skipped
  assert record["num_passages"] == 30 and len(record["shards"]) == 4
  vecs, t2p, pids = load_shards(out, record)
  assert pids == setup.passage_ids and t2p.max() == 29
  fp = stats[0]["model_fingerprint"]
  meta = {"checkpoint": setup.checkpoint, "vocabulary": setup.vocabulary}
  kw = dict(model_fingerprint=fp, backend="brute_force", metadata=meta)
  inputs = si.shard_inputs_from_encoded(out, record, encoded_per_shard=2)
  si.build_sharded_index(str(tmp_path / "sharded"), inputs, **kw)
  store.build_index(str(tmp_path / "single"), vecs, t2p, pids, **kw)
  queries = ["river city king", "music film", "bird"]
  a = Retriever.load(str(tmp_path / "sharded")).search(queries, k=5)
  b = Retriever.load(str(tmp_path / "single")).search(queries, k=5)
  assert [[p for p, _ in r] for r in a] == [[p for p, _ in r] for r in b]
  np.testing.assert_allclose(
    [[s for _, s in r] for r in a], [[s for _, s in r] for r in b], atol=1e-6
  )


def test_generate_shards(setup, tmp_path):
  import jax

  from xtr_jax.checkpoints.orbax_io import save_checkpoint
  from xtr_jax.models.config import tiny_config
  from xtr_jax.models.t5 import Transformer, init_params
  from xtr_jax.xqg.generate import DecodeSettings

  ckpt = str(tmp_path / "mt5")
  save_checkpoint(ckpt, init_params(tiny_config(), jax.random.PRNGKey(0), Transformer),
                  tiny_config(), model_kind="mt5", extra={"vocabulary": setup.vocabulary})  # fmt: skip
  settings = DecodeSettings(strategy="greedy", max_input_length=16, max_decode_length=4)
  out = str(tmp_path / "gen")
  stats = beam_generate.generate(setup.corpus, ckpt, out, ["ja", "ko"], shard_size=16,
                                 settings=settings, batch_size=8)  # fmt: skip
  assert [s["passages"] for s in stats] == [16, 14]
  lines = []
  for i in range(2):
    with open(os.path.join(out, f"questions_{i:05d}.jsonl")) as f:
      lines += [json.loads(x) for x in f]
  assert [r["docid"] for r in lines] == setup.passage_ids
  assert all(set(r["generated_queries"]) == {"ja", "ko"} for r in lines)
  again = beam_generate.generate(setup.corpus, ckpt, out, ["ja", "ko"], shard_size=16,
                                 settings=settings, batch_size=8)  # fmt: skip
  assert again == stats  # all shards done: nothing rerun


def test_generate_shards_to_gcs_equal_local(setup, tmp_path, memory_gcs):
  """``--output_dir gs://...``: question shards and done markers land on the bucket."""
  import jax

  from xtr_jax import io as xio
  from xtr_jax.checkpoints.orbax_io import save_checkpoint
  from xtr_jax.models.config import tiny_config
  from xtr_jax.models.t5 import Transformer, init_params
  from xtr_jax.xqg.generate import DecodeSettings

  ckpt = str(tmp_path / "mt5")
  save_checkpoint(ckpt, init_params(tiny_config(), jax.random.PRNGKey(0), Transformer),
                  tiny_config(), model_kind="mt5", extra={"vocabulary": setup.vocabulary})  # fmt: skip
  kw = dict(shard_size=16, settings=DecodeSettings(strategy="greedy", max_input_length=16,
            max_decode_length=4), batch_size=8)  # fmt: skip
  local, remote = str(tmp_path / "gen"), "gs://bucket/gen"
  a = beam_generate.generate(setup.corpus, ckpt, local, ["ja"], **kw)
  b = beam_generate.generate(setup.corpus, ckpt, remote, ["ja"], **kw)
  assert [s["questions"] for s in a] == [s["questions"] for s in b] == [16, 14]
  assert sorted(memory_gcs) == sorted(f"bucket/gen/{n}" for n in os.listdir(local))
  for i in range(2):
    name = f"questions_{i:05d}.jsonl"
    assert xio.read_bytes(xio.join(remote, name)) == (tmp_path / "gen" / name).read_bytes()
  assert beam_generate.generate(setup.corpus, ckpt, remote, ["ja"], **kw) == b  # all done
