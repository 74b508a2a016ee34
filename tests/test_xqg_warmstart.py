"""The BERT2BERT xQG generator warm-started from a BERT-family backbone, at tiny size.

References are independent of the code under test: the backbone's own ``BertEncoder`` gives
the encoder states a warm start must reproduce; the uncached, teacher-forced model gives the
logits cached decoding must reproduce; brute-force enumeration of every short sequence gives
the best beams; ``bert2bert.to_token_ids`` + the ``tokenizers`` library give the text
``xtr-jax generate`` must write. Everything is a 2-layer, 64-wide model on a word-level
vocabulary of ~70 entries.
"""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")

import gin  # noqa: E402
from xtr_jax import cli  # noqa: E402
from xtr_jax.checkpoints import bert2bert as glue  # noqa: E402
from xtr_jax.checkpoints import orbax_io  # noqa: E402
from xtr_jax.checkpoints.tokenizers import TOKENIZER_KEY, tokenizer_for  # noqa: E402
from xtr_jax.data.tokenizer import HFTokenizer  # noqa: E402
from xtr_jax.models import bert, decoding  # noqa: E402
from xtr_jax.models.bert2bert import (  # noqa: E402
  Bert2Bert,
  Bert2BertConfig,
  to_output_ids,
  to_token_ids,
)
from xtr_jax.xqg import warmstart  # noqa: E402

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R's order: bos 0, pad 1, eos 2, unk 3
WORDS = "generate a japanese korean question for this passage : what who is the river mountain city tea".split()
NAMES = [f"n{i:02d}" for i in range(40)]
VOCAB = [*SPECIALS, *WORDS, *NAMES, "?", "."]
VOCAB_SIZE = 96  # embedding rows; the tokenizer uses the first len(VOCAB)
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _tokenizer() -> tokenizers.Tokenizer:
  from tokenizers import models, normalizers, pre_tokenizers, processors

  tok = tokenizers.Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, "<unk>"))
  tok.normalizer = normalizers.Lowercase()
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.post_processor = processors.TemplateProcessing(
    single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
  )
  tok.add_special_tokens(SPECIALS)
  return tok


def _encoder_config() -> bert.BertConfig:
  return bert.bert_config("tiny", vocab_size=VOCAB_SIZE, pad_token_id=1)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> str:
  """A random tiny BERT retrieval checkpoint carrying its word-level tokenizer."""
  root = tmp_path_factory.mktemp("backbone")
  tok_path = root / "tokenizer.json"
  _tokenizer().save(str(tok_path))
  tok = HFTokenizer.from_file(str(tok_path))
  config = _encoder_config()
  params = bert.BertEncoder(config).init(jax.random.PRNGKey(7), jnp.ones((1, 4), jnp.int32))
  params = jax.tree_util.tree_map(lambda x: np.asarray(x) * 8.0, orbax_io.unbox(params["params"]))
  spec = tok.to_dict()
  out = str(root / "bert")
  orbax_io.save_checkpoint(
    out,
    {"bert": params},
    config,
    model_kind="retrieval",
    extra={"proj_dim": 0, "pooling": "mean", TOKENIZER_KEY: spec},
    assets={spec["file"]: tok.serialize()},
  )
  return out


def _pairs(n: int, seed: int = 0) -> list[dict]:
  """English passage naming two entities -> a question in ja/ko that repeats one of them."""
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n):
    a, b = rng.choice(NAMES, 2, replace=False)
    code = ["ja", "ko"][i % 2]
    q = f"what is {a} ?" if code == "ja" else f"who is {a} ?"
    rows.append(
      {"_id": f"p{i}", "code": code, "query": q, "title": str(a), "text": f"{a} river {b} city ."}
    )
  return rows


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> str:
  path = tmp_path_factory.mktemp("pairs") / "xl.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in _pairs(96)))
  return str(path)


def _vocab() -> tuple[int, ...]:
  return tuple(range(4)) + tuple(range(len(SPECIALS) + len(WORDS), len(SPECIALS) + len(WORDS) + 12))


@pytest.fixture(scope="module")
def generator(backbone, tmp_path_factory) -> tuple[str, Bert2BertConfig]:
  config = Bert2BertConfig(encoder=_encoder_config(), output_vocab=_vocab())
  out = str(tmp_path_factory.mktemp("gen") / "b2b")
  glue.warm_start_checkpoint(backbone, out, config)
  return out, config


