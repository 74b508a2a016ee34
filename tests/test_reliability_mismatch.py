"""Mismatches are refused with a message naming both sides: vocabulary, model, gin config."""

import json
import os
import shutil

import jax
import pytest

import gin
from xtr_jax import gin_utils
from xtr_jax.checkpoints import orbax_io
from xtr_jax.data.tokenizer import Tokenizer
from xtr_jax.index import cli as index_cli
from xtr_jax.index.build import build_from_corpus
from xtr_jax.index.encode import EncodeParams
from xtr_jax.index.retriever import Retriever, load_model
from xtr_jax.index.store import IndexFormatError
from xtr_jax.index.testing import WORDS, make_tiny_setup, train_vocabulary
from xtr_jax.io import file_fingerprint
from xtr_jax.models import t5
from xtr_jax.models.config import tiny_config
from xtr_jax.models.xtr import RetrievalEncoder
from xtr_jax.xqg import cli as generate_cli


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("mismatch"))
  setup = make_tiny_setup(os.path.join(root, "fx"), num_passages=12)
  # Another valid SentencePiece model (different texts -> different pieces and bytes).
  other_vocab = train_vocabulary(
    [" ".join(reversed(WORDS[: 20 + i % 7])) + f" z{i}" for i in range(300)],
    os.path.join(root, "other_spm"),
  )
  params, config, proj_dim, fp, _ = load_model(setup.checkpoint)
  index = os.path.join(root, "idx")
  build_from_corpus(
    setup.corpus, index, params, config, proj_dim=proj_dim, model_fingerprint=fp,
    tokenizer=Tokenizer(setup.vocabulary), checkpoint=setup.checkpoint,
    encode_params=EncodeParams(buckets=(64,)), backend="brute_force", progress=False,
  )  # fmt: skip
  # A second retrieval model (other weights) with the same vocabulary.
  other_ckpt = os.path.join(root, "other_ckpt")
  orbax_io.save_checkpoint(
    other_ckpt, t5.init_params(config, jax.random.PRNGKey(7), RetrievalEncoder), config,
    model_kind="retrieval",
    extra={"proj_dim": 128, "pooling": "token", "vocabulary": setup.vocabulary},
  )  # fmt: skip
  mt5 = os.path.join(root, "mt5")
  orbax_io.save_checkpoint(
    mt5, t5.init_params(tiny_config(), jax.random.PRNGKey(3), t5.Transformer), tiny_config(),
    model_kind="mt5", extra={"vocabulary": setup.vocabulary},
  )  # fmt: skip
  return dict(root=root, setup=setup, other_vocab=other_vocab, index=index,
              other_ckpt=other_ckpt, mt5=mt5)  # fmt: skip


def test_checkpoint_records_the_vocabulary_fingerprint(world):
  setup = world["setup"]
  meta = orbax_io.load_metadata(setup.checkpoint)
  # The same value the index manifest records, so the two can be compared.
  assert meta["extra"]["vocabulary_fingerprint"] == file_fingerprint(setup.vocabulary)
  manifest = json.load(open(os.path.join(world["index"], "manifest.json")))
  assert manifest["vocabulary_fingerprint"] == meta["extra"]["vocabulary_fingerprint"]


def test_explicit_fingerprint_is_kept(tmp_path, world):
  extra = {"vocabulary": world["other_vocab"], "vocabulary_fingerprint": "sha256:given"}
  assert orbax_io.with_vocabulary_fingerprint(extra)["vocabulary_fingerprint"] == "sha256:given"
  # A missing vocabulary file records no fingerprint (nothing to hash) instead of failing.
  assert "vocabulary_fingerprint" not in orbax_io.with_vocabulary_fingerprint(
    {"vocabulary": str(tmp_path / "nope.model")}
  )


def _assert_names_both(msg, world):
  setup = world["setup"]
  assert "vocabulary mismatch" in msg
  assert world["other_vocab"] in msg and setup.vocabulary in msg and setup.checkpoint in msg
  assert file_fingerprint(world["other_vocab"]) in msg
  assert file_fingerprint(setup.vocabulary) in msg


def test_retriever_refuses_another_vocabulary(world):
  with pytest.raises(ValueError) as e:
    Retriever.load(world["index"], vocabulary=world["other_vocab"], backend="brute_force")
  _assert_names_both(str(e.value), world)


def test_index_build_refuses_another_vocabulary(world):
  setup = world["setup"]
  out = os.path.join(world["root"], "idx_bad_vocab")
  argv = [f"--checkpoint={setup.checkpoint}", f"--corpus={setup.corpus}", f"--output={out}",
          f"--vocabulary={world['other_vocab']}", "--gin.index_settings.backend='brute_force'"]  # fmt: skip
  with pytest.raises(ValueError) as e:
    index_cli.index_main(argv)
  _assert_names_both(str(e.value), world)
  assert not os.path.exists(out)


