"""``xtr-jax demo``: the whole XTR + xQG pipeline in one command.

Stages (each prints progress, each leaves its artefacts in ``--output_dir`` and is skipped
when its output already exists, so an interrupted demo resumes where it stopped):

  1 data        the shipped synthetic sample (or ../shared/data with --data shared)
  2 vocab       a SentencePiece vocabulary trained on the data (for the xQG generator)
  3 train_xtr   the XTR retriever. --retriever me5 (default): multilingual-E5-small (the
                embedded ``me5-small``) with a PCA-initialised 128-d projection (xtr-jax
                init-projection), fine-tuned briefly (gin/runs/train_xtr_me5_demo.gin).
                --retriever scratch: a tiny mT5-shaped XTR trained from scratch on the
                SentencePiece vocabulary (gin/runs/train_xtr_cpu.gin)
  4 train_xqg   a tiny xQG generator (xtr-jax train, gin/runs/train_xqg_cpu.gin), from
                scratch either way: it is independent of the retriever
  5 generate    questions in every language for every passage (xtr-jax generate); with
                --generate_passages N only for a seeded random sample of N passages
  6 index       the plain and the xQG-augmented ScaNN token index (xtr-jax index); with me5
                also the zero-shot one: XTR over mE5-small's raw 384-d token states, exact
                (brute-force) token search
  7 search      dev queries against each (xtr-jax search)
  8 evaluate    per-language Recall/MRR/nDCG/R@kt, each index paired against the plain one

Every stage runs the same subcommand a user would run; the demo only chooses flags.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import time

from xtr_jax import cli
from xtr_jax.cli import ArgumentParser
from xtr_jax.xqg import script_share

SHARED_DEFAULT = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class Scale:
  """Sizes per preset: 'default' fits the 10-minute budget, 'smoke' is the test's."""

  num_towns: int
  vocab_size: int
  xtr_steps: int  # --retriever scratch
  xqg_steps: int
  batch_size: int  # the from-scratch models' (XTR scratch, xQG)
  generate_passages: int | None  # None: all passages; N: a seeded random sample of N
  num_questions: int
  strategy: str  # xQG decoding: greedy | topk | beam
  augment_weight: float  # scale of the added question vectors (xtr-jax index)
  augment_mode: str  # tokens | pooled_per_language
  # --retriever me5: the fine-tune from multilingual-E5-small (runs/train_xtr_me5_demo.gin)
  me5_steps: int
  me5_batch_size: int
  me5_passage_length: int  # covers the sample's passages; XOR mini's are longer
  sample_texts: int  # queries and passages whose token states initialise the projection


SCALES = {
  "default": Scale(
    num_towns=120,
    vocab_size=1000,
    xtr_steps=300,
    xqg_steps=300,
    batch_size=32,
    generate_passages=None,
    num_questions=1,
    strategy="greedy",
    augment_weight=0.25,
    augment_mode="tokens",
    me5_steps=60,
    me5_batch_size=16,
    me5_passage_length=72,
    sample_texts=500,
  ),
  "smoke": Scale(
    num_towns=24,
    vocab_size=400,
    xtr_steps=4,
    xqg_steps=4,
    batch_size=8,
    generate_passages=None,
    num_questions=1,
    strategy="greedy",
    augment_weight=0.25,
    augment_mode="tokens",
    me5_steps=2,
    me5_batch_size=4,
    me5_passage_length=72,
    sample_texts=32,
  ),
}
# --data shared: 9,310 real passages, 8k vocabulary for 13 languages; generation (the slow
# stage on CPU) is bounded to a seeded random sample of passages, never chosen by the queries.
SHARED_SCALES = {
  "default": dataclasses.replace(
    SCALES["default"],
    vocab_size=8000,
    xtr_steps=300,
    xqg_steps=200,
    generate_passages=1000,
    me5_passage_length=128,
  ),
  "smoke": dataclasses.replace(SCALES["smoke"], vocab_size=8000, generate_passages=16),
}
RETRIEVERS = ("me5", "scratch")
EMBEDDED_BACKBONE = "me5-small"  # xtr_jax/checkpoints/embedded.py
# Tag slots past the SentencePiece vocabulary for the xQG language tags (>= NUM_TAGS = 37).
TAG_SLOTS = 64