@pytest.fixture(scope="module")
def copy_generator(backbone, tmp_path_factory) -> tuple[str, Bert2BertConfig]:
  """The same warm start with the pointer-generator copy head; its gate and query/key are
  made non-trivial so the tests see both distributions mixed."""
  config = Bert2BertConfig(encoder=_encoder_config(), output_vocab=_vocab(), copy_attention=True)
  out = str(tmp_path_factory.mktemp("gen_copy") / "b2b")
  glue.warm_start_checkpoint(backbone, out, config)
  ckpt = orbax_io.load_checkpoint(out)
  params = jax.tree_util.tree_map(np.array, ckpt.params)
  head = params["decoder"]["copy_attention"]
  rng = np.random.default_rng(3)
  head["gate_kernel"] = rng.normal(0, 0.01, head["gate_kernel"].shape).astype(np.float32)
  for name in ("query", "key"):
    head[name]["kernel"] = rng.normal(0, 0.05, head[name]["kernel"].shape).astype(np.float32)
  name = ckpt.extra[TOKENIZER_KEY]["file"]
  assets = {name: (pathlib.Path(out) / name).read_bytes()}
  orbax_io.save_checkpoint(
    out + "_mixed", params, config, model_kind="bert2bert", extra=dict(ckpt.extra), assets=assets
  )
  return out + "_mixed", config


@pytest.fixture(params=["plain", "copy"])
def any_generator(request) -> tuple[str, Bert2BertConfig]:
  return request.getfixturevalue("generator" if request.param == "plain" else "copy_generator")


def _ids(tok, texts, length=24) -> np.ndarray:
  out = np.full((len(texts), length), tok.pad_id, np.int32)
  for i, row in enumerate(tok.encode(texts, length)):
    out[i, : len(row)] = row
  return out


# ------------------------------------------------------------------------- warm start


def test_warm_started_encoder_reproduces_the_backbone_exactly(backbone, generator):
  path, config = generator
  ckpt = orbax_io.load_checkpoint(path)
  assert ckpt.model_kind == "bert2bert" and ckpt.config == config
  assert ckpt.extra["warm_start"] == str(pathlib.Path(backbone).absolute())
  back = orbax_io.load_checkpoint(backbone)
  tok = tokenizer_for(path, ckpt.extra, ckpt.config)
  ids = _ids(tok, ["n01 river n02 city .", "what is the mountain ?"])
  mask = (ids != 1).astype(np.int32)
  got = Bert2Bert(config).apply({"params": ckpt.params}, ids, mask, method=Bert2Bert.encode)
  want = bert.BertEncoder(back.config).apply({"params": back.params["bert"]}, ids, mask)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  # Decoder layers and embeddings are the backbone's; cross-attention is new.
  dec, bb = ckpt.params["decoder"], back.params["bert"]
  np.testing.assert_array_equal(
    dec["layers_1"]["intermediate"]["kernel"], bb["layers_1"]["intermediate"]["kernel"]
  )
  np.testing.assert_array_equal(
    dec["embeddings"]["word_embeddings"]["embedding"],
    bb["embeddings"]["word_embeddings"]["embedding"][list(config.output_vocab)],
  )
  assert "encoder_decoder_attention" in dec["layers_0"]
  assert "encoder_decoder_attention" not in bb["layers_0"]


def test_cross_attention_can_start_as_a_copy_of_self_attention(backbone, tmp_path):
  """cross_attention_init='self_attention': each layer's cross-attention and its LayerNorm
  are the backbone layer's self-attention and LayerNorm; 'random' keeps them fresh."""
  config = Bert2BertConfig(encoder=_encoder_config(), output_vocab=_vocab())
  bb = orbax_io.load_checkpoint(backbone).params["bert"]
  out = glue.warm_start_checkpoint(
    backbone, str(tmp_path / "copy"), config, cross_attention_init="self_attention"
  )
  ckpt = orbax_io.load_checkpoint(out)
  assert ckpt.extra["cross_attention_init"] == "self_attention"
  for i in range(config.decoder_layers):
    layer, source = ckpt.params["decoder"][f"layers_{i}"], bb[f"layers_{i}"]
    for cross, own in glue.CROSS_FROM_SELF.items():
      for leaf in ("kernel", "bias"):
        np.testing.assert_array_equal(
          layer["encoder_decoder_attention"][cross][leaf], source[own][leaf]
        )
    np.testing.assert_array_equal(
      layer["cross_attention_layer_norm"]["scale"], source["attention_layer_norm"]["scale"]
    )
  fresh = orbax_io.load_checkpoint(
    glue.warm_start_checkpoint(backbone, str(tmp_path / "fresh"), config)
  )
  kernel = fresh.params["decoder"]["layers_0"]["encoder_decoder_attention"]["query"]["kernel"]
  assert not np.array_equal(kernel, bb["layers_0"]["query"]["kernel"])
  with pytest.raises(ValueError, match=r"cross_attention_init='copy'; expected one of"):
    glue.warm_start_checkpoint(backbone, str(tmp_path / "bad"), config, cross_attention_init="copy")
  assert not (tmp_path / "bad").exists()


