"""The sweep runner's model stages: train (+ few-shot adaptation), index, search, generate.

Each stage has the runner's signature ``stage(config_name, bindings, workdir) -> dict``. The
configuration's ``bindings`` (the sweep's base bindings + its own; the first is normally
``include 'sweeps/runs/....gin'``, the pinned run gin file) are parsed into a *fresh* gin
config for the duration of the stage, and the sweep's own config (``sweep_spec``,
``evaluate_stage``, ...) is restored afterwards. So one configuration is exactly
``workdir/bindings.gin``, and ``xtr-jax train --gin_file workdir/bindings.gin`` would build the
same model. Stages read their settings from the gin-configurable plans below (``TrainPlan``,
``IndexPlan``, ``SearchPlan``, ``GeneratePlan``) and hand files to each other through
``workdir``: ``models.json`` (name -> checkpoint), ``index/``, ``generated.jsonl``,
``run.trec``.

Paths in the plans are relative to the working directory, except ``TrainPlan.shared_model``
and the default vocabulary, which live in the sweep's output folder (``workdir.parent``) so
that configurations can share them (one vocabulary for all configurations; one model for
sweeps that only vary index / search settings).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import time
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

import gin
from xtr_jax import gin_utils
from xtr_jax.checkpoints.embedded import resolve_checkpoint
from xtr_jax.checkpoints.tokenizers import tokenizer_for
from xtr_jax.data import formats, vocab
from xtr_jax.data.formats import read_corpus
from xtr_jax.data.readers import read_generated_queries
from xtr_jax.data.tokenizer import bucket_length, pad_batch
from xtr_jax.evaluation import io as eval_io
from xtr_jax.index import augment as index_augment
from xtr_jax.index import build as index_build
from xtr_jax.index import cli as index_cli
from xtr_jax.index.encode import EncodeParams, TokenEncoder, text_to_encode
from xtr_jax.index.retriever import Retriever, SearchParams, load_model
from xtr_jax.io import atomic_write_bytes, atomic_write_json, replace_dir
from xtr_jax.models.xtr import RetrievalEncoder, output_dim
from xtr_jax.training import inputs, optimizers, trainer
from xtr_jax.xqg import generate as xqg_generate

MODELS_FILE = "models.json"


# ----------------------------------------------------------------------------- gin isolation


@contextlib.contextmanager
def isolated_gin(bindings: Sequence[str], gin_files: Sequence[str] = ()) -> Iterator[None]:
  """Parses ``gin_files`` + ``bindings`` into a fresh, locked gin config; restores the caller's.

  The sweep runner's config (``sweep_spec``, ``evaluate_stage``) must survive a stage that
  builds a whole training config, and no binding of one configuration may leak into the next.
  Only gin's public API: the caller's config is saved as its parsable ``config_str`` and
  parsed again afterwards (re-locked if it was locked).
  """
  saved = gin.config_str()
  locked = gin.config_is_locked()
  try:
    gin_utils.parse_gin(list(gin_files), list(bindings))
    yield
  finally:
    gin.clear_config()
    gin.parse_config(saved)
    if locked:
      gin.finalize()


# ----------------------------------------------------------------------------- data selection


def normalise_text(text: str) -> str:
  """NFKC, lower case, single spaces: the key for 'the same question / passage'."""
  return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).strip().lower())


def _stable_rank(seed: int, record_id: str) -> str:
  return hashlib.sha1(f"{seed}:{record_id}".encode()).hexdigest()


def read_pair_records(pairs_dir: str, languages: Sequence[str] | str) -> list[dict[str, Any]]:
  """Raw records of ``pairs_dir/{code}.jsonl`` for ``languages`` ('all': every file), in order."""
  if isinstance(languages, str):
    if languages != "all":
      raise ValueError(f"languages={languages!r}: expected a list of codes or 'all'")
    paths = sorted(glob.glob(os.path.join(pairs_dir, "*.jsonl")))
    if not paths:
      raise FileNotFoundError(f"no pair files (*.jsonl) in {pairs_dir}")
  else:
    paths = [os.path.join(pairs_dir, f"{code}.jsonl") for code in languages]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise FileNotFoundError(f"pair file(s) not found for languages {list(languages)}: {missing}")
  records = []
  for path in paths:
    code = pathlib.Path(path).stem
    for lineno, row in inputs.iter_pair_rows(path):
      row.setdefault("code", code)
      row.setdefault("_id", f"{code}:{lineno}")
      records.append(row)
  return records


@dataclasses.dataclass(frozen=True)
class HeldOut:
  """Questions and gold passage texts that no training pair may contain (normalised)."""

  questions: frozenset[str] = frozenset()
  passages: frozenset[str] = frozenset()

  @classmethod
  def load(cls, queries: str | None, qrels: str | None, corpus: str | None) -> HeldOut:
    questions: set[str] = set()
    passages: set[str] = set()
    if queries:
      questions = {normalise_text(q.question) for q in eval_io.read_queries(queries).values()}
    if qrels and corpus:
      gold = {pid for rels in eval_io.read_qrels(qrels).values() for pid in rels}
      passages = {
        normalise_text(text) for pid, text, _ in eval_io.iter_corpus(corpus) if pid in gold
      }
    elif qrels or corpus:
      raise ValueError("held-out passages need both heldout_qrels and heldout_corpus")
    return cls(frozenset(questions), frozenset(passages))

  def overlap(self, record: dict[str, Any]) -> tuple[bool, bool]:
    return (
      normalise_text(record["query"]) in self.questions,
      normalise_text(record["text"]) in self.passages,
    )


def select_pairs(
  records: Sequence[dict[str, Any]],
  *,
  sources: Sequence[str] = (),
  per_language: int | None = None,
  heldout: HeldOut = HeldOut(),
  seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """Filters by ``source``, drops held-out overlaps, keeps ``per_language`` per code.

  The kept records per language are the first ``per_language`` by a seeded hash of ``_id``
  (stable under file order). Returns (records, statistics for the sweep record).
  """
  stats = {"candidates": 0, "dropped_question_overlap": 0, "dropped_passage_overlap": 0}
  by_lang: dict[str, list[dict[str, Any]]] = {}
  for r in records:
    if sources and r.get("source") not in sources:
      continue
    stats["candidates"] += 1
    q_hit, p_hit = heldout.overlap(r)
    if q_hit:
      stats["dropped_question_overlap"] += 1
      continue
    if p_hit:
      stats["dropped_passage_overlap"] += 1
      continue
    by_lang.setdefault(r["code"], []).append(r)
  kept = []
  for code in sorted(by_lang):
    rows = by_lang[code]
    if per_language is not None:
      if len(rows) < per_language:
        raise ValueError(f"language {code!r}: {len(rows)} pairs, fewer than {per_language} asked")
      rows = sorted(rows, key=lambda r: _stable_rank(seed, str(r["_id"])))[:per_language]
    kept.extend(rows)
  if not kept:
    raise ValueError(f"no pairs left after filtering (sources={list(sources)}): {stats}")
  stats["pairs"] = len(kept)
  stats["per_language"] = {code: sum(r["code"] == code for r in kept) for code in sorted(by_lang)}
  return kept, stats


def vocabulary_texts(patterns: Sequence[str], sources: Sequence[str] = ()) -> list[str]:
  """Texts for the SentencePiece model: JSONL lines give query + title + text (only records
  whose ``source`` is in ``sources``, when given), TSV corpora title + text, other files
  their lines."""
  texts: list[str] = []
  for pattern in patterns:
    paths = sorted(glob.glob(pattern))
    if not paths:
      raise FileNotFoundError(f"vocabulary text pattern {pattern!r} matches no file")
    for path in paths:
      if path.endswith(".tsv"):  # a corpus: id, text, title (header row)
        texts += [formats.passage_text(p.title, p.text) for p in read_corpus(path)]
        continue
      with open(path, encoding="utf-8") as f:
        for line in f:
          if not line.strip():
            continue
          if path.endswith(".jsonl"):
            row = json.loads(line)
            if sources and row.get("source") not in sources:
              continue
            texts += [row.get("query", ""), f"{row.get('title', '')} {row.get('text', '')}".strip()]
          else:
            texts.append(line.strip())
  return sorted(set(t for t in texts if t))


# ----------------------------------------------------------------------------- train stage


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TrainPlan:
  """What the train stage trains on (the run gin file binds it, usually through macros).

  Phase 1: ``languages`` of ``pairs_dir`` whose ``source`` is in ``sources`` (all when empty),
  at most ``max_pairs_per_language`` each. Phase 2 (when ``adapt_steps`` > 0): few-shot
  adaptation from phase 1's final checkpoint on ``adapt_per_language`` pairs of each of
  ``adapt_languages`` with ``adapt_sources``. Pairs whose question is a held-out query, or
  whose passage is a held-out gold passage, are dropped from both phases and counted.
  """

  pairs_dir: str = ""
  languages: Sequence[str] | str = "all"
  sources: Sequence[str] = ()
  max_pairs_per_language: int | None = None
  # Mixed into phase 1 (e.g. the monolingual pairs, passages in the query's language): these
  # languages of ``extra_pairs_dir``, any source, at most ``extra_per_language`` each.
  extra_pairs_dir: str | None = None
  extra_languages: Sequence[str] = ()
  extra_per_language: int | None = None
  adapt_pairs_dir: str | None = None  # None: pairs_dir
  adapt_languages: Sequence[str] = ()
  adapt_sources: Sequence[str] = ()
  adapt_per_language: int = 0
  adapt_steps: int = 0
  adapt_learning_rate: float | None = None  # None: the run's base learning rate
  adapt_warmup_steps: int = 0
  heldout_queries: str | None = None
  heldout_qrels: str | None = None
  heldout_corpus: str | None = None
  vocabulary: str | None = None  # None: <sweep output>/vocab/spm_<size>.model (shared)
  # False: the run starts from a pretrained checkpoint that carries its own tokenizer
  # (mE5: its embedding rows are indexed by that tokenizer), so no vocabulary is trained.
  train_vocabulary: bool = True
  # The model when ``languages`` is empty (N = 0: the backbone itself, zero-shot, or the
  # start of few-shot adaptation): an embedded name (``me5-small``) or a checkpoint folder.
  base_checkpoint: str | None = None
  # Configurations that differ only in phase 2 (k few-shot pairs) name the same phase 1:
  # it is trained once, in <sweep output>/phase1/<name>, and checked to be the same data.
  phase1_name: str | None = None
  vocab_size: int = 8000
  vocab_texts: Sequence[str] = ()  # globs; default: pairs_dir/*.jsonl (JSONL: `sources` only)
  shared_model: str | None = None  # name: train once in <sweep output>/models/<name>
  name: str = "xtr"  # key in workdir/models.json
  seed: int = 0

  def check(self) -> None:
    if not self.pairs_dir or not os.path.isdir(self.pairs_dir):
      raise FileNotFoundError(f"TrainPlan.pairs_dir={self.pairs_dir!r} is not a directory")
    if not self.languages and not self.base_checkpoint:
      raise ValueError("TrainPlan.languages is empty (no phase 1): set TrainPlan.base_checkpoint")
    if self.adapt_steps > 0 and (not self.adapt_languages or self.adapt_per_language < 1):
      raise ValueError(
        f"TrainPlan.adapt_steps={self.adapt_steps} needs adapt_languages and adapt_per_language"
      )


def _phase_done(directory: pathlib.Path) -> dict | None:
  path = directory / "phase.json"
  if path.is_file() and (directory / "final").is_dir():
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  return None


def _run_phase(
  directory: pathlib.Path,
  bindings: Sequence[str],
  overrides: Sequence[str],
  record: dict[str, Any] | None = None,
) -> dict[str, Any]:
  """One ``trainer.train`` run in a fresh config; skipped when it finished before.

  ``record`` (e.g. the digest of the pairs it trains on) is kept in ``phase.json``.
  """
  done = _phase_done(directory)
  if done is not None:
    logging.info("%s: finished before, reusing it", directory)
    return {**done, "reused": 1}
  t0 = time.time()
  with isolated_gin([*bindings, *overrides]):
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(str(directory / "config.gin"), gin.config_str().encode("utf-8"))
    result = trainer.train(str(directory))
  steps = max(result.losses) if result.losses else 0
  summary: dict[str, Any] = {
    "steps": steps,
    "seconds": round(time.time() - t0, 1),
    **(record or {}),
  }
  if result.losses:
    summary["final_train_loss"] = round(result.losses[steps], 4)
  if result.eval_metrics:
    last = max(result.eval_metrics)
    summary.update({f"eval_{k}": round(v, 4) for k, v in result.eval_metrics[last].items()})
  if not (directory / "final").is_dir():
    raise RuntimeError(f"training in {directory} finished without a final checkpoint")
  atomic_write_json(str(directory / "phase.json"), summary)
  return summary


def _write_models(workdir: pathlib.Path, name: str, checkpoint: str) -> None:
  path = workdir / MODELS_FILE
  models = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
  models[name] = os.path.abspath(checkpoint)
  atomic_write_json(str(path), models)


def model_checkpoint(workdir: pathlib.Path, name: str) -> str:
  """The checkpoint the train stage recorded under ``name`` in workdir/models.json."""
  path = workdir / MODELS_FILE
  models = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
  if name not in models:
    raise FileNotFoundError(
      f"{path}: no model {name!r} (have {sorted(models)}); run the train stage first"
    )
  return models[name]


def _pairs_digest(pairs: Sequence[dict[str, Any]]) -> str:
  """What a shared phase 1 was trained on: the selected pairs, in order."""
  h = hashlib.sha1()
  for r in pairs:
    h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode("utf-8"))
  return h.hexdigest()


def _tokenizer_bindings(plan: TrainPlan, sweep_dir: pathlib.Path) -> tuple[list[str], dict]:
  """The VOCAB binding (the shared SentencePiece model, trained once), or none when the run
  starts from a checkpoint with its own tokenizer."""
  if not plan.train_vocabulary:
    return [], {"tokenizer": "the initial checkpoint's own"}
  vocabulary = plan.vocabulary or str(sweep_dir / "vocab" / f"spm_{plan.vocab_size}.model")
  if not os.path.isfile(vocabulary):
    patterns = list(plan.vocab_texts) or [os.path.join(plan.pairs_dir, "*.jsonl")]
    texts = vocabulary_texts(patterns, plan.sources)
    logging.info("training the shared %d-piece vocabulary on %d texts", plan.vocab_size, len(texts))
    vocab.train_sentencepiece(texts, vocabulary, plan.vocab_size, input_sentence_size=200_000)
  return [f"VOCAB = '{vocabulary}'"], {"vocabulary": os.path.abspath(vocabulary)}


# Configurables the training of a phase 1 does not read (selection, phase 2, index, search,
# generation, evaluation): configurations sharing a phase 1 may differ in them.
_NOT_TRAINING = frozenset({
  "TrainPlan", "IndexPlan", "SearchPlan", "GeneratePlan", "EncodeParams", "SearchParams",
  "ScannParams", "CompactParams", "index_settings", "evaluate_stage", "bm25_stage", "sweep_spec",
})  # fmt: skip
_MACRO_REF = re.compile(r"%([A-Za-z_][\w.]*)")
_BINDING_START = re.compile(r"^[A-Za-z_][\w./]* = ")


def _phase1_config_digest(bindings: Sequence[str], overrides: Sequence[str]) -> str:
  """The training settings of a phase 1 (model, steps, optimizer, batches, ...): the bindings
  of its parsed gin config that training reads, with the macros they use (the pairs are
  digested separately), so a shared phase 1 is never reused for another model."""
  with isolated_gin([*bindings, *overrides]):
    text = gin.config_str()
  lines: list[str] = []
  for raw in text.splitlines():  # one entry per binding: continuation lines joined
    if _BINDING_START.match(raw):
      lines.append(raw.rstrip("\\ "))
    elif lines and raw.strip() and not raw.startswith(("#", "import ", "from ")):
      lines[-1] += " " + raw.strip().rstrip("\\ ")
  macros = {k: line for line in lines if "." not in (k := line.split(" = ", 1)[0])}
  kept = set()
  for line in lines:
    key = line.split(" = ", 1)[0]
    if key in macros or key.rsplit(".", 1)[0].split("/")[-1].split(".")[-1] in _NOT_TRAINING:
      continue
    kept.add(line)
  todo = list(kept)
  while todo:  # the macros the kept bindings refer to, transitively
    for name in _MACRO_REF.findall(todo.pop()):
      if name in macros and macros[name] not in kept:
        kept.add(macros[name])
        todo.append(macros[name])
  return hashlib.sha1("\n".join(sorted(kept)).encode("utf-8")).hexdigest()


def _train_phase1(
  plan: TrainPlan,
  bindings: Sequence[str],
  common: Sequence[str],
  heldout: HeldOut,
  home: pathlib.Path,
) -> tuple[pathlib.Path, dict[str, Any]]:
  """Phase 1 on the first languages' pairs; a named phase 1 is trained once and reused."""
  records = read_pair_records(plan.pairs_dir, plan.languages)
  pairs, stats = select_pairs(
    records,
    sources=plan.sources,
    per_language=plan.max_pairs_per_language,
    heldout=heldout,
    seed=plan.seed,
  )
  if plan.extra_languages:
    if not plan.extra_pairs_dir or not os.path.isdir(plan.extra_pairs_dir):
      raise FileNotFoundError(
        f"TrainPlan.extra_pairs_dir={plan.extra_pairs_dir!r} is not a directory"
      )
    extra, extra_stats = select_pairs(
      read_pair_records(plan.extra_pairs_dir, list(plan.extra_languages)),
      per_language=plan.extra_per_language,
      heldout=heldout,
      seed=plan.seed,
    )
    pairs = [*pairs, *extra]
    stats["extra_pairs"] = extra_stats["pairs"]
  train_file = home / "train_pairs.jsonl"
  overrides = [f"PAIRS = '{train_file}'", *common]
  record = {"pairs_sha1": _pairs_digest(pairs), "config_sha1": _phase1_config_digest(
    bindings, overrides)}  # fmt: skip
  done = _phase_done(home / "phase1")
  for key, what in (("pairs_sha1", "pairs"), ("config_sha1", "training settings")):
    if done is not None and done.get(key, record[key]) != record[key]:
      raise ValueError(
        f"{home / 'phase1'}: this phase 1 was trained with other {what} ({key} {done[key]}, "
        f"now {record[key]}); give configurations that differ in phase 1 different phase1_name"
      )
  if done is None:
    formats.write_jsonl(train_file, pairs)
  summary = _run_phase(home / "phase1", bindings, overrides, record)
  out = {
    "data": {k: v for k, v in stats.items() if k != "per_language"},
    "train_languages": sorted(stats["per_language"]),
    "phase1": summary,
  }
  return home / "phase1" / "final", out


