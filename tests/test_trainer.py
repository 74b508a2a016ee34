"""Trainer: resume equals an uninterrupted run, imported-checkpoint init, inputs, the CLI."""

import json
import os

import jax
import numpy as np
import pytest

import gin
from xtr_jax.models.config import tiny_config
from xtr_jax.training import inputs, optimizers, trainer

CONFIG = tiny_config(num_encoder_layers=1, num_decoder_layers=1)


def _fake_batches(start_step, shard_index, num_shards):
  """Random token batches that depend only on the step (so a resume can be checked)."""
  step = start_step
  while True:
    rng = np.random.default_rng(step)
    q = rng.integers(3, 512, (8, 6)).astype(np.int32)
    q[:, 4:] = 0
    p = rng.integers(3, 512, (8, 10)).astype(np.int32)
    p[:, 7:] = 0
    yield {"query_tokens": q, "passage_tokens": p}
    step += 1


def _run(model_dir, **kw):
  schedule = lambda: optimizers.learning_rate_schedule(1e-2, "linear", 2, 6)
  args = dict(
    model_config=CONFIG,
    model_kind="xtr",
    train_batches=_fake_batches,
    num_train_steps=6,
    checkpoint_every=3,
    log_every=1,
    mesh_shape=(2, 2),
    schedule_fn=schedule,
    export=False,
  )
  return trainer.train(str(model_dir), **{**args, **kw})