def test_warm_start_refuses_another_architecture(backbone, tmp_path):
  config = Bert2BertConfig(encoder=_encoder_config().replace(hidden_size=32, num_attention_heads=4))
  with pytest.raises(
    ValueError, match=r"generator encoder differs: hidden_size=32 vs the backbone's 64"
  ):
    glue.warm_start_checkpoint(backbone, str(tmp_path / "x"), config)


# ------------------------------------------------------------------- output vocabulary


def test_restricted_vocabulary_round_trip_and_checkpoint(generator):
  path, config = generator
  vocab = np.asarray(config.output_vocab)
  out = to_output_ids(config, vocab, unk_id=3)
  np.testing.assert_array_equal(out, np.arange(len(vocab)))
  np.testing.assert_array_equal(to_token_ids(config, out), vocab)
  # A piece outside the restricted vocabulary becomes unk (output id 3 = tokenizer id 3).
  outside = int(max(vocab) + 1)
  assert to_output_ids(config, np.array([outside, int(vocab[5])]), unk_id=3).tolist() == [3, 5]
  assert config.eos_token_id == 2 and config.decoder_start_token_id == 0
  assert config.vocab_size == len(vocab) == 16
  # The mapping is saved in the checkpoint's metadata and read back as it was.
  meta = json.loads((pathlib.Path(path) / orbax_io.METADATA_FILE).read_text())
  assert meta["backbone"] == "bert2bert" and meta["config"]["output_vocab"] == vocab.tolist()
  assert Bert2BertConfig.from_dict(config.to_dict()) == config


def test_bad_generator_configs_are_one_line_errors():
  enc = _encoder_config()
  with pytest.raises(ValueError, match="output_vocab must be strictly increasing"):
    Bert2BertConfig(encoder=enc, output_vocab=(0, 1, 2, 2, 3))
  with pytest.raises(ValueError, match=r"end_token=2 is not in output_vocab"):
    Bert2BertConfig(encoder=enc, output_vocab=(0, 1, 3, 9))
  with pytest.raises(ValueError, match="unknown Bert2BertConfig fields"):
    Bert2BertConfig.from_dict({**Bert2BertConfig(encoder=enc).to_dict(), "heads": 3})


# ----------------------------------------------------------------------------- decoding


@functools.partial(jax.jit, static_argnames="config")
def _forced(params, ids, prefix, config):
  mask = (ids != config.pad_token_id).astype(jnp.int32)
  return Bert2Bert(config).apply({"params": params}, ids, prefix, mask)


def _teacher_forced_logits(params, config, ids, prefix) -> np.ndarray:
  """Uncached, teacher-forced logits [B, T, V] (the reference for cached decoding)."""
  return np.asarray(_forced(params, ids, np.asarray(prefix, np.int32), config))