def _adapt(
  plan: TrainPlan,
  bindings: Sequence[str],
  common: Sequence[str],
  heldout: HeldOut,
  home: pathlib.Path,
  start: str,
) -> tuple[pathlib.Path, dict[str, Any]]:
  """Phase 2: few-shot adaptation from ``start`` on k pairs of each adaptation language."""
  records = read_pair_records(plan.adapt_pairs_dir or plan.pairs_dir, list(plan.adapt_languages))
  pairs, stats = select_pairs(
    records,
    sources=plan.adapt_sources,
    per_language=plan.adapt_per_language,
    heldout=heldout,
    seed=plan.seed,
  )
  adapt_file = home / "adapt_pairs.jsonl"
  formats.write_jsonl(adapt_file, pairs)
  overrides = [
    f"PAIRS = '{adapt_file}'",
    *common,
    f"TRAIN_STEPS = {plan.adapt_steps}",
    f"trainer.train.init_checkpoint = '{start}'",
    "trainer.train.eval_batches = None",
    "inputs.pairs_batches.heldout_fraction = 0.0",
    f"optimizers.learning_rate_schedule.warmup_steps = {plan.adapt_warmup_steps}",
  ]
  if plan.adapt_learning_rate is not None:
    overrides.append(
      f"optimizers.learning_rate_schedule.base_learning_rate = {plan.adapt_learning_rate}"
    )
  summary = _run_phase(home / "adapt", bindings, overrides)
  return home / "adapt" / "final", {
    "adapt": summary,
    "adapt_data": {k: v for k, v in stats.items() if k != "per_language"},
  }


