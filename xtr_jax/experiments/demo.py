"""``xtr-jax demo``: the whole XTR + xQG pipeline in one command.

Stages (each prints progress, each leaves its artefacts in ``--output_dir`` and is skipped
when its output already exists, so an interrupted demo resumes where it stopped; ``demo.json``
keeps the seconds of each stage from the run that did it, shown again when it is skipped):

  1 data        the shipped synthetic sample (or ../shared/data with --data shared)
  2 vocab       a SentencePiece vocabulary trained on the data (for the xQG generator)
  3 train_xtr   the XTR retriever. --retriever me5 (default): multilingual-E5-small (the
                embedded ``me5-small``) with a PCA-initialised 128-d projection (xtr-jax
                init-projection), fine-tuned briefly (gin/runs/train_xtr_me5_demo.gin);
                with --data shared its raw 384-d states, no projection, 200 steps.
                --retriever scratch: a tiny mT5-shaped XTR trained from scratch on the
                SentencePiece vocabulary (gin/runs/train_xtr_cpu.gin)
  4 train_xqg   a tiny xQG generator (xtr-jax train, gin/runs/train_xqg_cpu.gin), from
                scratch either way: it is independent of the retriever
  5 generate    questions in every language for every passage (xtr-jax generate); with
                --generate_passages N only for a seeded random sample of N passages
  6 index       the plain and the xQG-augmented ScaNN token index (xtr-jax index; the
                augmented one reuses the plain one's passage vectors, --reuse_index); with me5
                also the zero-shot one: XTR over mE5-small's raw 384-d token states, exact
                (brute-force) token search
  7 search      dev queries against each (xtr-jax search)
  8 evaluate    per-language Recall/MRR/nDCG/R@kt, each index paired against the plain one

``summary.md`` then holds the systems table, the counts (passages, dev queries, training
pairs, generated questions), each model's training steps and seconds, paired tests between
every two systems, the per-language table, the xQG script share (a language below 80% in its
script is flagged) and the stage seconds.

Every stage runs the same subcommand a user would run; the demo only chooses flags.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import glob
import itertools
import json
import pathlib
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

from xtr_jax import cli
from xtr_jax import io as xio
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
  # 128: a PCA-initialised 128-d projection (compact; on the sample's templated questions it
  # is learnt in 60 steps); 0: none, the raw 384-d states fine-tuned (on real questions the
  # one recipe that beats the zero-shot states, results/me5_xor_mini.md)
  me5_proj_dim: int = 128
  me5_learning_rate: float = 2e-5


SCALES = {
  "default": Scale(
    num_towns=240,
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
    # runs/train_xtr_me5_cpu.gin as measured in results/me5_xor_mini.md (384-d row): 200
    # steps of 16 pairs, passages of 128 pieces, lr 3e-5, no projection
    me5_steps=200,
    me5_passage_length=128,
    me5_proj_dim=0,
    me5_learning_rate=3e-5,
  ),
  "smoke": dataclasses.replace(SCALES["smoke"], vocab_size=8000, generate_passages=16),
}
RETRIEVERS = ("me5", "scratch")
EMBEDDED_BACKBONE = "me5-small"  # xtr_jax/checkpoints/embedded.py
# Tag slots past the SentencePiece vocabulary for the xQG language tags (>= NUM_TAGS = 37).
TAG_SLOTS = 64
TOTAL_STAGES = 8
STATE_FILE = "demo.json"
# Below this share of questions in their language's script the generator is mostly writing
# other scripts (the sample's Japanese once held 12.5%): flagged in the output and summary.
SCRIPT_SHARE_FLOOR = 0.8
METRICS = ["Recall@20", "MRR@10", "R@2kt"]
ZERO_SHOT_NOTE = (
  f"{EMBEDDED_BACKBONE} zero-shot: XTR scoring over the backbone's raw 384-d token states "
  f"(`xtr-jax index --checkpoint {EMBEDDED_BACKBONE} --pooling token`, no projection, exact "
  "brute-force token search), the states the fine-tune starts from."
)


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


def _me5_train_bindings(paths: Paths, init: str, scale: Scale, steps: int) -> list[str]:
  """The mE5 fine-tune's bindings; INIT also names the batches' tokenizer (mE5's own)."""
  return [
    f"--gin.INIT='{init}'",
    f"--gin.PROJ_DIM={scale.me5_proj_dim}",
    f"--gin.LEARNING_RATE={scale.me5_learning_rate}",
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
  short: str  # its name in the per-language and paired-test tables
  checkpoint: str
  index_args: tuple[str, ...] = ()
  reuses: str | None = None  # the system whose index's corpus vectors it takes (no re-encoding)


# ----------------------------------------------------------------------------- state


class DemoState:
  """The folder's ``demo.json``: which --retriever/--data it holds and what each unit cost.

  The marker keeps a folder made with another --retriever/--data from having its artefacts
  (indexes, runs) taken as this run's by the skip-if-present resumption. The seconds of each
  unit of work (a training run, an index) are recorded when it runs, so a rerun that skips it
  still reports what it cost, instead of the zero seconds of a skip.
  """

  def __init__(self, path: pathlib.Path, config: dict[str, str], timings: dict[str, float]):
    self.path, self.config, self.timings = path, config, timings
    self.ran: set[str] = set()  # units that ran in this process
    self.order: list[str] = []  # units in pipeline order, as the stages announce them

  @classmethod
  def open(cls, out: pathlib.Path, retriever: str, data: str) -> DemoState:
    """Loads (or starts) the state of ``out``; refuses a folder of another retriever/data."""
    path = out / STATE_FILE
    want = {"retriever": retriever, "data": data}
    stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if stored:
      have = {key: stored.get(key) for key in want}
    elif (out / "xtr" / "final").exists():  # written before the marker existed: scratch XTR
      have = {"retriever": "scratch", "data": data}
    else:
      have = want
    if have != want:
      raise SystemExit(
        f"demo: {out} holds a run with --retriever {have['retriever']} --data {have['data']}; "
        f"use another --output_dir for --retriever {retriever} --data {data}"
      )
    state = cls(path, want, dict(stored.get("timings", {})))
    state.save()
    return state

  def save(self) -> None:
    """Written after every unit, so an interrupted demo keeps the seconds of what finished."""
    payload = {**self.config, "timings": self.timings}
    xio.atomic_write_text(self.path, json.dumps(payload, indent=1, sort_keys=True) + "\n")

  @contextlib.contextmanager
  def timed(self, key: str) -> Iterator[None]:
    """Times one unit of work; recorded only when it completes."""
    start = time.time()
    yield
    self.timings[key] = round(time.time() - start, 1)
    self.ran.add(key)
    self.save()

  def recorded(self, keys: list[str]) -> float | None:
    """Seconds of these units as recorded when they ran; None when one was never recorded."""
    values = [self.timings.get(key) for key in keys]
    return None if None in values else round(sum(values), 1)

  def stage(self, number: int, name: str, keys: list[str], done: bool) -> None:
    """Announces a stage; a skipped one shows the seconds it took when it ran."""
    self.order += [key for key in keys if key not in self.order]
    seconds = self.recorded(keys)
    took = "its time was not recorded" if seconds is None else f"took {seconds:.1f} s when it ran"
    state = f"done already, skipping; {took}" if done else "running"
    _say(f"\n[{number}/{TOTAL_STAGES}] {name} ({state})")

  def timing_table(self) -> str:
    """Markdown: every unit's seconds and whether this run did it or reused an earlier run's."""
    rows = ["| stage | seconds | this run |", "|---|---:|---|"]
    for key in self.order:
      seconds = self.timings.get(key)
      if key in self.ran:
        what = "ran"
      else:
        what = "skipped (seconds of the run that did it)" if seconds is not None else "skipped"
      rows.append(f"| {key} | {_fmt(seconds)} | {what} |")
    total = self.recorded(self.order)
    rows.append(f"| **all stages** | {_fmt(total)} | |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- stages


def _stage_data(state: DemoState, args, scale: Scale, out: pathlib.Path) -> Paths:
  """The sample is written once; --data shared is only checked, every run."""
  done = args.data == "sample" and (out / "data" / "README.md").is_file()
  state.stage(1, f"data ({args.data})", ["data"], done)
  with contextlib.nullcontext() if done else state.timed("data"):
    return _data(args, scale, out)


def _stage_vocab(state: DemoState, scale: Scale, paths: Paths, out: pathlib.Path) -> str:
  vocab = out / "vocab" / "spm.model"
  state.stage(2, "SentencePiece vocabulary", ["vocab"], vocab.exists())
  if not vocab.exists():
    argv = ["train-vocab", "--output", str(out / "vocab" / "spm")]
    argv += ["--vocab_size", str(scale.vocab_size), "--corpus", paths.corpus]
    argv += ["--swim_ir_dir", str(pathlib.Path(paths.pairs_glob).parent)]
    with state.timed("vocab"):
      _run(argv)
  return str(vocab)


def _me5_stage_keys(scale: Scale) -> list[str]:
  """The DemoState keys of stage 3: no init_projection without a projection."""
  return ["init_projection", "train_xtr"] if scale.me5_proj_dim else ["train_xtr"]


def _stage_train_me5(
  state: DemoState, scale: Scale, paths: Paths, out: pathlib.Path, steps: int
) -> None:
  """mE5-small [+ a PCA projection (xtr_init/)], then the brief XTR fine-tune (xtr/)."""
  init_dir, xtr_dir = out / "xtr_init", out / "xtr"
  final = xtr_dir / "final"
  what = f"XTR retriever: fine-tune {EMBEDDED_BACKBONE} ({steps} steps)"
  state.stage(3, what, _me5_stage_keys(scale), final.exists())
  if final.exists():
    return
  init = str(init_dir) if scale.me5_proj_dim else EMBEDDED_BACKBONE
  if scale.me5_proj_dim and not init_dir.exists():  # written atomically: present = complete
    argv_init = ["init-projection", "--checkpoint", EMBEDDED_BACKBONE, "--output"]
    argv_init += [str(init_dir), "--pairs", paths.pairs_glob]
    with state.timed("init_projection"):
      _run(argv_init + ["--sample_texts", str(scale.sample_texts)])
  argv_train = ["train", "--gin_file", "runs/train_xtr_me5_demo.gin"]
  argv_train += ["--model_dir", str(xtr_dir)]
  with state.timed("train_xtr"):
    _run(argv_train + _me5_train_bindings(paths, init, scale, steps))


def _stage_train(
  state: DemoState,
  number: int,
  kind: str,
  model_dir: pathlib.Path,
  gin_file: str,
  steps: int,
  extra: list[str],
) -> None:
  """A from-scratch model (the xQG generator; the scratch XTR) in ``model_dir``."""
  final = model_dir / "final"
  key = f"train_{model_dir.name}"
  state.stage(number, f"train the {kind} ({steps} steps)", [key], final.exists())
  if not final.exists():
    argv = ["train", "--gin_file", gin_file, "--model_dir", str(model_dir), *extra]
    with state.timed(key):
      _run(argv)


def _stage_generate(state: DemoState, scale: Scale, paths: Paths, out: pathlib.Path) -> None:
  generated, marker = out / "generated.jsonl", out / "generated.done"
  what = "every passage" if scale.generate_passages is None else "sampled passages"
  state.stage(5, f"generate questions with xQG ({what})", ["generate"], marker.exists())
  if marker.exists():
    return
  with state.timed("generate"):
    gen_corpus = paths.corpus
    if scale.generate_passages is not None:
      gen_corpus = str(out / "generate_corpus.tsv")
      n = sample_corpus(paths.corpus, pathlib.Path(gen_corpus), scale.generate_passages)
      _say(f"    {n} passages sampled (seed 0) from {paths.corpus} -> {gen_corpus}")
    argv = ["generate", "--checkpoint", str(out / "xqg" / "final"), "--corpus", gen_corpus]
    argv += ["--output", str(generated), "--languages", ",".join(paths.generate_languages)]
    argv += ["--num_questions", str(scale.num_questions), "--strategy", scale.strategy]
    argv += ["--max_decode_length", "32", "--max_input_length", "128", "--batch_size", "16"]
    _run(argv)
  marker.write_text("ok\n")


def _stage_index(state: DemoState, systems: list[System], paths: Paths, out: pathlib.Path) -> None:
  todo = [s for s in systems if not (out / f"index_{s.name}" / "manifest.json").exists()]
  what = "the plain and the augmented token index"
  what += " + zero-shot mE5" if any(s.name == "me5_zeroshot" for s in systems) else ""
  state.stage(6, f"build {what}", [f"index_{s.name}" for s in systems], not todo)
  for system in systems:
    index_dir = out / f"index_{system.name}"
    if system not in todo:
      _say(f"    {system.name}: exists")
      continue
    argv = ["index", "--checkpoint", system.checkpoint, "--corpus", paths.corpus]
    if system.reuses:  # the same model's passage vectors: only the questions are encoded
      argv += ["--reuse_index", str(out / f"index_{system.reuses}")]
    with state.timed(f"index_{system.name}"):
      _run(argv + ["--output", str(index_dir), *system.index_args])


def _stage_search(
  state: DemoState, systems: list[System], paths: Paths, out: pathlib.Path
) -> dict[str, pathlib.Path]:
  runs = {s.name: out / f"run_{s.name}.trec" for s in systems}
  keys = [f"search_{s.name}" for s in systems]
  state.stage(7, "search the dev queries", keys, all(p.exists() for p in runs.values()))
  for system in systems:
    if not runs[system.name].exists():
      argv = ["search", "--index", str(out / f"index_{system.name}"), "--queries", paths.dev]
      with state.timed(f"search_{system.name}"):
        _run(argv + ["--output", str(runs[system.name]), "--k", "100"])
  return runs


def _stage_evaluate(
  state: DemoState,
  systems: list[System],
  runs: dict[str, pathlib.Path],
  paths: Paths,
  out: pathlib.Path,
) -> dict[str, dict]:
  """Always reruns (seconds): its JSON is what summary.md is made from."""
  state.stage(8, "evaluate", ["evaluate"], False)
  evals = {}
  with state.timed("evaluate"):
    for system in systems:
      prefix = out / f"eval_{system.name}"
      argv = ["evaluate", "--run", str(runs[system.name]), "--queries", paths.dev]
      argv += ["--qrels", paths.qrels, "--corpus", paths.corpus, "--output", str(prefix)]
      if system.name != "plain":  # paired against the plain index
        argv += ["--compare", str(runs["plain"])]
      _run(argv)
      evals[system.name] = _read_eval(f"{prefix}.json")
  return evals


# ----------------------------------------------------------------------------- summary


def _generated_pairs(path: pathlib.Path):
  """(language, question) of every generated question."""
  with open(path, encoding="utf-8") as f:
    for line in f:
      for code, qs in json.loads(line)["generated_queries"].items():
        yield from ((code, q) for q in qs)


def script_share_warning(
  share: dict[str, tuple[int, int]], floor: float = SCRIPT_SHARE_FLOOR
) -> str | None:
  """One line naming the languages whose questions are in their script less than ``floor``.

  A warning, not a failure: the demo still measures the augmentation, but for those languages
  it mostly adds tokens of other scripts, which says more about the generator than about xQG.
  """
  low = [
    f"{code} {a / n:.1%} ({'/'.join(sorted(script_share.EXPECTED[code]))})"
    for code, (a, n) in share.items()
    if n and a / n < floor
  ]
  if not low:
    return None
  return (
    f"WARNING: xQG questions in their language's script below {floor:.0%} for "
    f"{', '.join(low)}; the augmentation adds mostly other-script tokens there"
  )


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


def paired_tests_table(named: list[tuple[str, dict]], metrics: list[str]) -> str:
  """Every pair of systems, per metric: the project's paired t-test and bootstrap CI.

  ``named``: (short name, evaluate JSON) in pipeline order; each later system is A against
  each earlier one as B. The scores are ``evaluate``'s per-query ones, compared by
  ``xtr_jax.evaluation.cli.compare_runs`` exactly as ``xtr-jax evaluate --compare`` does.
  """
  rows = ["| A | B | metric | n | A | B | A − B | t | p (paired t-test) | 95% bootstrap CI |"]
  rows.append("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
  from xtr_jax.evaluation import cli as evaluation_cli  # noqa: PLC0415  (scipy, NLTK)

  pick = lambda ev: {m: ev["metrics"][m] for m in metrics}
  for (b_name, b), (a_name, a) in itertools.combinations(named, 2):
    paired = evaluation_cli.compare_runs(pick(a), pick(b), samples=10_000, confidence=0.95, seed=0)
    for m, c in paired.items():
      rows.append(
        f"| {a_name} | {b_name} | {m} | {c['n']} | {c['mean_a']:.1f} | {c['mean_b']:.1f} | "
        f"{c['diff']:+.1f} | {c['t']:.2f} | {c['p_value']:.2g} | "
        f"[{c['ci_low']:+.1f}, {c['ci_high']:+.1f}] |"
      )
  return "\n".join(rows)


def _count_lines(path: pathlib.Path) -> int:
  with open(path, encoding="utf-8") as f:
    return sum(1 for line in f if line.strip())


class Counts(NamedTuple):
  passages: int
  queries: int  # dev queries
  table: str  # per language: dev queries, training pairs, generated questions


def data_counts(paths: Paths, generated: dict[str, tuple[int, int]]) -> Counts:
  """What the numbers rest on: passages, and per language the dev queries, the training pairs
  (the SWIM-IR-layout files both models train on) and the generated questions."""
  from xtr_jax.data import formats  # noqa: PLC0415

  passages = sum(1 for _ in formats.read_corpus(paths.corpus))
  queries = collections.Counter(q.lang for q in formats.iter_queries(paths.dev))
  pairs = {p.stem: _count_lines(p) for p in map(pathlib.Path, glob.glob(paths.pairs_glob))}
  questions = {code: n for code, (_, n) in generated.items()}
  rows = ["| lang | dev queries | training pairs | generated questions |", "|---|---:|---:|---:|"]
  for lang in sorted(set(queries) | set(pairs) | set(questions)):
    cells = [queries.get(lang, 0), pairs.get(lang, 0), questions.get(lang, 0)]
    rows.append(f"| {lang} | " + " | ".join(map(str, cells)) + " |")
  totals = [sum(queries.values()), sum(pairs.values()), sum(questions.values())]
  rows.append("| **all** | " + " | ".join(map(str, totals)) + " |")
  return Counts(passages, totals[0], "\n".join(rows))


class Trained(NamedTuple):
  """A model the demo trains: a row of the training table."""

  what: str
  model_dir: pathlib.Path
  steps: int  # asked for; the table shows the steps the run logged
  keys: list[str]  # DemoState keys of its training time


def trained_steps(model_dir: pathlib.Path) -> tuple[int, float] | None:
  """(last step, its training loss) from the trainer's metrics.jsonl; None without one.

  Read from the run rather than the flags: a resumed demo reuses a model trained earlier,
  perhaps with other --xtr_steps/--xqg_steps.
  """
  log = model_dir / "metrics.jsonl"
  if not log.is_file():
    return None
  last = None
  for line in log.read_text(encoding="utf-8").splitlines():
    row = json.loads(line)
    if row.get("split") == "train" and (last is None or row["step"] >= last["step"]):
      last = row
  return None if last is None else (int(last["step"]), float(last["loss"]))


def training_table(models: list[Trained], state: DemoState) -> str:
  """Markdown: each trained model's steps (as run), final training loss and seconds."""
  rows = ["| model | steps | final training loss | seconds |", "|---|---:|---:|---:|"]
  for model in models:
    steps, loss = trained_steps(model.model_dir) or (model.steps, None)
    loss_txt = "-" if loss is None else f"{loss:.3f}"
    rows.append(f"| {model.what} | {steps} | {loss_txt} | {_fmt(state.recorded(model.keys))} |")
  return "\n".join(rows)


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What the summary reports, gathered once the stages are done."""

  title: str
  systems: list[System]
  evals: dict[str, dict]
  counts: Counts
  training: str  # training_table
  share: str  # script_share.share_table
  warning: str | None  # script_share_warning
  xqg_note: str
  zero_shot_note: str


def summary_markdown(o: Outcome, state: DemoState, wall: float) -> str:
  """summary.md: systems, data, training, paired tests, per language, xQG, stage seconds."""
  columns = {s.short: o.evals[s.name]["metrics"] for s in o.systems}
  named = [(s.short, o.evals[s.name]) for s in o.systems]
  parts = [
    f"# {o.title}",
    *([o.warning] if o.warning else []),  # first: it qualifies every xQG number below
    systems_table([(s.label, o.evals[s.name]) for s in o.systems], METRICS),
    f"Macro averages over the languages (percent). Δ (p): mean over the {o.counts.queries} "
    "dev queries of the system's score minus the plain index's, and the paired t-test's p "
    f"(`eval_*.md` has the bootstrap CIs). {o.zero_shot_note}".strip(),
    f"Data: {o.counts.passages} passages; per language the dev queries, the training pairs "
    "and the generated questions:",
    o.counts.table,
    "Training (steps and loss from each run's `metrics.jsonl`):",
    o.training,
    "Paired tests between the systems (per-query scores of `eval_*.json`; paired t-test and "
    "seeded paired bootstrap of `xtr_jax.evaluation.significance`, as `xtr-jax evaluate "
    "--compare`; A and B are means over the queries, not the macro averages above; percent):",
    paired_tests_table(named, METRICS),
    "Per language:",
    summary_table(columns, METRICS),
    o.xqg_note,
    o.share,
    "Stage seconds (a skipped stage shows the seconds of the run that did it, kept in "
    "`demo.json`):",
    state.timing_table(),
    f"This run: {wall:.1f} s wall.",
  ]
  return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- main


def _parser() -> ArgumentParser:
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
  return parser


def _scale_of(args) -> Scale:
  """The preset for --data/--scale with the flags' overrides."""
  scale = (SHARED_SCALES if args.data == "shared" else SCALES)[args.scale]
  if args.generate_passages:
    scale = dataclasses.replace(scale, generate_passages=args.generate_passages)
  if args.augment_weight is not None:
    scale = dataclasses.replace(scale, augment_weight=args.augment_weight)
  if args.xtr_steps:
    scale = dataclasses.replace(scale, xtr_steps=args.xtr_steps, me5_steps=args.xtr_steps)
  if args.xqg_steps:
    scale = dataclasses.replace(scale, xqg_steps=args.xqg_steps)
  return scale


def _systems(me5: bool, out: pathlib.Path, scale: Scale, xtr_steps: int) -> list[System]:
  """The indexes compared: [zero-shot mE5,] plain XTR, XTR + xQG augmentation."""
  final = str(out / "xtr" / "final")
  plain_label = (
    f"XTR fine-tuned from {EMBEDDED_BACKBONE} ({xtr_steps} steps, {scale.me5_proj_dim or 384}-d)"
    if me5
    else f"XTR from scratch ({xtr_steps} steps)"
  )
  augment_args = ("--augment_with", str(out / "generated.jsonl"))
  augment_args += ("--augment_mode", scale.augment_mode)
  augment_args += ("--augment_weight", str(scale.augment_weight))
  systems = [
    System("plain", plain_label, "plain", final),
    System("xqg", "+ xQG augmentation", "+xQG", final, augment_args, reuses="plain"),
  ]
  if me5:  # XTR over the backbone's raw states: what the fine-tune starts from
    zero_shot_args = ("--pooling", "token", "--gin.index_settings.backend='brute_force'")
    label = f"{EMBEDDED_BACKBONE} zero-shot (raw 384-d token states)"
    systems.insert(0, System("me5_zeroshot", label, "0-shot", EMBEDDED_BACKBONE, zero_shot_args))
  return systems


def _train_models(
  state: DemoState, me5: bool, scale: Scale, paths: Paths, vocab: str, out: pathlib.Path
) -> list[Trained]:
  """Stages 3-4: the retriever, then the generator."""
  xtr_dir, xqg_dir = out / "xtr", out / "xqg"  # xtr/ holds either retriever (demo.json says)
  if me5:
    _stage_train_me5(state, scale, paths, out, scale.me5_steps)
    what = f"XTR retriever (fine-tuned from {EMBEDDED_BACKBONE})"
    xtr = Trained(what, xtr_dir, scale.me5_steps, _me5_stage_keys(scale))
  else:
    xtr = Trained("XTR retriever (from scratch)", xtr_dir, scale.xtr_steps, ["train_xtr"])
    bindings = _train_bindings(paths, vocab, scale, xtr.steps)
    _stage_train(state, 3, "XTR retriever", xtr_dir, "runs/train_xtr_cpu.gin", xtr.steps, bindings)
  xqg = Trained("xQG generator (from scratch)", xqg_dir, scale.xqg_steps, ["train_xqg"])
  bindings = _train_bindings(paths, vocab, scale, xqg.steps)
  # ids past the vocabulary hold the xQG language tags
  bindings.append(f"--gin.MODEL_VOCAB_SIZE={scale.vocab_size + TAG_SLOTS}")
  _stage_train(state, 4, "xQG generator", xqg_dir, "runs/train_xqg_cpu.gin", xqg.steps, bindings)
  return [xtr, xqg]


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  scale = _scale_of(args)
  me5 = args.retriever == "me5"
  out = pathlib.Path(args.output_dir).resolve()
  out.mkdir(parents=True, exist_ok=True)
  state = DemoState.open(out, args.retriever, args.data)
  start = time.time()

  paths = _stage_data(state, args, scale, out)
  vocab = _stage_vocab(state, scale, paths, out)
  models = _train_models(state, me5, scale, paths, vocab, out)
  _stage_generate(state, scale, paths, out)
  generated = out / "generated.jsonl"
  shares = script_share.shares(_generated_pairs(generated))
  share = script_share.share_table(shares)
  warning = script_share_warning(shares)
  _say("    questions in the requested language's script:\n" + share)
  if warning:
    _say("    " + warning)

  # the steps the model was trained for: a resumed demo may have been given others
  xtr_steps = (trained_steps(models[0].model_dir) or (models[0].steps,))[0]
  systems = _systems(me5, out, scale, xtr_steps)
  _stage_index(state, systems, paths, out)
  runs = _stage_search(state, systems, paths, out)
  evals = _stage_evaluate(state, systems, runs, paths, out)

  n_aug = _count_lines(generated)
  outcome = Outcome(
    title=f"xtr_jax demo ({args.data} data, --retriever {args.retriever})",
    systems=systems,
    evals=evals,
    counts=data_counts(paths, shares),
    training=training_table(models, state),
    share=share,
    warning=warning,
    xqg_note=(
      f"xQG: {scale.num_questions} {scale.strategy} question(s) per language for {n_aug} "
      f"passages, token-level augmentation ({scale.augment_mode}) at weight "
      f"{scale.augment_weight}. Share of questions in the requested language's script:"
    ),
    zero_shot_note=ZERO_SHOT_NOTE if me5 else "",
  )
  report = summary_markdown(outcome, state, time.time() - start)
  xio.atomic_write_text(out / "summary.md", report)
  _say("\n" + report)
  _say(f"All artefacts are in {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