def test_resume_after_stop_matches_uninterrupted_run(tmp_path):
  full = _run(tmp_path / "full")
  first = _run(tmp_path / "resumed", stop_at_step=4)  # "killed" at 4; last checkpoint at 3
  assert sorted(first.losses) == [1, 2, 3, 4]
  second = _run(tmp_path / "resumed")
  assert sorted(second.losses) == [4, 5, 6]  # step 4 is redone from the step-3 checkpoint
  for step in range(1, 7):
    got = first.losses[step] if step < 4 else second.losses[step]
    np.testing.assert_allclose(got, full.losses[step], rtol=1e-6)
  assert len(set(full.losses.values())) == 6  # the losses do change from step to step
  for a, b in zip(
    jax.tree.leaves(jax.device_get(full.state)), jax.tree.leaves(jax.device_get(second.state))
  ):
    np.testing.assert_allclose(a, b, atol=1e-6)
  rows = [json.loads(x) for x in open(tmp_path / "full" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
  assert all(r["steps_per_sec"] > 0 and r["tokens_per_sec"] > 0 for r in rows)
  # Resuming with another model configuration is refused with the reason.
  with pytest.raises(ValueError, match="checkpoint has config=.*fresh --model_dir"):
    _run(tmp_path / "full", model_config=tiny_config())


def test_merge_imported_params_takes_the_encoder_and_checks_shapes():
  task = trainer.ModelTask(CONFIG, kind="xtr")
  retrieval = jax.device_get(jax.tree.map(np.asarray, _unbox(task.init(jax.random.key(0)))))
  seq2seq = trainer.ModelTask(CONFIG, kind="xqg")
  mt5 = jax.device_get(_unbox(seq2seq.init(jax.random.key(1))))
  merged, fresh = trainer.merge_imported_params(retrieval, mt5, "ckpt")
  assert fresh == ["projection/kernel"]
  np.testing.assert_array_equal(
    merged["encoder"]["layers_0"]["mlp"]["wo"]["kernel"],
    mt5["encoder"]["layers_0"]["mlp"]["wo"]["kernel"],
  )
  np.testing.assert_array_equal(merged["projection"]["kernel"], retrieval["projection"]["kernel"])
  bad = jax.tree.map(lambda x: x, mt5)
  bad["token_embedder"]["embedding"] = np.zeros((100, 64), np.float32)
  with pytest.raises(
    ValueError, match=r"'token_embedder/embedding' has shape \(100, 64\).*\(512, 64\)"
  ):
    trainer.merge_imported_params(retrieval, bad, "ckpt")
  with pytest.raises(ValueError, match="shares no parameter"):
    trainer.merge_imported_params(retrieval, {"other": {"w": np.zeros(2)}}, "ckpt")


def _unbox(tree):
  import flax.linen as nn

  return nn.meta.unbox(tree)


def test_learning_rate_schedules():
  rsqrt = optimizers.learning_rate_schedule(1e-2, "rsqrt", warmup_steps=100)
  np.testing.assert_allclose(float(rsqrt(49)), 1e-2 * 50 / 100, rtol=1e-6)
  np.testing.assert_allclose(float(rsqrt(400)), 1e-2 * (100 / 400) ** 0.5, rtol=1e-6)
  lin = optimizers.learning_rate_schedule(1.0, "linear", warmup_steps=10, total_steps=110)
  np.testing.assert_allclose(float(lin(60)), 0.5, rtol=1e-6)
  cos = optimizers.learning_rate_schedule(1.0, "cosine", warmup_steps=0, total_steps=100)
  np.testing.assert_allclose(float(cos(25)), 0.5 * (1 + np.cos(np.pi / 4)), rtol=1e-6)
  with pytest.raises(ValueError, match="kind='step'"):
    optimizers.learning_rate_schedule(1.0, "step")


# ------------------------------------------------------------------------ inputs and the CLI

WORDS = "alpha beta gamma delta river mountain city music science history war king".split()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
  """Small SWIM-IR-layout pair files and a SentencePiece model trained on them."""
  root = tmp_path_factory.mktemp("pairs")
  rng = np.random.default_rng(0)
  for lang in ("de", "ja"):
    with open(root / f"{lang}.jsonl", "w", encoding="utf-8") as f:
      for i in range(60):
        words = [WORDS[k] for k in rng.integers(0, len(WORDS), 12)]
        row = {
          "_id": f"{lang}-{i}",
          "lang": lang,
          "code": lang,
          "query": " ".join(words[:4]) + f" {lang}{i}?",
          "title": words[0],
          "text": " ".join(words) + f" number {i}.",
        }
        f.write(json.dumps(row) + "\n")
  texts = [json.loads(x)["text"] for x in open(root / "de.jsonl")]
  vocab = inputs.train_sentencepiece(texts * 3, str(root / "spm.model"), vocab_size=120)
  return root, vocab


def test_jsonl_pairs_are_deterministic_resumable_and_sharded(pairs):
  root, vocab = pairs
  make = lambda split: inputs.jsonl_pairs_batches(
    str(root / "*.jsonl"),
    vocab,
    batch_size=8,
    query_length=24,
    passage_length=16,
    split=split,
    heldout_fraction=0.25,
  )
  factory = make("train")
  stream = factory(0, 0, 1)
  batches = [next(stream) for _ in range(20)]  # crosses an epoch boundary
  resumed = factory(7, 0, 1)
  for k in range(7, 20):
    got = next(resumed)
    np.testing.assert_array_equal(got["query_tokens"], batches[k]["query_tokens"])
  b = batches[0]
  assert b["query_tokens"].shape == (8, 24) and b["passage_tokens"].shape == (8, 16)
  assert b["query_tokens"].dtype == np.int32
  for row in b["query_tokens"]:  # EOS closes every text, padding after it
    n = np.count_nonzero(row)
    assert row[n - 1] == 1 and not row[n:].any()
  halves = [next(factory(3, k, 2)) for k in range(2)]
  np.testing.assert_array_equal(
    np.concatenate([h["passage_tokens"] for h in halves]), batches[3]["passage_tokens"]
  )
  heldout = make("heldout")
  held_q = {tuple(r) for r in next(heldout(0, 0, 1))["query_tokens"]}
  train_q = {tuple(r) for bb in batches[:14] for r in bb["query_tokens"]}
  assert not held_q & train_q  # the held-out split never enters training


def test_jsonl_pairs_lowercase_option(tmp_path, pairs):
  root, vocab = pairs
  upper = tmp_path / "upper.jsonl"
  rows = [json.loads(x) for x in open(root / "de.jsonl")]
  with open(upper, "w", encoding="utf-8") as f:
    for r in rows:
      f.write(json.dumps({**r, "query": r["query"].upper(), "text": r["text"].title()}) + "\n")
  make = lambda pattern, lower: inputs.jsonl_pairs_batches(
    pattern, vocab, batch_size=8, passage_length=24, heldout_fraction=0.0, lowercase=lower
  )(0, 0, 1)
  want, got = next(make(str(root / "de.jsonl"), False)), next(make(str(upper), True))
  for key in ("query_tokens", "passage_tokens"):
    np.testing.assert_array_equal(got[key], want[key])
  cased = next(make(str(upper), False))
  assert not np.array_equal(cased["query_tokens"], want["query_tokens"])


def test_jsonl_pairs_errors_name_the_file_and_line(tmp_path, pairs):
  _, vocab = pairs
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"query": "q", "text": "t"}\n{"query": 3}\n')
  with pytest.raises(
    ValueError, match=r"bad\.jsonl:2: record lacks string field\(s\) \['query', 'text'\]"
  ):
    inputs.jsonl_pairs_batches(str(bad), vocab)
  bad.write_text("{not json\n")
  with pytest.raises(ValueError, match=r"bad\.jsonl:1: not valid JSON"):
    inputs.jsonl_pairs_batches(str(bad), vocab)
  bad.write_text("[1, 2]\n")
  with pytest.raises(ValueError, match=r"bad\.jsonl:1: expected a JSON object, got list"):
    inputs.jsonl_pairs_batches(str(bad), vocab)
  with pytest.raises(FileNotFoundError, match="no pair files match"):
    inputs.jsonl_pairs_batches(str(tmp_path / "none*.jsonl"), vocab)


@pytest.mark.parametrize(
  "gin_file,kind",
  [
    ("runs/train_xtr_cpu.gin", "retrieval"),
    ("runs/train_xqg_cpu.gin", "mt5"),
    ("runs/train_xqg_cpu_qt.gin", "mt5"),
  ],
)
def test_cli_trains_and_exports(tmp_path, pairs, gin_file, kind):
  from xtr_jax import cli
  from xtr_jax.checkpoints import orbax_io

  root, vocab = pairs
  model_dir = tmp_path / "model"
  argv = [
    "train",
    f"--gin_file={gin_file}",
    f"--model_dir={model_dir}",
    f"--gin.PAIRS='{root}/*.jsonl'",
    f"--gin.VOCAB='{vocab}'",
    "--gin.VOCAB_SIZE=512",
    "--gin.TRAIN_STEPS=2",
    "--gin.BATCH_SIZE=4",
    "--gin.inputs.pairs_batches.heldout_fraction=0.25",
    "--gin.trainer.train.mesh_shape=(2, 1)",
    "--gin.config.T5Config.num_encoder_layers=1",
    "--gin.config.T5Config.num_decoder_layers=1",
  ]
  try:
    assert cli.main(argv) == 0
  finally:
    gin.clear_config()
  rows = [json.loads(x) for x in open(model_dir / "metrics.jsonl")]
  assert [r["step"] for r in rows if r["split"] == "train"][-1] == 2
  assert any(r["split"] == "eval" for r in rows)
  assert os.path.isfile(model_dir / "config.gin")
  ckpt = orbax_io.load_checkpoint(model_dir / "final")
  assert ckpt.model_kind == kind
  assert ckpt.extra["vocabulary"] == os.path.abspath(vocab)
  assert ckpt.config.num_encoder_layers == 1