def train_stage(
  config_name: str, bindings: Sequence[str], workdir: pathlib.Path, scope: str | None = None
) -> dict[str, Any]:
  """Phase 1 on the selected pairs (none: the base checkpoint), then optional few-shot
  adaptation; records the model in workdir/models.json.

  With ``scope`` (e.g. 'xqg'), the bindings ``scope/...`` apply, unprefixed, after all others
  (a plain gin scope would not reach the trainer's scoped batch references, ``@train/...``).
  """
  del config_name
  workdir = pathlib.Path(workdir)
  if scope:
    prefix = f"{scope}/"
    bindings = [*bindings, *(b[len(prefix) :] for b in bindings if b.startswith(prefix))]
  with isolated_gin(bindings):
    plan = TrainPlan()
  plan.check()
  sweep_dir = workdir.parent
  home = sweep_dir / "models" / plan.shared_model if plan.shared_model else workdir / plan.name
  home.mkdir(parents=True, exist_ok=True)
  heldout = HeldOut.load(plan.heldout_queries, plan.heldout_qrels, plan.heldout_corpus)
  common, out = _tokenizer_bindings(plan, sweep_dir)
  if plan.languages:
    phase1_home = sweep_dir / "phase1" / plan.phase1_name if plan.phase1_name else home
    phase1_home.mkdir(parents=True, exist_ok=True)
    final, summary = _train_phase1(plan, bindings, common, heldout, phase1_home)
    out.update(summary)
  else:
    final = pathlib.Path(resolve_checkpoint(str(plan.base_checkpoint)))
    out["phase1"] = {"steps": 0, "base_checkpoint": str(plan.base_checkpoint)}
  if plan.adapt_steps > 0:
    final, summary = _adapt(plan, bindings, common, heldout, home, str(final))
    out.update(summary)
  _write_models(workdir, plan.name, str(final))
  out["checkpoint"] = str(final)
  out["seed"] = plan.seed
  return out