@dataclasses.dataclass(frozen=True)
class Paths:
  corpus: str
  dev: str
  qrels: str
  pairs_glob: str
  languages: list[str]  # dev languages
  generate_languages: list[str]  # those the generator has training pairs in


def _say(msg: str) -> None:
  print(msg, flush=True)


def _run(argv: list[str]) -> None:
  """Runs one ``xtr-jax`` subcommand in-process; a non-zero exit stops the demo."""
  _say("    $ xtr-jax " + " ".join(argv))
  code = cli.main(argv)
  if code:
    raise SystemExit(f"demo: `xtr-jax {argv[0]}` failed with exit code {code}")


def _data(args, scale: Scale, out: pathlib.Path) -> Paths:
  if args.data == "shared":
    root = pathlib.Path(args.shared_dir)
    needed = [root / "xor_mini" / "corpus.tsv", root / "xor_mini" / "dev.jsonl"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
      raise SystemExit(f"demo: --data shared needs {missing}; see --shared_dir")
    pairs_dir = root / "pairs_swim_ir_layout" / "cross_lingual"
    dev_languages = ["ar", "bn", "fi", "ja", "ko", "ru", "te"]
    trained = {p.stem for p in pairs_dir.glob("*.jsonl")}
    return Paths(
      corpus=str(root / "xor_mini" / "corpus.tsv"),
      dev=str(root / "xor_mini" / "dev.jsonl"),
      qrels=str(root / "xor_mini" / "dev.qrels"),
      pairs_glob=str(pairs_dir / "*.jsonl"),
      languages=dev_languages,
      # bn, ko, te have no real pairs there: the generator never saw their scripts.
      generate_languages=[c for c in dev_languages if c in trained],
    )
  from xtr_jax.experiments import sample_data

  data_dir = out / "data"
  if not (data_dir / "README.md").is_file():
    sample_data.write_sample(data_dir, num_towns=scale.num_towns)
  return Paths(
    corpus=str(data_dir / "corpus.tsv"),
    dev=str(data_dir / "xor" / "dev.jsonl"),
    qrels=str(data_dir / "xor" / "dev.qrels"),
    pairs_glob=str(data_dir / "swim_ir" / "cross_lingual" / "*.jsonl"),
    languages=list(sample_data.LANGUAGES),
    generate_languages=list(sample_data.LANGUAGES),
  )


def sample_corpus(corpus: str, output: pathlib.Path, n: int, seed: int = 0) -> int:
  """Writes a seeded uniform random sample of ``n`` passages of ``corpus`` (same layout).

  Bounds generation on big corpora; uniform so that gold passages are not favoured (xor_mini
  lists its gold paragraphs first). Returns the number of passages written.
  """
  import random  # noqa: PLC0415

  from xtr_jax.data import formats  # noqa: PLC0415

  rows = list(formats.read_corpus(corpus))
  keep = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
  formats.write_corpus(output, [rows[i] for i in keep])
  return len(keep)


def _schedule_bindings(steps: int, checkpoint_every: int | None = None) -> list[str]:
  """Checkpoint, eval and log cadence for a run of ``steps`` steps (any model)."""
  return [
    f"--gin.TRAIN_STEPS={steps}",
    f"--gin.trainer.train.checkpoint_every={checkpoint_every or max(steps // 2, 1)}",
    f"--gin.trainer.train.eval_every={max(steps // 3, 1)}",
    "--gin.trainer.train.eval_steps=8",  # a progress signal here, not a measurement
    f"--gin.trainer.train.log_every={max(steps // 10, 1)}",
  ]


def _train_bindings(paths: Paths, vocab: str, scale: Scale, steps: int) -> list[str]:
  """The from-scratch models' bindings: the data, the SentencePiece vocabulary, the sizes."""
  return [
    f"--gin.PAIRS='{paths.pairs_glob}'",
    f"--gin.VOCAB='{vocab}'",
    f"--gin.VOCAB_SIZE={scale.vocab_size}",
    f"--gin.BATCH_SIZE={scale.batch_size}",
    *_schedule_bindings(steps),
  ]


def _me5_train_bindings(paths: Paths, init: pathlib.Path, scale: Scale, steps: int) -> list[str]:
  """The mE5 fine-tune's bindings; INIT also names the batches' tokenizer (mE5's own)."""
  return [
    f"--gin.INIT='{init}'",
    f"--gin.PAIRS='{paths.pairs_glob}'",
    f"--gin.BATCH_SIZE={scale.me5_batch_size}",
    f"--gin.PASSAGE_LENGTH={scale.me5_passage_length}",
    # ~10% warm-up whatever the budget: the recipe's fixed 30 would outlast a short run.
    f"--gin.optimizers.learning_rate_schedule.warmup_steps={max(steps // 10, 1)}",
    # One orbax checkpoint, at the end: each holds ~0.6 GB (params + AdamW moments) and the
    # run is minutes long, so a mid-run one costs more than it saves.
    *_schedule_bindings(steps, checkpoint_every=steps),
  ]


@dataclasses.dataclass(frozen=True)
class System:
  """One row of the summary: an index of the corpus, its run and its evaluation."""

  name: str  # file stem: index_{name}/, run_{name}.trec, eval_{name}.{md,json}
  label: str  # its row in summary.md
  checkpoint: str
  index_args: tuple[str, ...] = ()


def _check_output_dir(out: pathlib.Path, retriever: str, data: str) -> None:
  """Refuses a folder made with another --retriever/--data, whose artefacts (indexes, runs)
  would otherwise be taken as this run's by the skip-if-present resumption."""
  marker = out / "demo.json"
  want = {"retriever": retriever, "data": data}
  if marker.is_file():
    have = json.loads(marker.read_text(encoding="utf-8"))
  elif (out / "xtr" / "final").exists():  # written before the marker existed: scratch XTR
    have = {"retriever": "scratch", "data": data}
  else:
    have = want
  if have != want:
    raise SystemExit(
      f"demo: {out} holds a run with --retriever {have['retriever']} --data {have['data']}; "
      f"use another --output_dir for --retriever {retriever} --data {data}"
    )
  marker.write_text(json.dumps(want) + "\n", encoding="utf-8")


def _stage(number: int, total: int, name: str, done: bool) -> float:
  state = "done already, skipping" if done else "running"
  _say(f"\n[{number}/{total}] {name} ({state})")
  return time.time()


def _generated_pairs(path: pathlib.Path):
  """(language, question) of every generated question."""
  with open(path, encoding="utf-8") as f:
    for line in f:
      for code, qs in json.loads(line)["generated_queries"].items():
        yield from ((code, q) for q in qs)


def _read_eval(path: str) -> dict:
  """``xtr-jax evaluate``'s JSON: {'metrics': ..., 'comparison': ... or None}."""
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _fmt(value) -> str:
  return "-" if value is None else f"{value:.1f}"


def summary_table(columns: dict[str, dict], metrics: list[str]) -> str:
  """Per-language table: each metric for every system (percentages).

  ``columns``: header suffix -> ``metrics`` of an evaluation, e.g. ``{"0-shot": ...,
  "": plain, "+xQG": augmented}``; the columns of one metric stay side by side.
  """
  first = next(iter(columns.values()))
  langs = sorted({lang for m in metrics for lang in first[m]["per_lang"]})
  heads = [f"{m} {suffix}".strip() for m in metrics for suffix in columns]
  rows = ["| lang | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
  for lang in langs:
    cells = [_fmt(ev[m]["per_lang"].get(lang)) for m in metrics for ev in columns.values()]
    rows.append(f"| {lang} | " + " | ".join(cells) + " |")
  cells = [_fmt(ev[m]["macro"]) for m in metrics for ev in columns.values()]
  rows.append("| **macro** | " + " | ".join(cells) + " |")
  return "\n".join(rows)


def systems_table(rows: list[tuple[str, dict]], metrics: list[str]) -> str:
  """One row per system: macro of each metric, and its paired difference from the plain index.

  ``rows``: (label, evaluate JSON); a JSON with a ``comparison`` (``evaluate --compare
  run_plain.trec``) gets Δ = mean over the queries of (system - plain) and the paired t-test's
  p; the plain row has none.
  """
  heads = list(metrics) + [f"Δ {m} (p)" for m in metrics]
  out = ["| system | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
  for label, ev in rows:
    cells = [_fmt(ev["metrics"][m]["macro"]) for m in metrics]
    comparison = ev.get("comparison") or {}
    for m in metrics:
      c = comparison.get(m)
      cells.append("-" if c is None else f"{c['diff']:+.1f} ({c['p_value']:.2g})")
    out.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
  parser = ArgumentParser(prog="xtr-jax demo", description=__doc__.split("\n")[0])
  parser.add_argument("--output_dir", default="demo_output", help="Where every artefact goes.")
  parser.add_argument(
    "--data",
    choices=["sample", "shared"],
    default="sample",
    help="sample: the shipped sample; shared: ../shared/data (XOR mini and the real pairs).",
  )
  parser.add_argument("--shared_dir", default=str(SHARED_DEFAULT), help="For --data shared.")
  parser.add_argument(
    "--scale", choices=sorted(SCALES), default="default", help="Preset of steps and sizes."
  )
  parser.add_argument(
    "--retriever",
    choices=RETRIEVERS,
    default="me5",
    help="me5 (default): XTR fine-tuned briefly from the embedded multilingual-E5-small, "
    "plus its zero-shot row; scratch: the tiny mT5-shaped XTR trained from scratch.",
  )
  parser.add_argument("--xtr_steps", type=int, help="Override the preset's XTR steps.")
  parser.add_argument("--xqg_steps", type=int, help="Override the preset's xQG steps.")
  parser.add_argument(
    "--generate_passages",
    type=int,
    help="Generate questions for a seeded random sample of N passages only (default: all "
    "for the sample, 1000 for --data shared); only those passages are augmented.",
  )
  parser.add_argument("--augment_weight", type=float, help="Override the augmentation weight.")
  args = parser.parse_args(argv)

  scale = (SHARED_SCALES if args.data == "shared" else SCALES)[args.scale]
  if args.generate_passages:
    scale = dataclasses.replace(scale, generate_passages=args.generate_passages)
  if args.augment_weight is not None:
    scale = dataclasses.replace(scale, augment_weight=args.augment_weight)
  if args.xtr_steps:
    scale = dataclasses.replace(scale, xtr_steps=args.xtr_steps, me5_steps=args.xtr_steps)
  if args.xqg_steps:
    scale = dataclasses.replace(scale, xqg_steps=args.xqg_steps)
  me5 = args.retriever == "me5"
  xtr_steps = scale.me5_steps if me5 else scale.xtr_steps
  out = pathlib.Path(args.output_dir).resolve()
  out.mkdir(parents=True, exist_ok=True)
  _check_output_dir(out, args.retriever, args.data)
  start = time.time()
  total = 8
  timings: dict[str, float] = {}

  t = _stage(1, total, f"data ({args.data})", False)
  paths = _data(args, scale, out)
  timings["data"] = time.time() - t

  vocab = str(out / "vocab" / "spm.model")
  t = _stage(2, total, "SentencePiece vocabulary", os.path.exists(vocab))
  if not os.path.exists(vocab):
    argv_vocab = ["train-vocab", "--output", str(out / "vocab" / "spm")]
    argv_vocab += ["--vocab_size", str(scale.vocab_size), "--corpus", paths.corpus]
    argv_vocab += ["--swim_ir_dir", str(pathlib.Path(paths.pairs_glob).parent)]
    _run(argv_vocab)
  timings["vocab"] = time.time() - t

  # xtr/ holds either retriever (demo.json says which): the paths users script stay put.
  xtr_dir, xqg_dir = out / "xtr", out / "xqg"
  if me5:
    init_dir = out / "xtr_init"
    final = xtr_dir / "final"
    what = f"XTR retriever: fine-tune {EMBEDDED_BACKBONE} ({xtr_steps} steps)"
    t = _stage(3, total, what, final.exists())
    if not final.exists():
      if not init_dir.exists():  # written atomically: present means complete
        argv_init = ["init-projection", "--checkpoint", EMBEDDED_BACKBONE, "--output"]
        argv_init += [str(init_dir), "--pairs", paths.pairs_glob]
        _run(argv_init + ["--sample_texts", str(scale.sample_texts)])
        timings["init_projection"] = time.time() - t
      argv_train = ["train", "--gin_file", "runs/train_xtr_me5_demo.gin"]
      argv_train += ["--model_dir", str(xtr_dir)]
      _run(argv_train + _me5_train_bindings(paths, init_dir, scale, xtr_steps))
    timings["train_xtr"] = time.time() - t - timings.get("init_projection", 0.0)
  trained = [(4, "xQG generator", xqg_dir, "runs/train_xqg_cpu.gin", scale.xqg_steps)]
  if not me5:
    trained.insert(0, (3, "XTR retriever", xtr_dir, "runs/train_xtr_cpu.gin", xtr_steps))
  for number, kind, model_dir, gin_file, steps in trained:
    final = model_dir / "final"
    t = _stage(number, total, f"train the {kind} ({steps} steps)", final.exists())
    if not final.exists():
      argv_train = ["train", "--gin_file", gin_file, "--model_dir", str(model_dir)]
      argv_train += _train_bindings(paths, vocab, scale, steps)
      if model_dir == xqg_dir:  # ids past the vocabulary hold the xQG language tags
        argv_train.append(f"--gin.MODEL_VOCAB_SIZE={scale.vocab_size + TAG_SLOTS}")
      _run(argv_train)
    timings[f"train_{model_dir.name}"] = time.time() - t

  generated = out / "generated.jsonl"
  done = (out / "generated.done").exists()
  what = "every passage" if scale.generate_passages is None else "sampled passages"
  t = _stage(5, total, f"generate questions with xQG ({what})", done)
  if not done:
    gen_corpus = paths.corpus
    if scale.generate_passages is not None:
      gen_corpus = str(out / "generate_corpus.tsv")
      n = sample_corpus(paths.corpus, pathlib.Path(gen_corpus), scale.generate_passages)
      _say(f"    {n} passages sampled (seed 0) from {paths.corpus} -> {gen_corpus}")
    argv_gen = ["generate", "--checkpoint", str(xqg_dir / "final"), "--corpus", gen_corpus]
    argv_gen += ["--output", str(generated), "--languages", ",".join(paths.generate_languages)]
    argv_gen += ["--num_questions", str(scale.num_questions), "--strategy", scale.strategy]
    argv_gen += ["--max_decode_length", "32", "--max_input_length", "128", "--batch_size", "16"]
    _run(argv_gen)
    (out / "generated.done").write_text("ok\n")
  timings["generate"] = time.time() - t
  share = script_share.share_table(script_share.shares(_generated_pairs(generated)))
  _say("    questions in the requested language's script:\n" + share)

  plain_label = (
    f"XTR fine-tuned from {EMBEDDED_BACKBONE} ({xtr_steps} steps)"
    if me5
    else f"XTR from scratch ({xtr_steps} steps)"
  )
  augment_args = ("--augment_with", str(generated), "--augment_mode", scale.augment_mode)
  augment_args += ("--augment_weight", str(scale.augment_weight))
  systems = [
    System("plain", plain_label, str(xtr_dir / "final")),
    System("xqg", "+ xQG augmentation", str(xtr_dir / "final"), augment_args),
  ]
  if me5:  # XTR over the backbone's raw states: what the fine-tune starts from
    zero_shot_args = ("--pooling", "token", "--gin.index_settings.backend='brute_force'")
    label = f"{EMBEDDED_BACKBONE} zero-shot (raw 384-d token states)"
    systems.insert(0, System("me5_zeroshot", label, EMBEDDED_BACKBONE, zero_shot_args))
  what = "the plain and the augmented token index" + (" + zero-shot mE5" if me5 else "")
  t = _stage(6, total, f"build {what}", False)
  for system in systems:
    index_dir = out / f"index_{system.name}"
    if (index_dir / "manifest.json").exists():
      _say(f"    {system.name}: exists")
      continue
    argv_index = ["index", "--checkpoint", system.checkpoint, "--corpus", paths.corpus]
    _run(argv_index + ["--output", str(index_dir), *system.index_args])
  timings["index"] = time.time() - t

  t = _stage(7, total, "search the dev queries", False)
  runs = {s.name: out / f"run_{s.name}.trec" for s in systems}
  for system in systems:
    if not runs[system.name].exists():
      argv_search = ["search", "--index", str(out / f"index_{system.name}"), "--queries"]
      _run(argv_search + [paths.dev, "--output", str(runs[system.name]), "--k", "100"])
  timings["search"] = time.time() - t

  t = _stage(8, total, "evaluate", False)
  evals = {}
  for system in systems:
    prefix = out / f"eval_{system.name}"
    argv_eval = ["evaluate", "--run", str(runs[system.name]), "--queries", paths.dev]
    argv_eval += ["--qrels", paths.qrels, "--corpus", paths.corpus, "--output", str(prefix)]
    if system.name != "plain":  # paired against the plain index
      argv_eval += ["--compare", str(runs["plain"])]
    _run(argv_eval)
    evals[system.name] = _read_eval(f"{prefix}.json")
  timings["evaluate"] = time.time() - t

  metrics = ["Recall@20", "MRR@10", "R@2kt"]
  suffixes = {"me5_zeroshot": "0-shot", "plain": "", "xqg": "+xQG"}
  columns = {suffixes[s.name]: evals[s.name]["metrics"] for s in systems}
  n_queries = next(iter(evals["plain"]["metrics"].values()))["counts"]
  n_queries = sum(n_queries.values()) if isinstance(n_queries, dict) else n_queries
  n_aug = len(generated.read_text(encoding="utf-8").splitlines())
  zero_shot_note = (
    f"{EMBEDDED_BACKBONE} zero-shot: XTR scoring over the backbone's raw 384-d token states "
    "(`xtr-jax index --checkpoint me5-small --pooling token`, no projection, exact brute-force "
    "token search), the states the fine-tune starts from. "
    if me5
    else ""
  )
  report = (
    f"# xtr_jax demo ({args.data} data, --retriever {args.retriever})\n\n"
    f"{systems_table([(s.label, evals[s.name]) for s in systems], metrics)}\n\n"
    f"Macro averages over the languages (percent). Δ (p): mean over the {n_queries} dev "
    f"queries of the system's score minus the plain index's, and the paired t-test's p "
    f"(`eval_*.md` has the bootstrap CIs). {zero_shot_note}\n\n"
    f"Per language:\n\n{summary_table(columns, metrics)}\n\n"
    f"xQG: {scale.num_questions} {scale.strategy} question(s) per language for {n_aug} "
    f"passages, token-level augmentation ({scale.augment_mode}) at weight "
    f"{scale.augment_weight}. Share of questions in the requested language's script:\n\n"
    f"{share}\n\n"
    f"Stage seconds: {json.dumps({k: round(v, 1) for k, v in timings.items()})}\n"
    f"Total: {time.time() - start:.0f} s\n"
  )
  (out / "summary.md").write_text(report, encoding="utf-8")
  _say("\n" + report)
  _say(f"All artefacts are in {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