def test_cached_decoding_equals_uncached(any_generator):
  path, config = any_generator
  ckpt = orbax_io.load_checkpoint(path)
  tok = tokenizer_for(path, ckpt.extra, ckpt.config)
  ids = _ids(tok, ["n03 river n04 city .", "n05 the tea ."])
  steps = 6
  out = decoding.generate(
    ckpt.params, ids, None, config=config, strategy="greedy", max_decode_length=steps
  )
  cached = np.asarray(out.tokens[:, 0])
  # Uncached reference: re-run the whole decoder on the growing prefix, argmax each step.
  # One fixed shape: positions after t cannot affect step t's logits under the causal mask.
  seqs = np.zeros((2, steps + 1), np.int32)  # <s> then the argmax tokens
  logp = np.zeros(2)
  for t in range(steps):
    logits = _teacher_forced_logits(ckpt.params, config, ids, seqs[:, :steps])[:, t]
    nxt = logits.argmax(-1)
    logp += np.asarray(jax.nn.log_softmax(logits))[np.arange(2), nxt]
    seqs[:, t + 1] = nxt
  ended = np.cumsum(seqs[:, 1:] == config.eos_token_id, 1) - (seqs[:, 1:] == config.eos_token_id)
  assert not ended.any(), "no EOS expected in 6 steps of an untrained tiny model"
  np.testing.assert_array_equal(cached, seqs[:, 1:])
  np.testing.assert_allclose(np.asarray(out.scores[:, 0]), logp, rtol=1e-5, atol=1e-5)


def test_beam_search_returns_the_best_sequences_by_enumeration(any_generator):
  path, config = any_generator
  ckpt = orbax_io.load_checkpoint(path)
  tok = tokenizer_for(path, ckpt.extra, ckpt.config)
  ids = _ids(tok, ["n06 river n07 ."])
  # Make EOS likely so finished and unfinished hypotheses compete.
  params = jax.tree_util.tree_map(np.array, ckpt.params)
  params["decoder"]["lm_bias"][config.eos_token_id] += 2.0
  length, alpha, vocab = 2, 0.6, config.vocab_size
  out = decoding.generate(
    params, ids, None, config=config, strategy="beam", max_decode_length=length,
    beam_size=vocab, num_return=3, alpha=alpha,
  )  # fmt: skip
  # Brute force: every sequence of <= 2 tokens that ends in EOS, or runs to the length limit.
  pen = lambda n: ((5.0 + n) / 6.0) ** alpha
  first = jax.nn.log_softmax(
    _teacher_forced_logits(params, config, ids, np.zeros((1, 1), np.int32))[0, -1]
  )
  scored = []
  for a in range(vocab):
    if a == config.eos_token_id:
      scored.append((float(first[a]) / pen(1), (a, config.pad_token_id)))
      continue
    prefix = np.array([[0, a]], np.int32)
    second = jax.nn.log_softmax(_teacher_forced_logits(params, config, ids, prefix)[0, -1])
    for b in range(vocab):
      scored.append(((float(first[a]) + float(second[b])) / pen(2), (a, b)))
  best = sorted(scored, key=lambda s: -s[0])[:3]
  assert [tuple(map(int, t)) for t in np.asarray(out.tokens[0])] == [s for _, s in best]
  np.testing.assert_allclose(np.asarray(out.scores[0]), [s for s, _ in best], rtol=1e-5)


