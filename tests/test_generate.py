"""``xtr-jax generate``: output layouts, agreement with direct decoding, crash-resume, errors."""

import json

import flax.linen as nn
import jax
import numpy as np
import pytest
import sentencepiece as spm

import gin
from xtr_jax import cli
from xtr_jax.checkpoints.orbax_io import save_checkpoint
from xtr_jax.data.vocab import train_sentencepiece
from xtr_jax.models import decoding, generate_cli, t5
from xtr_jax.models.config import tiny_config

PASSAGES = [
  ("p1", "The river flows through the old town and into the sea.", "River"),
  ("p2", "Mount Fuji is the highest mountain in Japan.", "Fuji"),
  ("p3", "Seoul is the capital of South Korea.", ""),
  ("p4", "Tea is grown on the hills of Darjeeling.", "Tea"),
  ("p5", "The library holds a million books.", "Library"),
]
TEXTS = [t for _, t, _ in PASSAGES] + [
  "Generate a Japanese question for this passage:",
  "Generate a Korean question for this passage:",
  "何 ですか 日本 の 山",
  "무엇 입니까 한국 의 수도",
] * 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("gen")
  vocab = train_sentencepiece(TEXTS, str(root / "spm"), 120)
  size = spm.SentencePieceProcessor(model_file=vocab).get_piece_size()
  config = tiny_config(vocab_size=max(size, 128), d_model=32, d_kv=8, num_heads=4, d_ff=64)
  params = nn.meta.unbox(t5.init_params(config, jax.random.PRNGKey(0)))
  ckpt = str(root / "ckpt")
  save_checkpoint(ckpt, params, config, model_kind="mt5", extra={"vocabulary": vocab})
  corpus = root / "corpus.tsv"
  corpus.write_text(
    "id\ttext\ttitle\n" + "".join(f"{i}\t{t}\t{ti}\n" for i, t, ti in PASSAGES), "utf-8"
  )
  return dict(root=root, vocab=vocab, config=config, params=params, ckpt=ckpt, corpus=str(corpus))


@pytest.fixture(autouse=True)
def _fresh_gin():
  gin.clear_config()  # each main parses (and locks) gin once per process otherwise
  yield
  gin.clear_config()


def _args(s, output, *extra):
  return [
    "generate",
    f"--checkpoint={s['ckpt']}",
    f"--corpus={s['corpus']}",
    f"--output={output}",
    "--max_input_length=32",
    "--max_decode_length=8",
    "--batch_size=2",
    "--no_progress",
    *extra,
  ]


