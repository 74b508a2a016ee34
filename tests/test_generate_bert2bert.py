"""Issue #20: every generation entry point takes the BERT2BERT generator, not only mT5.

A tiny BERT backbone carrying a word-level ``tokenizer.json`` is warm-started into a
BERT2BERT generator (as tests/test_xqg_warmstart.py does). The Beam pipeline (DirectRunner
and its no-Beam local path) and ``xtr-jax generate`` must write, for 3 passages with greedy
decoding, exactly what ``xqg.generate``'s direct path writes: a ``QuestionGenerator`` built
from ``tokenizer_for`` and ``generate_corpus``; that path in turn equals plain greedy
decoding of one prompt, mapped back through the restricted output vocabulary.
"""

from __future__ import annotations

import json
import os

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
from xtr_jax.data.xqg_prompt import xqg_input  # noqa: E402
from xtr_jax.models import bert, decoding  # noqa: E402
from xtr_jax.models.bert2bert import Bert2BertConfig, to_token_ids  # noqa: E402
from xtr_jax.scale import beam_generate  # noqa: E402
from xtr_jax.xqg import generate as xqg  # noqa: E402

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # bos 0, pad 1, eos 2, unk 3 (XLM-R order)
WORDS = (
  "generate a japanese korean question for this passage : what who is the river city tea".split()
)
NAMES = [f"n{i:02d}" for i in range(20)]
VOCAB = [*SPECIALS, *WORDS, *NAMES, "?", "."]
LANGUAGES = ["ja", "ko"]
PASSAGES = [  # (id, text, title)
  ("d1", "n03 river n07 city .", "n03"),
  ("d2", "the tea n11 .", ""),
  ("d3", "who is n05 ? n05 city n12 river .", "n05"),
]
SETTINGS = xqg.DecodeSettings(
  strategy="greedy", max_input_length=24, max_decode_length=5, language_tags="no"
)


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
  return bert.bert_config("tiny", vocab_size=64, pad_token_id=1)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[str, str]:
  """(tiny BERT retrieval backbone, BERT2BERT generator warm-started from it)."""
  root = tmp_path_factory.mktemp("b2b")
  tok_path = root / "tokenizer.json"
  _tokenizer().save(str(tok_path))
  tok = HFTokenizer.from_file(str(tok_path))
  config = _encoder_config()
  params = bert.BertEncoder(config).init(jax.random.PRNGKey(3), jnp.ones((1, 4), jnp.int32))
  params = jax.tree_util.tree_map(lambda x: np.asarray(x) * 8.0, orbax_io.unbox(params["params"]))
  spec = tok.to_dict()
  backbone = str(root / "bert")
  orbax_io.save_checkpoint(
    backbone,
    {"bert": params},
    config,
    model_kind="retrieval",
    extra={"proj_dim": 0, "pooling": "mean", TOKENIZER_KEY: spec},
    assets={spec["file"]: tok.serialize()},
  )
  words = len(SPECIALS) + len(WORDS)
  vocab = (*range(len(SPECIALS)), *range(words, words + len(NAMES) + 2))  # names, "?", "."
  generator = str(root / "gen")
  glue.warm_start_checkpoint(backbone, generator, Bert2BertConfig(config, output_vocab=vocab))
  return backbone, generator


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
  path = tmp_path_factory.mktemp("corpus") / "corpus.tsv"
  path.write_text("id\ttext\ttitle\n" + "".join(f"{i}\t{t}\t{h}\n" for i, t, h in PASSAGES))
  return str(path)


def _records(paths: list[str]) -> list[dict]:
  out = []
  for p in paths:
    with open(p, encoding="utf-8") as f:
      out += [json.loads(line) for line in f if line.strip()]
  return out


def _well_formed(records: list[dict]) -> None:
  assert [r["docid"] for r in records] == [p[0] for p in PASSAGES]
  for r in records:
    assert set(r) == {"docid", "generated_queries"}
    assert list(r["generated_queries"]) == LANGUAGES
    for qs in r["generated_queries"].values():
      assert len(qs) == 1 and isinstance(qs[0], str)