def _copy_reference(params, config, ids, prefix) -> np.ndarray:
  """log p(w) of the copy model, and its gates, from its decoder states, by numpy (the module docstring's
  formula): the vocabulary distribution of the same decoder without the head, the copy
  attention over the copyable source positions summed onto their output ids, the gate."""
  mask = (ids != config.pad_token_id).astype(np.int32)
  plain = Bert2BertConfig(**{**vars(config), "copy_attention": False})
  plain_params = {
    **params,
    "decoder": {k: v for k, v in params["decoder"].items() if k != "copy_attention"},
  }
  logits, inter = Bert2Bert(plain).apply(
    {"params": plain_params}, ids, prefix, mask, capture_intermediates=True
  )
  last = f"layers_{config.decoder_layers - 1}"
  y = np.asarray(inter["intermediates"]["decoder"][last]["__call__"][0], np.float64)
  enc = np.asarray(inter["intermediates"]["encoder"]["__call__"][0], np.float64)
  head = jax.tree_util.tree_map(
    lambda x: np.asarray(x, np.float64), params["decoder"]["copy_attention"]
  )
  key = enc @ head["key"]["kernel"] + head["key"]["bias"]
  query = y @ head["query"]["kernel"] + head["query"]["bias"]
  vocab = np.asarray(config.output_vocab)
  out, gates = np.zeros(np.asarray(logits).shape), []
  for b in range(ids.shape[0]):
    src = [
      (j, int(np.searchsorted(vocab, t))) for j, t in enumerate(ids[b]) if mask[b, j] and t in vocab
    ]
    scores = query[b] @ key[b][[j for j, _ in src]].T / np.sqrt(key.shape[-1])
    attn = np.exp(scores - scores.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    context = attn @ enc[b][[j for j, _ in src]]
    gate = 1 / (
      1 + np.exp(-(np.concatenate([y[b], context], -1) @ head["gate_kernel"] + head["gate_bias"]))
    )
    z = np.asarray(logits[b], np.float64)
    p_vocab = np.exp(z - z.max(-1, keepdims=True))
    p_vocab /= p_vocab.sum(-1, keepdims=True)
    p = gate[:, None] * p_vocab
    for (_, o), a in zip(src, attn.T):
      p[:, o] += (1 - gate) * a
    out[b] = np.log(p)
    gates.append(gate)
  return out, np.stack(gates)


def test_copy_head_matches_the_pointer_generator_formula(copy_generator):
  path, config = copy_generator
  ckpt = orbax_io.load_checkpoint(path)
  tok = tokenizer_for(path, ckpt.extra, ckpt.config)
  # n03/n04/n05 are in the output vocabulary (copyable, n03 twice), river/city/tea are not.
  ids = _ids(tok, ["n03 river n04 city n03 .", "n05 the tea ."])
  prefix = np.array([[0, 5, 6, 7], [0, 4, 4, 9]], np.int32)
  got = _teacher_forced_logits(ckpt.params, config, ids, prefix)
  np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, rtol=1e-5)  # normalised
  ref, gates = _copy_reference(ckpt.params, config, ids, prefix)
  assert 0.1 < gates.min() and gates.max() < 0.9  # both distributions really mixed
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
  # The copy mass lands on the source's pieces: raising it raises exactly those.
  params = jax.tree_util.tree_map(np.array, ckpt.params)
  params["decoder"]["copy_attention"]["gate_bias"] = np.float32(-30.0)
  only_copy = np.exp(_teacher_forced_logits(params, config, ids, prefix))
  # Copyable: the row's pieces in the output vocabulary, <s> and </s> included, not padding.
  src0 = {config.output_id(int(t)) for t in ids[0] if t != config.pad_token_id}
  src0.discard(None)
  assert len(src0) == 4  # <s> </s> n03 n04
  np.testing.assert_allclose(only_copy[0][:, sorted(src0)].sum(-1), 1.0, rtol=1e-4)
  # ... and with the gate shut the other way the model is the plain decoder.
  params["decoder"]["copy_attention"]["gate_bias"] = np.float32(30.0)
  plain = Bert2BertConfig(**{**vars(config), "copy_attention": False})
  plain_params = {
    **params,
    "decoder": {k: v for k, v in params["decoder"].items() if k != "copy_attention"},
  }
  np.testing.assert_allclose(
    np.exp(_teacher_forced_logits(params, config, ids, prefix)),
    np.asarray(jax.nn.softmax(_teacher_forced_logits(plain_params, plain, ids, prefix))),
    atol=1e-6,
  )


def test_copy_attention_config_round_trips_and_is_checked():
  config = Bert2BertConfig(encoder=_encoder_config(), output_vocab=_vocab(), copy_attention=True)
  assert Bert2BertConfig.from_dict(config.to_dict()) == config
  old = {k: v for k, v in config.to_dict().items() if k != "copy_attention"}
  assert Bert2BertConfig.from_dict(old).copy_attention is False  # checkpoints from before
  with pytest.raises(ValueError, match="field 'copy_attention' must be a bool"):
    Bert2BertConfig.from_dict({**config.to_dict(), "copy_attention": 1})


# ------------------------------------------------------------------------- the command


