"""``xtr-jax generate``: output layouts, agreement with direct decoding, crash-resume, errors."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm

import gin
from xtr_jax import cli
from xtr_jax.checkpoints.orbax_io import save_checkpoint
from xtr_jax.data import xqg_prompt as prompt
from xtr_jax.data.vocab import train_sentencepiece
from xtr_jax.models import decoding, t5
from xtr_jax.models.config import tiny_config
from xtr_jax.xqg import language_tags

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

  assert prompt.XQG_PROMPT.format(language="Thai") == xqg_prompt("Thai")
  assert prompt.xqg_input("ja", "Fuji", "A mountain.") == (
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
  # The CLI never emits the unk piece (unless --allow_unk).
  tokens = decoding.generate(
    setup["params"],
    ids,
    None,
    config=setup["config"],
    strategy="greedy",
    max_decode_length=8,
    suppress_ids=(sp.unk_id(),),
  ).tokens[0, 0]
  assert sp.unk_id() not in np.asarray(tokens).tolist()
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


def test_resume_with_other_settings_is_refused(setup, capsys):
  out = setup["root"] / "mismatch.jsonl"
  base = ["--languages=ja", "--strategy=greedy"]
  assert cli.main(_args(setup, out, *base, "--max_batches=1")) == 0
  before = out.read_bytes()
  assert cli.main(_args(setup, out, "--languages=ko", "--strategy=greedy")) == cli.USAGE_EXIT
  assert "settings differ: languages: was ['ja'], now ['ko']" in capsys.readouterr().err
  assert out.read_bytes() == before


def test_output_without_progress_is_not_overwritten(setup, capsys):
  out = setup["root"] / "foreign.jsonl"
  out.write_text('{"docid": "x", "generated_queries": {}}\n')
  assert cli.main(_args(setup, out, "--languages=ja", "--strategy=greedy")) == cli.USAGE_EXIT
  assert "progress.json does not" in capsys.readouterr().err
  assert out.read_text() == '{"docid": "x", "generated_queries": {}}\n'


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


# ------------------------------------------------------------------------- language tags


def _shift_step_fn(vocab: int):
  """A model whose next token is always (current + 1) mod vocab, with certainty."""

  def step_fn(cache, token_ids):
    nxt = (token_ids[:, 0] + 1) % vocab
    return jax.nn.one_hot(nxt, vocab) * 20.0, cache

  return step_fn


def test_per_row_start_ids_and_vocab_limit_in_every_strategy():
  step_fn = _shift_step_fn(8)
  start = jnp.array([0, 2], jnp.int32)
  tokens, _ = decoding.temperature_sample(step_fn, jnp.zeros(()), 2, 3, start_id=start, eos_id=7)
  assert np.asarray(tokens).tolist() == [[1, 2, 3], [3, 4, 5]]
  beams, _ = decoding.beam_search(step_fn, jnp.zeros(()), 2, 2, 3, start_id=start, eos_id=7)
  assert np.asarray(beams[:, 0]).tolist() == [[1, 2, 3], [3, 4, 5]]
  # Ids at or past vocab_limit are never produced: from 4 the model wants 5 (masked), so the
  # first id is the best allowed one (all tie at 0: id 0), then 0 -> 1.
  limited, _ = decoding.temperature_sample(
    step_fn, jnp.zeros(()), 1, 2, start_id=4, eos_id=7, vocab_limit=5
  )
  assert np.asarray(limited).tolist() == [[0, 1]]


def test_suppressed_ids_are_never_produced_in_any_strategy():
  # From 2 the model is certain of 3; with 3 suppressed every strategy takes the best allowed
  # id instead (all tie: the lowest, 0), then follows the model again (0 -> 1).
  step_fn = _shift_step_fn(8)
  greedy, _ = decoding.temperature_sample(
    step_fn, jnp.zeros(()), 1, 2, start_id=2, eos_id=7, suppress_ids=(3,)
  )
  assert np.asarray(greedy).tolist() == [[0, 1]]
  sampled, _ = decoding.temperature_sample(
    step_fn, jnp.zeros(()), 64, 1, jax.random.PRNGKey(0), start_id=2, eos_id=7, suppress_ids=(3,)
  )
  assert 3 not in np.asarray(sampled).ravel().tolist()
  beams, _ = decoding.beam_search(
    step_fn, jnp.zeros(()), 1, 2, 2, start_id=2, eos_id=7, suppress_ids=(3,)
  )
  assert 3 not in np.asarray(beams).ravel().tolist()
  logits = decoding.limit_vocab(jnp.zeros((1, 6)), 5, (2,))
  allowed = np.asarray(logits) > decoding.NEG_INF / 2
  assert allowed.tolist() == [[True, True, False, True, True, False]]


def test_prompt_prefixes_are_the_first_ids_of_every_prompt(setup):
  sp = spm.SentencePieceProcessor(model_file=setup["vocab"])
  prefixes = language_tags.prompt_prefixes(sp, ("ja", "ko", "th"))
  for code in ("ja", "ko", "th"):
    for _, text, title in PASSAGES:
      ids = sp.encode(prompt.xqg_input(code, title, text))
      assert ids[: len(prefixes[code])] == prefixes[code]
  batch = np.zeros((2, 40), np.int32)
  for i, c in enumerate(("ko", "ja")):
    row = sp.encode(prompt.xqg_input(c, "T", "x y"))[:40]
    batch[i, : len(row)] = row
  assert language_tags.languages_of(batch, prefixes) == ["ko", "ja"]


def test_tagged_batches_replace_only_the_decoder_start(setup):
  sp = spm.SentencePieceProcessor(model_file=setup["vocab"])
  size = sp.get_piece_size()
  rows = [sp.encode(prompt.xqg_input(c, "", PASSAGES[0][1]))[:60] for c in ("ja", "ko")]
  enc = np.zeros((2, 64), np.int32)
  for i, r in enumerate(rows):
    enc[i, : len(r)] = r
  targets = np.array([[5, 6, 1, 0], [7, 1, 0, 0]], np.int32)
  dec = np.concatenate([np.zeros((2, 1), np.int32), targets[:, :-1]], axis=1)
  batch = {
    "encoder_input_tokens": enc,
    "decoder_input_tokens": dec,
    "decoder_target_tokens": targets,
    "decoder_loss_weights": (targets > 0).astype(np.int32),
  }
  factory = language_tags.tagged_batches(
    lambda *a: iter([batch]), setup["vocab"], model_vocab_size=size + language_tags.NUM_TAGS
  )
  (out,) = list(factory(0, 0, 1))
  assert factory.language_tags is True  # what the trainer's export records in the metadata
  ja, ko = language_tags.tag_id("ja", size), language_tags.tag_id("ko", size)
  assert out["decoder_input_tokens"][:, 0].tolist() == [ja, ko]
  assert (out["decoder_input_tokens"][:, 1:] == dec[:, 1:]).all()
  assert out["decoder_target_tokens"] is targets and (batch["decoder_input_tokens"] == dec).all()
  with pytest.raises(ValueError, match="does not start with an xQG prompt"):
    bad = dict(batch, encoder_input_tokens=np.full((2, 64), 5, np.int32))
    list(language_tags.tagged_batches(lambda *a: iter([bad]), setup["vocab"], size + 64)())
  with pytest.raises(ValueError, match=f"model vocab_size >= {size} \\+ 37"):
    language_tags.tagged_batches(lambda *a: iter([]), setup["vocab"], model_vocab_size=size)


def test_tagged_checkpoint_decodes_from_the_language_tag(setup, capsys):
  sp = spm.SentencePieceProcessor(model_file=setup["vocab"])
  size = sp.get_piece_size()
  config = tiny_config(vocab_size=size + 64, d_model=32, d_kv=8, num_heads=4, d_ff=64)
  params = nn.meta.unbox(t5.init_params(config, jax.random.PRNGKey(1)))
  run_dir = setup["root"] / "tagged_run"
  ckpt = str(run_dir / "final")
  vocab = {"vocabulary": setup["vocab"]}
  # --language_tags auto follows the checkpoint's metadata; a checkpoint exported before
  # the key existed falls back to the training run's recorded gin config.
  save_checkpoint(ckpt, params, config, model_kind="mt5", extra=vocab)
  assert not language_tags.trained_with_language_tags(ckpt)
  (run_dir / "config.gin").write_text("trainer.train.train_batches = @tagged_batches()\n")
  assert language_tags.trained_with_language_tags(ckpt)
  save_checkpoint(ckpt, params, config, model_kind="mt5", extra={**vocab, "language_tags": False})
  assert not language_tags.trained_with_language_tags(ckpt)  # the metadata wins
  (run_dir / "config.gin").unlink()
  save_checkpoint(ckpt, params, config, model_kind="mt5", extra={**vocab, "language_tags": True})
  assert language_tags.trained_with_language_tags(ckpt)
  out = setup["root"] / "tagged.jsonl"
  args = _args(setup, out, "--languages=ja,ko", "--strategy=greedy")
  args[1] = f"--checkpoint={ckpt}"
  assert cli.main(args) == 0
  # Independent: the prompt decoded from the Korean tag, ids past the vocabulary masked.
  _, text, title = PASSAGES[1]
  ids = np.zeros((1, 32), np.int32)
  row = sp.encode(prompt.xqg_input("ko", title, text))[:31] + [1]
  ids[0, : len(row)] = row
  tokens = decoding.generate(
    params,
    ids,
    None,
    config=config,
    strategy="greedy",
    max_decode_length=8,
    start_ids=jnp.array([language_tags.tag_id("ko", size)]),
    vocab_limit=size,
  ).tokens[0, 0]
  assert int(np.max(np.asarray(tokens))) < size
  expected = sp.decode(decoding.trim_at_eos(np.asarray(tokens)))
  assert _lines(out)[1]["generated_queries"]["ko"] == [expected]
  # A checkpoint without room for the tags: asking for them is explained.
  small = tiny_config(vocab_size=size, d_model=32, d_kv=8, num_heads=4, d_ff=64)
  small_ckpt = str(setup["root"] / "untagged")
  save_checkpoint(
    small_ckpt,
    nn.meta.unbox(t5.init_params(small, jax.random.PRNGKey(1))),
    small,
    model_kind="mt5",
    extra={"vocabulary": setup["vocab"]},
  )
  args = _args(setup, setup["root"] / "t2.jsonl", "--languages=ja", "--language_tags=yes")
  args[1] = f"--checkpoint={small_ckpt}"
  with pytest.raises(SystemExit):
    cli.main(args)
  assert "not trained with language tags" in capsys.readouterr().err


def test_trainer_export_records_language_tags_for_auto(setup):
  from xtr_jax.training import trainer  # noqa: PLC0415

  config = tiny_config(vocab_size=600, d_model=32, d_kv=8, num_heads=4, d_ff=64)
  params = nn.meta.unbox(t5.init_params(config, jax.random.PRNGKey(2)))
  task = trainer.ModelTask(config, kind="xqg")
  for tagged in (True, False):
    out = str(setup["root"] / f"export_{tagged}" / "final")
    trainer.export_final(out, params, task, setup["vocab"], language_tags=tagged)
    assert language_tags.trained_with_language_tags(out) is tagged


def test_script_share_counts_the_dominant_script():
  from xtr_jax.xqg import script_share  # noqa: PLC0415

  pairs = [
    ("ja", "東京はどこですか?"),  # Han + Kana
    ("ja", "Where is Tokyo?"),
    ("ko", "서울은 어디입니까? Seoul"),  # Hangul dominates the Latin name
    ("ru", "Кто мэр Bronoun?"),  # 6 Cyrillic letters vs 7 Latin: not in script
    ("ar", ""),
  ]
  assert script_share.shares(pairs) == {"ar": (0, 1), "ja": (1, 2), "ko": (1, 1), "ru": (0, 1)}
  table = script_share.share_table(script_share.shares(pairs))
  assert "| ja | Han/Kana | 50.0% of 2 | - |" in table
  assert table.endswith("| all | | 40.0% of 5 (macro 37.5%) | |")


# ------------------------------------------------------------------- remote (gs://) output


_RESUME_FLAGS = ["--languages=ja,th", "--strategy=topk", "--num_questions=2", "--seed=3"]


def test_gcs_output_resumes_to_the_bytes_of_a_local_run(setup, memory_gcs, tmp_path):
  """``xtr-jax generate --output gs://...``: a partial run, a crash that left longer objects
  than the progress file records, and the rerun end with the bytes of one local run."""
  from xtr_jax import io as xio  # noqa: PLC0415

  full = tmp_path / "full.jsonl"
  assert cli.main(_args(setup, full, *_RESUME_FLAGS, f"--swim_ir_output={full}.swim")) == 0
  part, swim = "gs://bucket/gen/part.jsonl", "gs://bucket/gen/part.swim.jsonl"
  flags = [*_RESUME_FLAGS, f"--swim_ir_output={swim}"]
  assert cli.main(_args(setup, part, *flags, "--max_batches=1")) == 0
  assert len(xio.read_text(part).splitlines()) == 2
  assert json.loads(xio.read_text(part + ".progress.json"))["state"]["passages"] == 2
  # A crash between uploading the files and the progress file: objects past the record.
  xio.atomic_write_bytes(part, xio.read_bytes(part) + b'{"docid": "p3", "generated_que')
  xio.atomic_write_bytes(swim, xio.read_bytes(swim) + b'{"_id": "p3-ja-0", "la')
  assert cli.main(_args(setup, part, *flags)) == 0
  assert xio.read_bytes(part) == full.read_bytes()
  assert xio.read_bytes(swim) == (tmp_path / "full.jsonl.swim").read_bytes()
  assert cli.main(_args(setup, part, *flags)) == 0  # finished: a no-op
  assert xio.read_bytes(part) == full.read_bytes()
  assert sorted(memory_gcs) == [
    "bucket/gen/part.jsonl",
    "bucket/gen/part.jsonl.progress.json",
    "bucket/gen/part.swim.jsonl",
  ]
  assert not (tmp_path / "gs:").exists() and not os.path.exists("gs:")  # nothing went local


class _Preempted(RuntimeError):
  pass


class _StopsAfter:
  """A generator that raises on its ``calls``-th batch (a preempted job)."""

  def __init__(self, generator, calls: int, on_call=None):
    self.generator, self.calls, self.on_call = generator, calls, on_call
    self.settings, self.round_rows = generator.settings, generator.round_rows

  def __call__(self, *args):
    if self.on_call is not None:
      self.on_call()
    self.calls -= 1
    if self.calls == 0:
      raise _Preempted("preempted")
    return self.generator(*args)


def test_gcs_output_commits_on_its_interval_and_when_stopped(setup, memory_gcs, tmp_path):
  """Remote output is uploaded every ``remote_commit_seconds``, not per batch; a run stopped
  by an error still records its finished batches, and the rerun equals a local run."""
  from xtr_jax import io as xio  # noqa: PLC0415
  from xtr_jax.xqg.generate import DecodeSettings, generate_corpus, load_generator  # noqa: PLC0415

  settings = DecodeSettings(
    strategy="topk", num_questions=2, max_input_length=32, max_decode_length=8
  )
  gen, _ = load_generator(setup["ckpt"], settings)
  kw = dict(batch_size=2, seed=5, progress=False)
  local = str(tmp_path / "local.jsonl")
  generate_corpus(setup["corpus"], local, gen, ["ja", "ko"], **kw)
  out = "gs://bucket/q/out.jsonl"
  seen = []  # what the bucket held when each batch started: nothing before the stop

  def look():
    seen.append(sorted(memory_gcs))

  with pytest.raises(_Preempted):
    generate_corpus(setup["corpus"], out, _StopsAfter(gen, 3, look), ["ja", "ko"],
                    remote_commit_seconds=1e9, **kw)  # fmt: skip
  assert seen == [[], [], []]
  state = json.loads(xio.read_text(out + ".progress.json"))["state"]
  assert state["passages"] == 4 and state["output_bytes"] == xio.getsize(out)
  assert xio.read_bytes(out) == open(local, "rb").read()[: state["output_bytes"]]
  stats = generate_corpus(setup["corpus"], out, gen, ["ja", "ko"], remote_commit_seconds=0, **kw)
  assert stats["passages"] == 5 and stats["new_passages"] == 1
  assert xio.read_bytes(out) == open(local, "rb").read()
