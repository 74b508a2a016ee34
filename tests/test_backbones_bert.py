"""Tiny BERT retrieval models end to end: HF import through the CLI, PCA projection, frozen
parameters, training that learns, and checkpoint metadata.

References are independent of the code under test: ``transformers.BertModel`` computes the
token states the index must hold, the ``tokenizers`` library tokenises, numpy's SVD gives the
principal axes, and safetensors files written by ``save_pretrained`` are what an export must
reproduce. Everything is a 2-layer, 64-wide model on a ~200-word vocabulary: the time goes
into compiling the few jitted steps.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil

import jax
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from safetensors.numpy import load_file  # noqa: E402

from xtr_jax import cli  # noqa: E402
from xtr_jax.checkpoints import orbax_io  # noqa: E402
from xtr_jax.checkpoints.tokenizers import tokenizer_for  # noqa: E402
from xtr_jax.index.store import load_index  # noqa: E402
from xtr_jax.models.bert import BertConfig, bert_config  # noqa: E402
from xtr_jax.models.config import T5Config, tiny_config  # noqa: E402
from xtr_jax.models.t5 import T5EncoderModel  # noqa: E402
from xtr_jax.training import inputs, optimizers, projection_init, trainer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R's order: pad id 1, as E5 pads
FILLER = "the of and a in is to what which who how where when was are by".split()
WORDS = [f"w{i:03d}" for i in range(192)]
TOPICS = WORDS[:48]  # the words that tell the synthetic task's passages apart
VOCAB = [*SPECIALS, *FILLER, *WORDS, "?", "."]
VOCAB_SIZE = 256  # the model's rows; the tokenizer uses the first len(VOCAB)
PAD = 1
# bert_config('tiny') sizes: 2 layers, 64 wide, 4 heads, 128 positions.
HF_SIZES = dict(
  vocab_size=VOCAB_SIZE, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
  intermediate_size=128, max_position_embeddings=128,
)  # fmt: skip


# ----------------------------------------------------------------------------- fixtures


def _tokenizer() -> tokenizers.Tokenizer:
  """WordLevel on whitespace/punctuation, lower-cased, ``<s> $A </s>``; no padding setting,
  so nothing in the folder names the pad token but the vocabulary itself."""
  from tokenizers import models, normalizers, pre_tokenizers, processors

  tok = tokenizers.Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, "<unk>"))
  tok.normalizer = normalizers.Lowercase()
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.post_processor = processors.TemplateProcessing(
    single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
  )
  tok.add_special_tokens(SPECIALS)
  return tok


def _pair_rows(n: int, seed: int = 0) -> list[dict]:
  """SWIM-IR-layout pairs: each passage has 3 of 48 topic words among fillers; its query
  repeats 2 of them. Held-out pairs are new combinations of the same words, so what a model
  learns from the training pairs (which words tell passages apart) carries over to them."""
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n):
    own = list(rng.choice(TOPICS, 3, replace=False))
    body = [*own, *rng.choice(FILLER, 9)]
    rng.shuffle(body)
    query = [*rng.choice(FILLER, 3), *rng.choice(own, 2, replace=False)]
    rng.shuffle(query)
    rows.append(
      {
        "_id": f"pair-{i}", "lang": "en", "code": "en", "query": " ".join(query) + " ?",
        "title": own[0], "text": " ".join(body) + " .",
      }
    )  # fmt: skip
  return rows


def _write_jsonl(path: pathlib.Path, rows: list[dict]) -> str:
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  return str(path)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> pathlib.Path:
  """A random BertModel saved by transformers itself, plus a tokenizer.json."""
  path = tmp_path_factory.mktemp("hf") / "bert"
  torch.manual_seed(0)
  model = transformers.BertModel(transformers.BertConfig(**HF_SIZES))
  with torch.no_grad():  # spread the (tiny) default init so mistakes show; LN scales near 1
    for name, p in model.named_parameters():
      p.normal_(0.0, 0.3)
      if "LayerNorm.weight" in name:
        p.add_(1.0)
  model.save_pretrained(str(path), safe_serialization=True)
  _tokenizer().save(str(path / "tokenizer.json"))
  return path


@pytest.fixture(scope="module")
def hf_model(hf_folder):
  return transformers.BertModel.from_pretrained(str(hf_folder)).eval()


@pytest.fixture(scope="module")
def ckpt(hf_folder, tmp_path_factory) -> str:
  """``xtr-jax convert --from hf_bert`` of the folder (proj_dim 0, its tokenizer inside)."""
  out = str(tmp_path_factory.mktemp("ckpt") / "bert")
  argv = ["convert", "--from", "hf_bert", "--input", str(hf_folder), "--output", out]
  assert cli.main(argv) == 0
  return out


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> str:
  return _write_jsonl(tmp_path_factory.mktemp("pairs") / "en.jsonl", _pair_rows(256))


def _hf_states(model, texts: list[str]) -> list[np.ndarray]:
  """transformers' last_hidden_state of each text alone (no padding), L2-normalised per
  token, with ids from the ``tokenizers`` library: the vectors a token index must hold."""
  tok = _tokenizer()
  out = []
  for text in texts:
    ids = torch.tensor([tok.encode(text).ids])
    with torch.no_grad():
      states = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
    states = states.numpy().astype(np.float64)
    out.append(states / np.linalg.norm(states, axis=1, keepdims=True))
  return out


def _one_line(excinfo) -> str:
  msg = str(excinfo.value)
  assert "\n" not in msg, msg
  return msg


# ----------------------------------------------------------------------------- 4. HF BERT + CLI


def test_converted_checkpoint_carries_the_tokenizer(hf_folder, ckpt):
  meta = orbax_io.load_metadata(ckpt)
  assert meta["backbone"] == "bert" and meta["model_kind"] == "retrieval"
  assert meta["extra"]["proj_dim"] == 0 and meta["extra"]["pooling"] == "mean"
  spec = meta["extra"]["tokenizer"]
  assert spec["file"] == "tokenizer.json" and spec["fingerprint"].startswith("sha256:")
  assert (spec["bos_id"], spec["eos_id"], spec["pad_id"]) == (0, 2, PAD)
  # The copy inside tokenises exactly as the folder's file does.
  inside = tokenizers.Tokenizer.from_file(os.path.join(ckpt, "tokenizer.json"))
  text = "What is w001 and w002 of the w003 ?"
  assert inside.encode(text).ids == _tokenizer().encode(text).ids
  # The model masks padding with the id the tokenizer pads with.
  assert meta["config"]["pad_token_id"] == spec["pad_id"]


def test_hf_bert_folder_index_and_search_through_the_cli(ckpt, hf_model, tmp_path):
  rows = _pair_rows(12, seed=1)
  corpus = tmp_path / "corpus.tsv"
  with open(corpus, "w", encoding="utf-8") as f:
    f.write("id\ttext\ttitle\n")
    f.writelines(f"p{i}\t{r['text']}\t{r['title']}\n" for i, r in enumerate(rows))
  queries = tmp_path / "queries.jsonl"
  questions = [
    {"id": f"q{i}", "lang": "en", "question": r["query"], "answers": []} for i, r in enumerate(rows)
  ]
  _write_jsonl(queries, questions)
  index, run = str(tmp_path / "index"), str(tmp_path / "run.trec")
  fast = ["--gin.EncodeParams.token_budget=0", "--gin.EncodeParams.buckets=(32,)"]
  for pooling in ("token", "mean"):  # no --vocabulary: the checkpoint's own tokenizer
    argv = ["index", "--checkpoint", ckpt, "--corpus", str(corpus), "--output", index]
    argv += ["--pooling", pooling, "--overwrite", "--gin.index_settings.backend='brute_force'"]
    assert cli.main([*argv, *fast]) == 0
    argv = ["search", "--index", index, "--queries", str(queries), "--output", run, "--k", "3"]
    assert cli.main(argv) == 0
    lines = [line.split() for line in open(run)]
    assert len(lines) == 3 * len(rows) and {x[2] for x in lines} <= {f"p{i}" for i in range(12)}
    if pooling == "token":
      # Every token of "title text" (<s> and </s> included) is stored, and is transformers'
      # state of that token (float16 in the index).
      loaded = load_index(index, backend="brute_force")
      want = _hf_states(hf_model, [f"{r['title']} {r['text']}" for r in rows])
      for row, pid in enumerate(loaded.passage_ids):
        stored = loaded.vectors[loaded.token_to_passage == row].astype(np.float64)
        ref = want[int(pid[1:])]
        assert stored.shape == ref.shape, pid
        np.testing.assert_allclose(stored, ref, atol=2e-3, err_msg=pid)
    else:
      manifest = json.load(open(os.path.join(index, "manifest.json")))
      assert manifest["pooling"] == "mean" and manifest["num_tokens"] == len(rows)


def test_a_pad_token_the_folder_names_must_be_the_tokenizers(hf_folder, tmp_path, capsys):
  """Padding with one id while the model masks another is refused, not imported silently."""
  copy = tmp_path / "bert"
  shutil.copytree(hf_folder, copy)
  (copy / "tokenizer_config.json").write_text(json.dumps({"pad_token": "</s>"}))  # id 2
  argv = ["convert", "--from", "hf_bert", "--input", str(copy), "--output", str(tmp_path / "c")]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert "\n" not in err and not (tmp_path / "c").exists()
  assert "gives pad id 2 but" in err and "pads with its <pad> piece, id 1" in err


def test_export_to_hf_gives_the_transformers_tensors(hf_folder, ckpt, tmp_path):
  out = tmp_path / "hf_out"
  assert cli.main(["convert", "--to", "hf", "--input", ckpt, "--output", str(out)]) == 0
  original = load_file(str(hf_folder / "model.safetensors"))
  exported = load_file(str(out / "model.safetensors"))
  assert sorted(exported) == sorted(k for k in original if not k.startswith("pooler."))
  for name, value in exported.items():
    assert value.dtype == original[name].dtype and value.tobytes() == original[name].tobytes()
  config = json.loads((out / "config.json").read_text())
  assert {k: config[k] for k in HF_SIZES} == HF_SIZES


# ----------------------------------------------------------------------------- 5. PCA projection


def _anisotropic(n: int, d: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
  scales = np.geomspace(4.0, 0.1, d)  # well-separated singular values
  return (rng.standard_normal((n, d)) * scales) @ basis.T + 0.3  # uncentred on purpose


def test_principal_axes_match_numpy_svd():
  states = _anisotropic(400, 24, seed=0)
  w = projection_init.principal_axes(states, 8)
  assert w.shape == (24, 8) and w.dtype == np.float32
  np.testing.assert_allclose(w.T @ w, np.eye(8), atol=1e-5)  # orthonormal columns
  _, _, vt = np.linalg.svd(states, full_matrices=False)  # uncentred: right singular vectors
  u = vt[:8].T
  np.testing.assert_allclose(np.linalg.svd(w.T @ u, compute_uv=False), 1.0, atol=1e-5)
  # Column by column (distinct singular values), with the documented sign: the entry of
  # largest magnitude is positive; so the result does not depend on the solver.
  signs = np.sign(u[np.abs(u).argmax(0), np.arange(8)])
  np.testing.assert_allclose(w, u * signs, atol=1e-5)
  energy = np.square(states @ w).sum(0)
  assert np.all(np.diff(energy) < 0)  # descending
  shuffled = np.random.default_rng(1).permutation(states)
  np.testing.assert_array_equal(projection_init.principal_axes(-shuffled, 8), w)
  with pytest.raises(ValueError, match="proj_dim=30"):
    projection_init.principal_axes(states, 30)


def test_init_projection_writes_pca_of_the_token_states(ckpt, hf_model, pairs, tmp_path):
  out = str(tmp_path / "pca16")
  summary = projection_init.init_projection(
    ckpt, pairs, out, proj_dim=16, n_texts=20, passage_length=32, query_length=16
  )
  loaded = orbax_io.load_checkpoint(out)
  assert loaded.extra["proj_dim"] == 16 and loaded.extra["pooling"] == "token"
  assert loaded.extra["projection_init"]["kind"] == "pca"
  kernel = loaded.params["projection"]["kernel"]
  assert kernel.shape == (64, 16)
  source = orbax_io.load_checkpoint(ckpt)
  for a, b in zip(jax.tree.leaves(source.params), jax.tree.leaves(loaded.params["bert"])):
    np.testing.assert_array_equal(a, b)  # the backbone is copied as is
  # The reference: transformers' states of the same sampled texts (the index stores float16).
  queries, passages = projection_init.sample_texts(pairs, 20)
  spec = loaded.extra["tokenizer"]
  assert spec["query_prefix"] == spec["passage_prefix"] == ""  # as the reference tokenises
  states = np.concatenate(_hf_states(hf_model, queries + passages))
  assert summary["tokens"] == len(states)
  want = projection_init.principal_axes(states.astype(np.float16), 16)
  np.testing.assert_allclose(np.linalg.svd(kernel.T @ want, compute_uv=False), 1.0, atol=1e-3)
  np.testing.assert_allclose(kernel, want, atol=2e-3)
  # Its tokenizer travels with it; a checkpoint that has a projection is refused.
  assert loaded.extra["tokenizer"] == source.extra["tokenizer"]
  assert (
    open(os.path.join(out, "tokenizer.json"), "rb").read()
    == open(os.path.join(ckpt, "tokenizer.json"), "rb").read()
  )
  with pytest.raises(ValueError, match="without projection") as e:
    projection_init.init_projection(out, pairs, str(tmp_path / "again"), proj_dim=8)
  assert out in _one_line(e)


# ----------------------------------------------------------------------------- 6-7. training


def _train(model_dir, pairs_path, ckpt, kind, steps, *, lr, freeze=(), init=None, held=True, **kw):
  """``trainer.train`` without gin: AdamW at a constant ``lr``, metrics logged every step,
  held-out metrics (8-pair batches) after every step when ``held``."""
  batches = lambda split, bs: inputs.jsonl_pairs_batches(
    pairs_path, "", batch_size=bs, query_length=16, passage_length=24, split=split,
    heldout_fraction=0.25, tokenizer_checkpoint=ckpt,
  )  # fmt: skip
  args = dict(
    model_config=bert_config("tiny", vocab_size=VOCAB_SIZE, pad_token_id=PAD),
    model_kind=kind,
    train_batches=batches("train", 16),
    eval_batches=batches("heldout", 8) if held else None,
    num_train_steps=steps,
    checkpoint_every=steps,
    eval_every=1,
    eval_steps=2,
    log_every=1,
    mesh_shape=(1, 1),
    init_checkpoint=init,
    schedule_fn=lambda: optimizers.learning_rate_schedule(lr, "constant", 0),
    optimizer_fn=lambda s: optimizers.make_optimizer(s, name="adamw", freeze=freeze),
    tensorboard=False,
  )
  return trainer.train(str(model_dir), **{**args, **kw})


def test_frozen_word_embeddings_do_not_move(ckpt, pairs, tmp_path):
  freeze = ("word_embeddings",)
  result = _train(
    tmp_path / "m", pairs, ckpt, "xtr", 3, lr=1e-2, freeze=freeze, init=ckpt, held=False
  )
  final = jax.device_get(result.state["params"])
  start = orbax_io.load_checkpoint(ckpt).params
  words = final["bert"]["embeddings"]["word_embeddings"]["embedding"]
  assert words.tobytes() == start["bert"]["embeddings"]["word_embeddings"]["embedding"].tobytes()
  for path in ("layers_0/query/kernel", "embeddings/position_embeddings/embedding"):
    a, b = (orbax_io.flatten_params(tree["bert"])[path] for tree in (final, start))
    assert np.abs(a - b).max() > 1e-4, path
  labels = orbax_io.flatten_params(optimizers.freeze_labels(final, freeze))
  assert [k for k, v in labels.items() if v == "frozen"] == [
    "bert/embeddings/word_embeddings/embedding"
  ]
  # The exported model is the trained one and carries the init checkpoint's tokenizer.
  exported = orbax_io.load_checkpoint(tmp_path / "m" / "final")
  assert exported.extra["tokenizer"] == orbax_io.load_metadata(ckpt)["extra"]["tokenizer"]
  assert exported.extra["proj_dim"] == 128 and isinstance(exported.config, BertConfig)
  assert os.path.isfile(tmp_path / "m" / "final" / "tokenizer.json")


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_frozen_parameters_have_no_optimizer_state_to_shard(name):
  """``freeze`` leaves empty MaskedNodes in the inner optimizer's state; the state's
  shardings must have the same structure (the trainer builds its jit steps from them)."""
  from xtr_jax import partitioning

  task = trainer.ModelTask(bert_config("tiny"), kind="xtr")
  params = jax.eval_shape(lambda: orbax_io.unbox(task.init(jax.random.key(0))))
  mesh = partitioning.create_mesh((1, 1))
  shardings = jax.tree.map(lambda _: partitioning.replicated(mesh), params)
  schedule = optimizers.learning_rate_schedule(1e-3, "constant", 0)
  tx = optimizers.make_optimizer(schedule, name=name, freeze=("word_embeddings",))
  state = jax.eval_shape(tx.init, params)
  got = partitioning.opt_state_shardings(tx, params, shardings, mesh)
  assert jax.tree.structure(got) == jax.tree.structure(state)
  is_masked = lambda x: isinstance(x, optax.transforms.MaskedNode)
  assert any(map(is_masked, jax.tree.leaves(state, is_leaf=is_masked)))  # frozen: no state


@pytest.mark.parametrize("kind", ["xtr", "single_vector"])
def test_training_improves_retrieval(ckpt, pairs, tmp_path, kind):
  """From a random tiny BERT: 100 steps (batch 16, ~190 training pairs) take the in-batch
  MRR from about 0.45 to about 0.99 and held-out MRR (new combinations of the same topic
  words) from about 0.6-0.7 to about 0.98-1.0, for both XTR and the single-vector model."""
  steps = 100
  result = _train(tmp_path / kind, pairs, ckpt, kind, steps, lr=1e-3, export=False, eval_steps=4)
  rows = [json.loads(x) for x in open(tmp_path / kind / "metrics.jsonl")]
  train = [r for r in rows if r["split"] == "train"]
  assert [r["step"] for r in train] == list(range(1, steps + 1))
  first = {k: np.mean([r[k] for r in train[:5]]) for k in ("loss", "mrr", "chance_mrr")}
  last = {k: np.mean([r[k] for r in train[-5:]]) for k in ("loss", "mrr")}
  held_first, held = result.eval_metrics[1], result.eval_metrics[steps]
  print(f"{kind}: train {first} -> {last}; held-out {held_first} -> {held}")
  assert last["loss"] < 0.3 * first["loss"]
  assert last["mrr"] > max(first["mrr"] + 0.3, 0.9) and first["chance_mrr"] < 0.25
  assert held["mrr"] > max(held_first["mrr"] + 0.15, held["chance_mrr"] + 0.4, 0.9)
  assert held["loss"] < 0.5 * held_first["loss"]


# ----------------------------------------------------------------------------- 8. metadata


def _edit_metadata(directory, change) -> pathlib.Path:
  path = pathlib.Path(directory) / orbax_io.METADATA_FILE
  meta = json.loads(path.read_text())
  change(meta)
  path.write_text(json.dumps(meta))
  return path


def test_bert_metadata_round_trip_and_errors(ckpt, tmp_path):
  source = orbax_io.load_checkpoint(ckpt)
  out = tmp_path / "saved"
  orbax_io.save_checkpoint(
    out, source.params["bert"], source.config, model_kind="bert_encoder", extra={"note": "x"}
  )
  assert orbax_io.load_metadata(out)["backbone"] == "bert"
  loaded = orbax_io.load_checkpoint(out)
  assert isinstance(loaded.config, BertConfig) and loaded.config == source.config
  assert loaded.model_kind == "bert_encoder"
  assert loaded.fingerprint == orbax_io.params_fingerprint(source.params["bert"])
  # Sizes in the metadata that the arrays do not have: the error names the arrays' folder.
  bad = tmp_path / "bad_sizes"
  shutil.copytree(out, bad)
  _edit_metadata(bad, lambda m: m["config"].update(intermediate_size=96))
  with pytest.raises(ValueError, match=r"do not match the model") as e:
    orbax_io.load_checkpoint(bad)
  assert str(bad / orbax_io.PARAMS_DIR) in str(e.value)
  assert "layers_0/intermediate/kernel" in str(e.value) and "(64, 96)" in str(e.value)
  # An unknown backbone: one line naming the metadata file.
  unknown = tmp_path / "unknown"
  shutil.copytree(out, unknown)
  meta_path = _edit_metadata(unknown, lambda m: m.update(backbone="gpt2"))
  with pytest.raises(
    ValueError, match=r"backbone='gpt2'; expected one of \['bert', 'bert2bert', 't5'\]"
  ) as e:
    orbax_io.load_checkpoint(unknown)
  assert str(meta_path) in _one_line(e)


def test_metadata_without_backbone_is_t5(tmp_path):
  config = tiny_config(num_encoder_layers=1, num_decoder_layers=1)
  ids = jax.numpy.ones((1, 4), jax.numpy.int32)
  shapes = jax.eval_shape(lambda: T5EncoderModel(config).init(jax.random.key(0), ids)["params"])
  rng = np.random.default_rng(0)  # the values do not matter, only that they come back
  params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)
  orbax_io.save_checkpoint(tmp_path / "t5", params, config, model_kind="mt5_encoder")
  _edit_metadata(tmp_path / "t5", lambda m: m.pop("backbone"))  # as written before BERT
  loaded = orbax_io.load_checkpoint(tmp_path / "t5")
  assert isinstance(loaded.config, T5Config) and loaded.config == config
  assert loaded.fingerprint == orbax_io.params_fingerprint(params)


def test_tampered_tokenizer_is_refused(ckpt, tmp_path):
  copy = tmp_path / "tampered"
  shutil.copytree(ckpt, copy)
  path = copy / "tokenizer.json"
  doc = json.loads(path.read_text())
  vocab = doc["model"]["vocab"]
  vocab["w999"] = vocab.pop("w005")  # one piece changed, same id
  path.write_text(json.dumps(doc))
  meta = orbax_io.load_metadata(copy)
  with pytest.raises(ValueError, match="tokenizer fingerprint .* does not match the recorded") as e:
    tokenizer_for(str(copy), meta["extra"], None)
  assert str(path) in _one_line(e)
  assert tokenizer_for(ckpt, orbax_io.load_metadata(ckpt)["extra"], None).pad_id == PAD


def test_init_projection_distill_records_the_fit_and_its_heldout_retrieval(ckpt, pairs, tmp_path):
  out = str(tmp_path / "distill16")
  fit = {"steps": 6, "batch_size": 16, "learning_rate": 1e-3, "k_train": 32, "log_every": 3}
  summary = projection_init.init_projection(
    ckpt,
    pairs,
    out,
    proj_dim=16,
    n_texts=64,
    passage_length=32,
    query_length=16,
    method="distill",
    fit=fit,
  )
  record = orbax_io.load_checkpoint(out).extra["projection_init"]
  assert record["kind"] == "distill" and record["fit"] == fit and record["pairs_used"] == 64
  assert [h["step"] for h in record["history"]] == [3, 6]
  assert set(record["heldout"]) == {"teacher", "pca", "distill"}
  assert all(0 <= m["mrr@10"] <= 1 and m["queries"] > 0 for m in record["heldout"].values())
  assert summary["heldout"] == record["heldout"]
  assert orbax_io.load_checkpoint(out).params["projection"]["kernel"].shape == (64, 16)
  with pytest.raises(ValueError, match="--method 'svd'"):
    projection_init.init_projection(ckpt, pairs, str(tmp_path / "x"), method="svd")
  assert not os.path.exists(tmp_path / "x")


def test_projection_fit_probe_encodes_once_and_reruns_from_its_cache(ckpt, pairs, tmp_path):
  """benchmarks/projection_fit_probe.py: one row per setting, identical on a cached rerun."""
  spec = importlib.util.spec_from_file_location(
    "projection_fit_probe", ROOT / "benchmarks" / "projection_fit_probe.py"
  )
  probe = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(probe)
  cache, out = str(tmp_path / "states.npz"), str(tmp_path / "probe.json")
  argv = ["--checkpoint", ckpt, "--pairs", pairs, "--sample_texts", "64", "--proj_dim", "16"]
  argv += ["--temperatures", "0.05", "0.1", "--steps", "3", "--batch_size", "16"]
  argv += ["--cache", cache, "--output", out]
  probe.main(argv)
  first = json.load(open(out))
  assert [r["kernel"] for r in first["rows"]] == ["teacher", "pca", "distill", "distill"]
  assert [r.get("token_temperature") for r in first["rows"]] == [None, None, 0.05, 0.1]
  assert first["train_pairs"] == 64 and first["heldout_pairs"] > 0
  assert "--pairs" in first["command"] and os.path.exists(cache)
  table = open(str(tmp_path / "probe.md")).read().splitlines()
  assert len(table) == 2 + 4 and table[4].startswith("| distill | 0.05 | 1.0 | ")
  os.remove(out)
  probe.main(argv)  # from the cache: the same states, so the same numbers
  again = json.load(open(out))
  for a, b in zip(first["rows"], again["rows"], strict=True):
    assert a["mrr@10"] == b["mrr@10"] and a["recall@1"] == b["recall@1"]