def test_generate_command_with_the_warm_started_generator(generator, tmp_path):
  path, config = generator
  corpus = tmp_path / "corpus.tsv"
  corpus.write_text("id\ttext\ttitle\nd1\tn08 river n09 city .\tn08\nd2\tthe tea mountain .\t\n")
  out = tmp_path / "gen.jsonl"
  argv = [
    "generate", f"--checkpoint={path}", f"--corpus={corpus}", f"--output={out}",
    "--languages=ja,ko", "--strategy=beam", "--beam_size=3", "--num_questions=2",
    "--max_decode_length=5", "--max_input_length=24", "--no_progress", "--batch_size=2",
  ]  # fmt: skip
  assert cli.main(argv) == 0
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r["docid"] for r in rows] == ["d1", "d2"]
  # Independent: the same beams decoded directly, output ids mapped back, detokenised.
  ckpt = orbax_io.load_checkpoint(path)
  tok = tokenizer_for(path, ckpt.extra, ckpt.config)
  prompt = "Generate a Korean question for this passage: n08 n08 river n09 city ."
  direct = decoding.generate(
    ckpt.params, _ids(tok, [prompt]), None, config=config, strategy="beam",
    max_decode_length=5, beam_size=3, num_return=2, suppress_ids=(3,),
  )  # fmt: skip
  want = []
  for t in np.asarray(direct.tokens[0]):
    kept = decoding.trim_at_eos(t, config.eos_token_id)
    want.append(tok.decode(to_token_ids(config, np.asarray(kept, np.int64)).tolist()))
  assert rows[0]["generated_queries"]["ko"] == want
  assert all(len(q) == 2 for r in rows for q in r["generated_queries"].values())
  # Resume: a second run with the same flags finds everything done and writes nothing new.
  before = out.read_bytes()
  assert cli.main(argv) == 0
  assert out.read_bytes() == before


# ---------------------------------------------------------------------------- the recipe


@pytest.mark.parametrize("copy", [False, True])
def test_cpu_recipe_trains_and_exports_a_generator(backbone, pairs, tmp_path, copy):
  """gin/runs/train_xqg_me5_cpu.gin at tiny size: warm start, a few steps, export, generate
  (with and without the copy head)."""
  model_dir = tmp_path / "run"
  init = tmp_path / "init"
  argv = [
    "train", "--gin_file=runs/train_xqg_me5_cpu.gin", f"--model_dir={model_dir}",
    f"--gin.BACKBONE='{backbone}'", f"--gin.PAIRS='{pairs}'", f"--gin.INIT='{init}'",
    "--gin.DECODER_LAYERS=0", "--gin.BATCH_SIZE=16", "--gin.PASSAGE_LENGTH=24",
    "--gin.QUERY_LENGTH=8", "--gin.HELDOUT=0.2", "--gin.TRAIN_STEPS=12",
    "--gin.LEARNING_RATE=3e-3", "--gin.trainer.train.log_every=1",
    "--gin.trainer.train.eval_every=12", "--gin.trainer.train.eval_steps=1",
    "--gin.optimizers.learning_rate_schedule.warmup_steps=1",
    "--gin.trainer.train.tensorboard=False", f"--gin.COPY_ATTENTION={copy}",
  ]  # fmt: skip
  assert cli.main(argv) == 0
  final = orbax_io.load_checkpoint(str(model_dir / "final"))
  assert final.model_kind == "bert2bert" and final.extra["language_tags"] is False
  assert final.config.copy_attention is copy
  if copy:  # the copy head trained (its gate moved off its initial value)
    assert float(final.params["decoder"]["copy_attention"]["gate_bias"]) != 1.0
  assert final.extra[TOKENIZER_KEY]["kind"] == "hf"
  # The output vocabulary: the specials plus every piece of the training prompts/questions.
  tok = tokenizer_for(str(model_dir / "final"), final.extra, final.config)
  train = [r for r in _pairs(96) if not warmstart.is_heldout(r["_id"], 0.2)]
  sources, targets = warmstart.xqg_sources_targets(
    [{**r, "id": r["_id"]} for r in train], tok, 24, 8
  )
  expected = sorted(
    set(sources.ravel().tolist()) | set(targets[targets >= 0].tolist()) | {0, 1, 2, 3}
  )
  assert list(final.config.output_vocab) == expected
  rows = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  losses = [r["loss"] for r in rows if r["split"] == "train"]
  assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
  gin.clear_config()
  corpus = tmp_path / "c.tsv"
  corpus.write_text("id\ttext\ttitle\nd1\tn11 river n12 city .\tn11\n")
  out = tmp_path / "q.jsonl"
  argv = [
    "generate", f"--checkpoint={model_dir / 'final'}", f"--corpus={corpus}", f"--output={out}",
    "--languages=ja", "--strategy=greedy", "--max_decode_length=6", "--max_input_length=24",
    "--no_progress",
  ]  # fmt: skip
  assert cli.main(argv) == 0
  assert list(json.loads(out.read_text())["generated_queries"]) == ["ja"]