def _lines(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_prompt_matches_the_data_wing_task():
  from xtr_jax.data.preprocessors import xqg_prompt  # noqa: PLC0415

  assert generate_cli.XQG_PROMPT.format(language="Thai") == xqg_prompt("Thai")
  assert generate_cli.xqg_input("ja", "Fuji", "A mountain.") == (
    "Generate a Japanese question for this passage: Fuji A mountain."
  )


def test_greedy_output_layout_and_agreement_with_direct_decoding(setup):
  out = setup["root"] / "greedy.jsonl"
  swim = setup["root"] / "greedy_swim.jsonl"
  args = _args(setup, out, "--languages=ja,ko", "--strategy=greedy", f"--swim_ir_output={swim}")
  assert cli.main(args) == 0
  records = _lines(out)
  assert [r["docid"] for r in records] == [p[0] for p in PASSAGES]
  assert all(sorted(r["generated_queries"]) == ["ja", "ko"] for r in records)
  # Independent check: tokenize the prompt here and decode with decoding.generate.
  sp = spm.SentencePieceProcessor(model_file=setup["vocab"])
  pid, text, title = PASSAGES[2]
  prompt = f"Generate a Korean question for this passage: {text}"  # empty title: no space
  ids = np.zeros((1, 32), np.int32)
  row = sp.encode(prompt)[:31] + [1]
  ids[0, : len(row)] = row
  tokens = decoding.generate(
    setup["params"], ids, None, config=setup["config"], strategy="greedy", max_decode_length=8
  ).tokens[0, 0]
  ids = [i if i < sp.get_piece_size() else sp.unk_id() for i in np.asarray(tokens).tolist()]
  expected = sp.decode(decoding.trim_at_eos(ids))
  assert records[2]["generated_queries"]["ko"] == [expected]
  swim_records = _lines(swim)
  assert len(swim_records) == len(PASSAGES) * 2
  assert set(swim_records[0]) == {"_id", "lang", "code", "query", "title", "text"}
  by_id = {r["_id"]: r for r in swim_records}
  r = by_id[f"{pid}-ko-0"]
  assert (r["lang"], r["code"], r["query"], r["text"]) == ("Korean", "ko", expected, text)


def test_crash_then_resume_writes_the_same_bytes(setup):
  flags = ["--languages=ja,th", "--strategy=topk", "--num_questions=2", "--seed=3"]
  full = setup["root"] / "full.jsonl"
  assert cli.main(_args(setup, full, *flags, f"--swim_ir_output={full}.swim")) == 0
  part = setup["root"] / "part.jsonl"
  swim = f"{part}.swim"
  assert cli.main(_args(setup, part, *flags, f"--swim_ir_output={swim}", "--max_batches=1")) == 0
  assert len(_lines(part)) == 2
  # Simulate a crash in the middle of the next batch: half-written lines in both files.
  with open(part, "ab") as f:
    f.write(b'{"docid": "p3", "generated_que')
  with open(swim, "ab") as f:
    f.write(b'{"_id": "p3-ja-0", "la')
  assert cli.main(_args(setup, part, *flags, f"--swim_ir_output={swim}")) == 0
  assert part.read_bytes() == full.read_bytes()
  assert open(swim, "rb").read() == open(f"{full}.swim", "rb").read()
  records = _lines(full)
  assert all(len(q) == 2 for r in records for q in r["generated_queries"].values())
  # A finished run is a no-op when rerun.
  assert cli.main(_args(setup, part, *flags, f"--swim_ir_output={swim}")) == 0
  assert part.read_bytes() == full.read_bytes()


def test_resume_with_other_settings_is_refused(setup):
  out = setup["root"] / "mismatch.jsonl"
  base = ["--languages=ja", "--strategy=greedy"]
  assert cli.main(_args(setup, out, *base, "--max_batches=1")) == 0
  with pytest.raises(ValueError, match="settings differ: languages"):
    cli.main(_args(setup, out, "--languages=ko", "--strategy=greedy"))


def test_output_without_progress_is_not_overwritten(setup):
  out = setup["root"] / "foreign.jsonl"
  out.write_text('{"docid": "x", "generated_queries": {}}\n')
  with pytest.raises(FileExistsError, match="progress.json does not"):
    cli.main(_args(setup, out, "--languages=ja", "--strategy=greedy"))


@pytest.mark.parametrize(
  "flags, message",
  [
    (["--languages=xx"], "unknown language code 'xx'"),
    (["--languages=ja", "--strategy=greedy", "--num_questions=2"], "one question per prompt"),
    (["--languages=ja", "--strategy=beam", "--num_questions=5"], "exceeds --beam_size=4"),
  ],
)
def test_bad_flags_are_explained(setup, capsys, flags, message):
  with pytest.raises(SystemExit):
    cli.main(_args(setup, setup["root"] / "bad.jsonl", *flags))
  assert message in capsys.readouterr().err


def test_encoder_checkpoint_is_rejected(setup, capsys):
  from xtr_jax.models.xtr import RetrievalEncoder  # noqa: PLC0415

  params = nn.meta.unbox(
    t5.init_params(setup["config"], jax.random.PRNGKey(0), lambda c: RetrievalEncoder(c))
  )
  ckpt = str(setup["root"] / "retrieval")
  save_checkpoint(ckpt, params, setup["config"], model_kind="retrieval")
  args = _args(setup, setup["root"] / "r.jsonl", "--languages=ja")
  args[1] = f"--checkpoint={ckpt}"
  with pytest.raises(SystemExit):
    cli.main(args)
  assert "model_kind='retrieval'" in capsys.readouterr().err