@pytest.fixture(scope="module")
def direct(checkpoints, corpus, tmp_path_factory) -> list[dict]:
  """``xqg.generate``'s direct path, built by hand from the checkpoint."""
  _, path = checkpoints
  ckpt = orbax_io.load_checkpoint(path)
  tok = tokenizer_for(path, ckpt.extra, ckpt.config)
  gen = xqg.QuestionGenerator(ckpt.params, ckpt.config, tok, SETTINGS)
  out = str(tmp_path_factory.mktemp("direct") / "gen.jsonl")
  xqg.generate_corpus(corpus, out, gen, LANGUAGES, batch_size=2, progress=False)
  records = _records([out])
  _well_formed(records)
  return records


def test_direct_path_is_plain_greedy_decoding(checkpoints, direct):
  """The reference itself: one prompt decoded greedily, output ids mapped back, detokenised."""
  _, path = checkpoints
  ckpt = orbax_io.load_checkpoint(path)
  tok = tokenizer_for(path, ckpt.extra, ckpt.config)
  _, text, title = PASSAGES[2]
  ids = tok.encode([xqg_input("ko", title, text)], SETTINGS.max_input_length)[0]
  batch = np.full((1, SETTINGS.max_input_length), tok.pad_id, np.int32)
  batch[0, : len(ids)] = ids
  out = decoding.generate(ckpt.params, batch, None, config=ckpt.config, strategy="greedy",
                          max_decode_length=5, suppress_ids=(ckpt.config.output_id(3),))  # fmt: skip
  kept = decoding.trim_at_eos(np.asarray(out.tokens[0, 0]), ckpt.config.eos_token_id)
  want = tok.decode(to_token_ids(ckpt.config, np.asarray(kept, np.int64)).tolist())
  assert direct[2]["generated_queries"]["ko"] == [want]
  # Not a vacuous comparison: the warm-started generator writes words.
  assert any(q for r in direct for qs in r["generated_queries"].values() for q in qs)


@pytest.mark.parametrize("runner", [None, ["--runner=DirectRunner"]], ids=["local", "beam"])
def test_beam_generate_takes_bert2bert_and_equals_direct(checkpoints, corpus, direct, tmp_path,
                                                         runner):  # fmt: skip
  _, path = checkpoints
  out = str(tmp_path / "beam")
  stats = beam_generate.generate(corpus, path, out, LANGUAGES, shard_size=2, settings=SETTINGS,
                                 batch_size=2, beam_args=runner)  # fmt: skip
  assert [s["passages"] for s in stats] == [2, 1]
  assert sum(s["questions"] for s in stats) == len(PASSAGES) * len(LANGUAGES)
  files = [os.path.join(out, f"questions_{i:05d}.jsonl") for i in range(2)]
  records = _records(files)
  _well_formed(records)
  assert records == direct


def test_beam_generate_resolves_language_tags_and_refuses_encoders(checkpoints, corpus, tmp_path):
  """``language_tags='auto'`` resolves from the generator's metadata (untagged here), and a
  checkpoint that is not an encoder-decoder is a one-line error naming it."""
  backbone, path = checkpoints
  work = beam_generate.GenerateShardWork(corpus, path, str(tmp_path), LANGUAGES,
                                         settings=xqg.DecodeSettings(strategy="greedy"))  # fmt: skip
  work.setup()
  assert work.generator.settings.language_tags == "no" and work.generator.restricted
  assert work.fingerprint == orbax_io.load_checkpoint(path).fingerprint
  bad = beam_generate.GenerateShardWork(corpus, backbone, str(tmp_path), LANGUAGES)
  with pytest.raises(ValueError) as e:
    bad.setup()
  assert str(e.value).startswith(f"{backbone}: model_kind='retrieval'; generation needs")
  assert "\n" not in str(e.value)


def test_generate_command_equals_direct(checkpoints, corpus, direct, tmp_path):
  _, path = checkpoints
  out = tmp_path / "cli.jsonl"
  argv = [
    "generate", f"--checkpoint={path}", f"--corpus={corpus}", f"--output={out}",
    "--languages=ja,ko", "--strategy=greedy", "--max_input_length=24", "--max_decode_length=5",
    "--batch_size=2", "--no_progress",
  ]  # fmt: skip
  gin.clear_config()
  assert cli.main(argv) == 0
  assert _records([str(out)]) == direct