def test_generate_refuses_another_vocabulary(world):
  setup = world["setup"]
  out = os.path.join(world["root"], "gen.jsonl")
  with pytest.raises(ValueError) as e:
    generate_cli.main(
      [f"--checkpoint={world['mt5']}", f"--corpus={setup.corpus}", f"--output={out}",
       "--languages=ja", f"--vocabulary={world['other_vocab']}", "--no_progress"]
    )  # fmt: skip
  msg = str(e.value)
  assert world["other_vocab"] in msg and world["mt5"] in msg and setup.vocabulary in msg
  assert not os.path.exists(out)


def test_vocabulary_file_changed_after_training_is_refused(tmp_path, world):
  """The recorded path now holds other bytes: refused, not silently used."""
  setup = world["setup"]
  vocab = str(tmp_path / "spm.model")
  shutil.copy(setup.vocabulary, vocab)
  ckpt = str(tmp_path / "ckpt")
  c = orbax_io.load_checkpoint(setup.checkpoint)
  orbax_io.save_checkpoint(
    ckpt, c.params, c.config, model_kind="retrieval", extra={**c.extra, "vocabulary": vocab}
  )
  del c
  shutil.copy(world["other_vocab"], vocab)
  with pytest.raises(ValueError, match="vocabulary mismatch") as e:
    orbax_io.check_vocabulary(orbax_io.load_metadata(ckpt)["extra"], vocab, ckpt)
  assert file_fingerprint(setup.vocabulary) in str(e.value)


def test_index_refuses_another_model(world):
  with pytest.raises(IndexFormatError) as e:
    Retriever.load(world["index"], checkpoint_dir=world["other_ckpt"], backend="brute_force")
  msg = str(e.value)
  want = orbax_io.load_metadata(world["setup"].checkpoint)["fingerprint"]
  got = orbax_io.load_metadata(world["other_ckpt"])["fingerprint"]
  assert world["index"] in msg and want in msg and got in msg and "rebuild" in msg


def test_index_build_refuses_checkpoint_of_another_gin_model_size(world):
  setup = world["setup"]
  out = os.path.join(world["root"], "idx_bad_cfg")
  argv = [f"--checkpoint={setup.checkpoint}", f"--corpus={setup.corpus}", f"--output={out}",
          "--gin_file=models/mt5_small.gin", "--gin.index_settings.backend='brute_force'"]  # fmt: skip
  with pytest.raises(ValueError) as e:
    index_cli.index_main(argv)
  msg = str(e.value)
  assert setup.checkpoint in msg and "does not match the gin model config" in msg
  assert "d_model=512 in gin but 64 in the checkpoint" in msg
  assert not os.path.exists(out)


def test_generate_refuses_checkpoint_of_another_gin_config(world):
  setup = world["setup"]
  with pytest.raises(ValueError, match="num_heads=8 in gin but 4 in the checkpoint"):
    generate_cli.main(
      [f"--checkpoint={world['mt5']}", f"--corpus={setup.corpus}",
       f"--output={os.path.join(world['root'], 'g2.jsonl')}", "--languages=ja",
       "--gin.T5Config.num_heads=8", "--no_progress"]
    )  # fmt: skip


def test_matching_gin_config_is_accepted(world):
  """The tiny gin file binds exactly the checkpoint's architecture: no refusal."""
  setup = world["setup"]
  out = os.path.join(world["root"], "idx_ok_cfg")
  argv = [f"--checkpoint={setup.checkpoint}", f"--corpus={setup.corpus}", f"--output={out}",
          "--gin_file=models/mt5_tiny.gin", "--gin.index_settings.backend='brute_force'",
          "--gin.EncodeParams.buckets=(64,)"]  # fmt: skip
  assert index_cli.index_main(argv) == 0
  assert Retriever.load(out, backend="brute_force").search(["river"], 2)


def test_gin_macros_are_resolved_before_comparing(world):
  """``vocab_size = %VOCAB_SIZE`` (as the run gin files bind it) compares by the macro's value."""
  ckpt = orbax_io.load_checkpoint(world["setup"].checkpoint)
  size = ckpt.config.vocab_size
  gin.parse_config(
    f"SIZE = {size}\nALIAS = %SIZE\nxtr_jax.models.config.T5Config.vocab_size = %ALIAS"
  )
  orbax_io.check_config_matches(
    ckpt.config, gin_utils.bound_config_fields, "ckpt"
  )  # equal through two macros: accepted
  gin.clear_config()
  gin.parse_config(f"SIZE = {size + 1}\nxtr_jax.models.config.T5Config.vocab_size = %SIZE")
  with pytest.raises(ValueError, match=f"vocab_size={size + 1} in gin but {size} in the"):
    orbax_io.check_config_matches(ckpt.config, gin_utils.bound_config_fields, "ckpt")