def train_xqg_stage(config_name: str, bindings: Sequence[str], workdir: pathlib.Path):
  """The train stage for the xQG generator: the sweep's ``xqg/...`` bindings apply."""
  return train_stage(config_name, bindings, workdir, scope="xqg")


# ----------------------------------------------------------------------------- index stage


@gin.configurable
@dataclasses.dataclass(frozen=True)
class IndexPlan:
  """The corpus to index and the optional xQG augmentation (Sweep 2)."""

  corpus: str = ""
  model: str = "xtr"  # key in workdir/models.json
  augment: bool = False  # add the generate stage's questions (workdir/generated.jsonl)
  augment_mode: str = "tokens"
  augment_weight: float = 1.0
  augment_max_df: float | None = None  # drop question pieces in more passages than this share
  # Single-vector models (the xQG code's rule): p <- (1 - alpha) p + alpha * reduce(q_i).
  augment_alpha: float = 0.01
  augment_reduce: str = "sum"
  question_length: int = 64  # tokens of a generated question when it is encoded (both kinds)
  pooling: str | None = None  # 'token' | 'mean'; None: the checkpoint's own


class DenseEncoder:
  """Mean-pooled single-vector encoder (the single-vector baseline has no token index)."""

  def __init__(self, params, config, proj_dim: int):
    self.model = RetrievalEncoder(config, proj_dim=proj_dim, pooling="mean")
    self.params = jax.device_put(nn.meta.unbox(params))
    self.pad_id = config.pad_token_id
    self.width = output_dim(config, proj_dim)
    self._fn = jax.jit(lambda p, ids: self.model.apply({"params": p}, ids))

  def encode(self, token_ids: list[list[int]], batch_size: int, max_length: int) -> np.ndarray:
    out = np.zeros((len(token_ids), self.width), np.float32)
    buckets = EncodeParams().buckets
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    for start in range(0, len(order), batch_size):
      idx = order[start : start + batch_size]
      length = bucket_length(max(len(token_ids[i]) for i in idx), max_length, buckets)
      batch = pad_batch([token_ids[i] for i in idx], length, batch_size, self.pad_id)
      out[idx] = np.asarray(self._fn(self.params, batch))[: len(idx)]
    return out


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A retrieval checkpoint with the tokenizer it was trained with."""

  checkpoint: str
  params: Any
  config: Any
  proj_dim: int
  fingerprint: str
  extra: dict[str, Any]
  tokenizer: Any


def _load_retrieval(checkpoint: str) -> LoadedModel:
  """Loads a trained model or a pretrained one (an embedded name such as ``me5-small``)."""
  checkpoint = resolve_checkpoint(checkpoint)
  params, config, proj_dim, fingerprint, extra = load_model(checkpoint)
  tokenizer = tokenizer_for(checkpoint, extra, config)
  return LoadedModel(checkpoint, params, config, proj_dim, fingerprint, extra, tokenizer)


def _dense_index(
  plan: IndexPlan, model: LoadedModel, output: pathlib.Path, generated: pathlib.Path
) -> dict:
  """One mean-pooled vector per passage (+ the xQG single-vector augmentation)."""
  params = EncodeParams()
  passages = list(read_corpus(plan.corpus))
  ids = model.tokenizer.encode([text_to_encode(p, params) for p in passages], params.max_length)
  dense = DenseEncoder(model.params, model.config, model.proj_dim)
  vectors = dense.encode(ids, params.batch_size, params.max_length)
  if plan.augment:  # single-vector xQG augmentation, as in the xQG code

    def encode_questions(texts: list[str]) -> np.ndarray:
      q_ids = model.tokenizer.encode(texts, plan.question_length, role="query")
      return dense.encode(q_ids, params.batch_size, plan.question_length)

    vectors = index_augment.augment_passage_matrix(
      vectors,
      [p.id for p in passages],
      read_generated_queries(str(generated)),
      encode_questions,
      alpha=plan.augment_alpha,
      reduce=plan.augment_reduce,
    )

  def write(tmp: pathlib.Path) -> None:
    np.save(tmp / "dense_vectors.npy", vectors)
    meta = {"checkpoint": model.checkpoint, "passage_ids": [p.id for p in passages]}
    atomic_write_json(str(tmp / "dense.json"), meta)

  tmp = output.parent / f".{output.name}.tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir()
  write(tmp)
  replace_dir(tmp, output)  # the old index goes only once the new one is complete
  return {"num_passages": len(passages), "dense": 1}


def _token_index(
  plan: IndexPlan, model: LoadedModel, output: pathlib.Path, generated: pathlib.Path
) -> dict:
  """The XTR token index (ScaNN or exact, per ``index_settings``), optionally augmented."""
  pooling = plan.pooling or "token"
  augmentation: dict[str, Any] = {}
  if plan.augment:
    augmentation["extra_vectors"] = index_augment.extra_vectors_for_index(
      str(generated),
      TokenEncoder(model.params, model.config, model.proj_dim, pooling=pooling),
      model.tokenizer,
      mode=plan.augment_mode,
      max_df=plan.augment_max_df,
      max_length=plan.question_length,
    )
    augmentation["extra_weight"] = plan.augment_weight
  manifest = index_build.build_from_corpus(
    plan.corpus,
    str(output),
    model.params,
    model.config,
    proj_dim=model.proj_dim,
    model_fingerprint=model.fingerprint,
    tokenizer=model.tokenizer,
    checkpoint=model.checkpoint,
    pooling=pooling,
    overwrite=True,
    progress=False,
    **{**index_cli.index_settings(), **augmentation},
  )
  return {
    "num_passages": manifest["num_passages"],
    "num_tokens": manifest["num_tokens"],
    "num_extra_tokens": manifest.get("num_extra_tokens", 0),
    "encode_seconds": manifest.get("encode_seconds", 0.0),
  }


def index_stage(config_name: str, bindings: Sequence[str], workdir: pathlib.Path) -> dict:
  """Encodes the corpus with the configuration's model into workdir/index (token or dense).

  The pooling is ``IndexPlan.pooling`` or the checkpoint's own, so a pretrained single-vector
  backbone (mE5) is indexed token by token for XTR when the plan says ``token``.
  """
  del config_name
  workdir = pathlib.Path(workdir)
  t0 = time.time()
  with isolated_gin(bindings):
    plan = IndexPlan()
    if not os.path.isfile(plan.corpus):
      raise FileNotFoundError(f"IndexPlan.corpus={plan.corpus!r}: file not found")
    model = _load_retrieval(model_checkpoint(workdir, plan.model))
    generated = workdir / "generated.jsonl"
    if plan.augment and not generated.is_file():
      raise FileNotFoundError(f"{generated}: run the generate stage before an augmented index")
    pooling = plan.pooling or model.extra.get("pooling", "token")
    build = _dense_index if pooling == "mean" else _token_index
    plan = dataclasses.replace(plan, pooling=pooling)
    out = build(plan, model, workdir / "index", generated)
  return {**out, "seconds": round(time.time() - t0, 1)}


# ----------------------------------------------------------------------------- search stage


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SearchPlan:
  """The queries to run against workdir/index and the run file to write."""

  queries: str = ""
  k: int = 100
  exact: bool = False  # exact MaxSim re-scoring of the retrieved candidates (ColBERT-style)
  run_file: str = "run.trec"
  batch_size: int = 64


def search_stage(config_name: str, bindings: Sequence[str], workdir: pathlib.Path) -> dict:
  """XOR-layout queries -> TREC run (workdir/run.trec) over the index stage's index."""
  workdir = pathlib.Path(workdir)
  t0 = time.time()
  with isolated_gin(bindings):
    plan, params = SearchPlan(), SearchParams()
  # The model comes from the checkpoint alone: loaded outside the configuration's gin.
  queries = [(q.id, q.question) for q in formats.iter_queries(plan.queries, require_lang=False)]
  texts = [q for _, q in queries]
  index_dir = workdir / "index"
  if (index_dir / "dense.json").is_file():
    with open(index_dir / "dense.json", encoding="utf-8") as f:
      meta = json.load(f)
    model = _load_retrieval(meta["checkpoint"])
    encoder = DenseEncoder(model.params, model.config, model.proj_dim)
    length = params.query_max_length
    q_ids = model.tokenizer.encode(texts, length, role="query")
    q = encoder.encode(q_ids, plan.batch_size, length)
    scores = q @ np.load(index_dir / "dense_vectors.npy").T
    k = min(plan.k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    pids = meta["passage_ids"]
    results = [[(pids[j], float(scores[i, j])) for j in row] for i, row in enumerate(top)]
  else:
    retriever = Retriever.load(str(index_dir), params=params)
    results = []
    for start in range(0, len(texts), plan.batch_size):
      results += retriever.search(texts[start : start + plan.batch_size], plan.k, plan.exact)
  text = formats.format_trec_run(dict(zip([qid for qid, _ in queries], results)), config_name)
  atomic_write_bytes(str(workdir / plan.run_file), text.encode("utf-8"))
  seconds = time.time() - t0
  return {"num_queries": len(queries), "seconds": round(seconds, 1)}


# ----------------------------------------------------------------------------- generate stage


@gin.configurable
@dataclasses.dataclass(frozen=True)
class GeneratePlan:
  """xQG: questions per passage and language with the ``xqg`` model (Sweep 2)."""

  corpus: str = ""
  languages: Sequence[str] = ()
  num_questions: int = 1
  strategy: str = "topk"
  top_k: int = 10
  temperature: float = 1.0
  batch_size: int = 16
  max_input_length: int = 128
  max_decode_length: int = 32
  seed: int = 0
  model: str = "xqg"


def generate_stage(config_name: str, bindings: Sequence[str], workdir: pathlib.Path) -> dict:
  """Writes workdir/generated.jsonl (``xtr-jax generate`` layout) for the index stage."""
  del config_name
  workdir = pathlib.Path(workdir)
  t0 = time.time()
  with isolated_gin(bindings):
    plan = GeneratePlan()
    if not plan.languages:
      raise ValueError("GeneratePlan.languages is empty")
    settings = xqg_generate.DecodeSettings(
      strategy=plan.strategy,
      num_questions=plan.num_questions,
      top_k=plan.top_k,
      temperature=plan.temperature,
      max_input_length=plan.max_input_length,
      max_decode_length=plan.max_decode_length,
    )
    generator, fingerprint = xqg_generate.load_generator(
      model_checkpoint(workdir, plan.model), settings
    )
    stats = xqg_generate.generate_corpus(
      plan.corpus,
      str(workdir / "generated.jsonl"),
      generator,
      list(plan.languages),
      batch_size=plan.batch_size,
      seed=plan.seed,
      fingerprint=fingerprint,
      progress=False,
    )
  return {"passages": stats["passages"], "seconds": round(time.time() - t0, 1)}


# Silence "imported but unused" for modules imported for their gin registrations.
_GIN_MODULES = (optimizers,)
