"""``xtr-jax sweep``: run named gin configurations through a sequence of stages, resumably.

A sweep gin file configures ``sweep_spec`` (name, base bindings, named configurations, stage
names, plot). For each configuration the runner calls each stage in order,

    stage(config_name, bindings, workdir) -> dict of outputs / metrics

with ``bindings`` = base bindings + the configuration's bindings and ``workdir`` =
OUTPUT/<config_name> (stages hand files to each other through it). After each configuration
one line goes to OUTPUT/results.jsonl; a rerun skips configurations whose last line is "ok" and
reruns crashed ones. At the end it writes OUTPUT/results.{md,csv} and OUTPUT/<sweep>.png.

Stages are registered by name (``register_stage``) or named as "module:function" in
``sweep_spec.stage_targets``, so the wings' train/index/search stages plug in without edits here.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import io as _io
import json
import logging
import math
import os
import pathlib
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import gin
from xtr_jax import gin_utils
from xtr_jax.evaluation import io


class Stage(Protocol):
  def __call__(
    self, config_name: str, bindings: Sequence[str], workdir: pathlib.Path
  ) -> dict[str, Any]: ...


STAGES: dict[str, Stage] = {}


def register_stage(name: str, fn: Stage | None = None):
  """Registers ``fn`` as stage ``name`` (usable as a decorator)."""

  def _register(f: Stage) -> Stage:
    STAGES[name] = f
    return f

  return _register(fn) if fn is not None else _register


@dataclasses.dataclass(frozen=True)
class Configuration:
  name: str
  bindings: tuple[str, ...]
  labels: dict[str, Any]  # e.g. {"num_train_languages": 4}: plot axes and table columns
  stages: tuple[str, ...] | None = None  # overrides the sweep's stages (e.g. BM25: no training)


@dataclasses.dataclass(frozen=True)
class PlotSpec:
  x: str  # a label name
  metric: str  # e.g. "Recall@20": one line per language + the macro average
  title: str = ""
  series: str = ""  # a label: one macro line per value (e.g. few_shot_k), no language lines


@dataclasses.dataclass(frozen=True)
class ReportSpec:
  """What ``--report`` renders: per point, each metric with its 95% bootstrap interval, and
  paired tests between adjacent values of ``x`` within each value of ``series``."""

  x: str
  metrics: tuple[str, ...] = ("Recall@20",)
  series: str = ""
  pairs: tuple[tuple[str, str], ...] = ()  # (A, B) configurations to test beyond adjacent x
  # Points measured by another sweep's report folder, shown here under a name and labels of
  # this sweep's axes ({"name", "from", "config", "labels"}; see sweep_report.borrow).
  borrow: tuple[dict, ...] = ()


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  name: str
  configurations: tuple[Configuration, ...]
  stages: tuple[str, ...]
  base_bindings: tuple[str, ...] = ()
  stage_targets: dict[str, str] = dataclasses.field(default_factory=dict)
  plot: PlotSpec | None = None
  report: ReportSpec | None = None


@gin.configurable
def sweep_spec(
  name: str = gin.REQUIRED,
  configurations: Mapping[str, Mapping[str, Any]] = gin.REQUIRED,
  stages: Sequence[str] = ("train", "index", "search", "evaluate"),
  base_bindings: Sequence[str] = (),
  stage_targets: Mapping[str, str] | None = None,
  plot: Mapping[str, str] | None = None,
  report: Mapping[str, Any] | None = None,
) -> SweepSpec:
  """Builds the sweep from gin.

  ``configurations``: {name: {"bindings": [...], "labels": {...}[, "stages": [...]]}}.
  """
  configs = []
  for cname, c in configurations.items():
    unknown = set(c) - {"bindings", "labels", "stages"}
    if unknown:
      raise ValueError(f"configuration {cname!r}: unknown keys {sorted(unknown)}")
    bindings = c.get("bindings", [])
    if isinstance(bindings, str) or not all(isinstance(b, str) for b in bindings):
      raise ValueError(f"configuration {cname!r}: 'bindings' must be a list of strings")
    own_stages = tuple(c["stages"]) if "stages" in c else None
    configs.append(Configuration(cname, tuple(bindings), dict(c.get("labels", {})), own_stages))
  if not configs:
    raise ValueError(f"sweep {name!r} has no configurations")
  return SweepSpec(
    name=name,
    configurations=tuple(configs),
    stages=tuple(stages),
    base_bindings=tuple(base_bindings),
    stage_targets=dict(stage_targets or {}),
    plot=PlotSpec(**plot) if plot else None,
    report=_report_spec(report) if report else None,
  )


def _report_spec(report: Mapping[str, Any]) -> ReportSpec:
  unknown = set(report) - {"x", "metrics", "series", "pairs", "borrow"}
  if unknown or "x" not in report:
    raise ValueError(f"sweep_spec.report: needs 'x', unknown keys {sorted(unknown)}")
  pairs = tuple(tuple(p) for p in report.get("pairs", ()))
  if any(len(p) != 2 for p in pairs):
    raise ValueError(f"sweep_spec.report: 'pairs' must be [A, B] configuration names, got {pairs}")
  metrics = tuple(report.get("metrics", ("Recall@20",)))
  borrow = tuple(dict(b) for b in report.get("borrow", ()))
  for b in borrow:
    if set(b) != {"name", "from", "config", "labels"}:
      raise ValueError(
        f"sweep_spec.report: each 'borrow' entry needs name, from, config, labels; got {b}"
      )
  return ReportSpec(report["x"], metrics, report.get("series", ""), pairs, borrow)


def resolve_stage(name: str, targets: Mapping[str, str]) -> Stage:
  if name in targets:
    module_name, _, func_name = targets[name].partition(":")
    try:
      # The sweep's gin config is locked by now; a stage module registers its configurables
      # on import, which gin only allows unlocked.
      with gin.unlock_config():
        module = importlib.import_module(module_name)
      return getattr(module, func_name)
    except (ImportError, AttributeError) as e:
      raise ValueError(f"stage {name!r}: cannot load target {targets[name]!r}: {e}") from None
  if name in STAGES:
    return STAGES[name]
  raise ValueError(
    f"unknown stage {name!r}: registered {sorted(STAGES)}, gin stage_targets {sorted(targets)}"
  )


# ----------------------------------------------------------------------------- results file


def read_results(path: pathlib.Path) -> list[dict]:
  if not path.is_file():
    return []
  records = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if line.strip():
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise io.FormatError(f"{path}:{lineno}: not valid JSON: {e}") from None
  return records


def latest_by_config(records: Sequence[dict]) -> dict[str, dict]:
  latest = {}
  for r in records:
    latest[r["config"]] = r
  return latest


def append_result(path: pathlib.Path, record: dict) -> None:
  """Appends one JSON line by rewriting the (small) file atomically."""
  old = path.read_text(encoding="utf-8") if path.is_file() else ""
  io.atomic_write_text(path, old + json.dumps(record, ensure_ascii=False, default=str) + "\n")


# ----------------------------------------------------------------------------- running


def code_version() -> str:
  """The commit the sweep's code is at: ``XTR_JAX_COMMIT`` (set it when running from an
  exported copy of the code), else ``git rev-parse HEAD`` of the package's checkout (with
  ``+dirty`` when tracked files differ), else "unknown"."""
  if os.environ.get("XTR_JAX_COMMIT"):
    return os.environ["XTR_JAX_COMMIT"]
  root = pathlib.Path(__file__).resolve().parents[2]
  try:
    head = subprocess.run(
      ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "xtr_jax", "gin"], check=False
    ).returncode
  except (OSError, subprocess.CalledProcessError):
    return "unknown"
  return head + ("+dirty" if dirty else "")


def run_sweep(
  spec: SweepSpec, output: pathlib.Path, only: Sequence[str] | None = None
) -> list[dict]:
  """Runs every configuration not yet done; returns the latest record of each configuration."""
  output.mkdir(parents=True, exist_ok=True)
  results_path = output / "results.jsonl"
  done = {c for c, r in latest_by_config(read_results(results_path)).items() if r["status"] == "ok"}
  todo = _configurations_to_run(spec, done, only)
  stage_fns = _resolve_stages(spec, todo)
  logging.info(
    "sweep %s: %d configurations, %d done, %d to run",
    spec.name,
    len(spec.configurations),
    len(done),
    len(todo),
  )
  for i, config in enumerate(todo, 1):
    record = _run_configuration(spec, config, stage_fns, output, (i, len(todo)))
    append_result(results_path, record)
  return _write_summaries(spec, output, results_path)


def _configurations_to_run(
  spec: SweepSpec, done: set[str], only: Sequence[str] | None
) -> list[Configuration]:
  """The configurations still to run, in the sweep's order: those ``--only`` names (all when
  it is empty) less those whose latest record is "ok"; a name ``--only`` does not know is an
  error, since a typo would otherwise run nothing and look like success."""
  names = [c.name for c in spec.configurations]
  if only:
    unknown = set(only) - set(names)
    if unknown:
      raise ValueError(f"--only names unknown configuration(s) {sorted(unknown)}; have {names}")
  return [c for c in spec.configurations if (not only or c.name in only) and c.name not in done]


def _resolve_stages(spec: SweepSpec, todo: Sequence[Configuration]) -> dict[str, Stage]:
  """Every stage ``todo`` uses, resolved up front: a typo fails before hours of training,
  not after."""
  stage_names = dict.fromkeys(s for c in todo for s in (c.stages or spec.stages))
  return {name: resolve_stage(name, spec.stage_targets) for name in stage_names}


def _run_configuration(
  spec: SweepSpec,
  config: Configuration,
  stage_fns: Mapping[str, Stage],
  output: pathlib.Path,
  progress: tuple[int, int],
) -> dict[str, Any]:
  """Runs one configuration's stages in OUTPUT/<name>; its results.jsonl record.

  ``progress`` is (this configuration's number, how many run now), for the log.

  A failing stage is recorded (error and traceback) instead of raised, so one broken
  configuration does not stop the sweep and a rerun retries it.
  """
  workdir = output / config.name
  workdir.mkdir(parents=True, exist_ok=True)
  bindings = [*spec.base_bindings, *config.bindings]
  io.atomic_write_text(workdir / "bindings.gin", "\n".join(bindings) + "\n")
  record: dict[str, Any] = {
    "config": config.name,
    "labels": config.labels,
    "commit": code_version(),
    "bindings": bindings,
    "outputs": {},
  }
  start = time.time()
  try:
    for stage_name in config.stages or spec.stages:
      stage = stage_fns[stage_name]
      logging.info("[%d/%d] %s: stage %s", *progress, config.name, stage_name)
      out = stage(config.name, list(bindings), workdir)
      if not isinstance(out, Mapping):
        raise TypeError(f"stage {stage_name!r} returned {type(out).__name__}, expected a dict")
      record["outputs"][stage_name] = dict(out)
    record["status"] = "ok"
  except Exception as e:  # record and go on with the next configuration
    logging.error("%s failed in a stage: %s", config.name, e)
    record.update(
      status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()
    )
  record["seconds"] = round(time.time() - start, 3)
  return record


def _write_summaries(
  spec: SweepSpec, output: pathlib.Path, results_path: pathlib.Path
) -> list[dict]:
  """Tables (and the plot) from the latest record of each configuration in results.jsonl,
  which also holds the configurations earlier runs did: the summaries cover the whole sweep."""
  latest = latest_by_config(read_results(results_path))
  ordered = [latest[c.name] for c in spec.configurations if c.name in latest]
  write_tables(ordered, output)
  if spec.plot:
    plot_sweep(ordered, spec.plot, output / f"{spec.name}.png", spec.name)
  return ordered


# ----------------------------------------------------------------------------- tables and plot


def flatten_outputs(outputs: Mapping[str, Any]) -> dict[str, float]:
  """Numeric leaves as "stage/metric/lang" columns (per-query scores and counts dropped)."""
  flat: dict[str, float] = {}

  def walk(prefix: list[str], value: Any) -> None:
    if isinstance(value, Mapping):
      for k, v in value.items():
        if k in ("per_query", "counts"):
          continue
        walk(prefix if k in ("metrics", "per_lang") else [*prefix, str(k)], v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      flat["/".join(prefix)] = float(value)

  walk([], outputs)
  return flat


def table_rows(records: Sequence[dict]) -> tuple[list[str], list[dict[str, Any]]]:
  label_cols = list(dict.fromkeys(k for r in records for k in r.get("labels", {})))
  rows, value_cols = [], []
  for r in records:
    flat = flatten_outputs(r.get("outputs", {})) if r["status"] == "ok" else {}
    value_cols += [k for k in flat if k not in value_cols]
    rows.append({"config": r["config"], **r.get("labels", {}), "status": r["status"], **flat})
  return ["config", *label_cols, "status", *value_cols], rows


def write_tables(records: Sequence[dict], output: pathlib.Path) -> None:
  columns, rows = table_rows(records)
  buf = _io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  io.atomic_write_text(output / "results.csv", buf.getvalue())

  def cell(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else ("" if v is None else str(v))

  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
  lines += metric_tables(records)
  io.atomic_write_text(output / "results.md", "\n".join(lines) + "\n")


def metric_tables(records: Sequence[dict]) -> list[str]:
  """One table per evaluated metric: configurations x languages + macro (markdown lines)."""
  blocks: dict[str, dict[str, Mapping[str, Any]]] = {}
  for r in records:
    if r["status"] != "ok":
      continue
    for out in r.get("outputs", {}).values():
      metrics = out.get("metrics") if isinstance(out, Mapping) else None
      for name, block in (metrics or {}).items():
        if isinstance(block, Mapping) and "per_lang" in block:
          blocks.setdefault(name, {})[r["config"]] = block
  lines = []
  for name, per_config in blocks.items():
    langs = sorted({lang for b in per_config.values() for lang in b["per_lang"]})
    lines += ["", f"**{name}**", "", "| config | " + " | ".join([*langs, "macro"]) + " |"]
    lines.append("|---|" + "---:|" * (len(langs) + 1))
    for config, b in per_config.items():
      values = [b["per_lang"].get(lang) for lang in langs] + [b.get("macro")]
      lines.append(
        f"| {config} | " + " | ".join("" if v is None else f"{v:.2f}" for v in values) + " |"
      )
  return lines


def _metric_block(outputs: Mapping[str, Any], metric: str) -> Mapping[str, Any] | None:
  """Finds {"per_lang": ..., "macro": ...} for ``metric`` in any stage's outputs."""
  for out in outputs.values():
    block = out.get("metrics", out).get(metric) if isinstance(out, Mapping) else None
    if isinstance(block, Mapping):
      return block
  return None


def plot_sweep(records: Sequence[dict], plot: PlotSpec, path: pathlib.Path, title: str) -> None:
  """One line per language and a bold macro average of ``plot.metric`` against ``plot.x``."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  points, baselines, series = [], [], {}
  for r in records:
    block = _metric_block(r.get("outputs", {}), plot.metric) if r["status"] == "ok" else None
    labels = r.get("labels", {})
    if block is not None and plot.x in labels:
      points.append((labels[plot.x], block))
      series.setdefault(labels.get(plot.series), []).append((labels[plot.x], block))
    elif block is not None and isinstance(block.get("macro"), (int, float)):
      baselines.append((r["config"], block["macro"]))  # e.g. BM25: a reference line
  fig, ax = plt.subplots(figsize=(7, 4.5))
  numeric = all(isinstance(x, (int, float)) for x, _ in points)
  if numeric:
    points.sort(key=lambda t: t[0])
  xs = [x for x, _ in points] if numeric else list(range(len(points)))
  if plot.series and numeric:  # one macro line per series value (e.g. few-shot k)
    for value, pts in sorted(series.items(), key=lambda t: str(t[0])):
      pts.sort(key=lambda t: t[0])
      ax.plot([x for x, _ in pts], [b.get("macro", math.nan) for _, b in pts], marker="s",
              linewidth=2, label=f"{plot.series} = {value}")  # fmt: skip
  else:
    langs = sorted({lang for _, b in points for lang in b.get("per_lang", {})})
    for lang in langs:
      ys = [b.get("per_lang", {}).get(lang, math.nan) for _, b in points]
      ax.plot(xs, ys, marker="o", linewidth=1, alpha=0.7, label=lang)
    macro = [b.get("macro", math.nan) for _, b in points]
    ax.plot(xs, macro, marker="s", color="black", linewidth=2.5, label="average")
  for name, value in baselines:
    ax.axhline(value, color="grey", linestyle="--", linewidth=1.5, label=f"{name} (average)")
  if not numeric:
    ax.set_xticks(xs, [str(x) for x, _ in points])
  ax.set_xlabel(plot.x)
  ax.set_ylabel(plot.metric)
  ax.set_title(plot.title or title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  tmp = path.with_name(f".{path.name}.tmp.png")
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  tmp.replace(path)


# ----------------------------------------------------------------------------- evaluate stage


@gin.configurable
def evaluate_stage(
  config_name: str,
  bindings: Sequence[str],
  workdir: pathlib.Path,
  queries: str = gin.REQUIRED,
  qrels: str | None = None,
  corpus: str | None = None,
  run_file: str = "run.trec",
  metrics: str = "Recall@20,Recall@100,MRR@10,nDCG@10",
  extra_flags: Sequence[str] = (),
) -> dict[str, Any]:
  """Scores workdir/run_file (written by the search stage) with ``xtr-jax evaluate``."""
  del config_name, bindings
  from xtr_jax.evaluation import cli as eval_cli

  argv = [
    "--run",
    str(workdir / run_file),
    "--queries",
    queries,
    "--metrics",
    metrics,
    "--output",
    str(workdir / "eval"),
    *extra_flags,
  ]
  argv += ["--qrels", qrels] if qrels else []
  argv += ["--corpus", corpus] if corpus else []
  if eval_cli.main(argv) != 0:
    raise RuntimeError(f"xtr-jax evaluate failed for {workdir / run_file}")
  with open(workdir / "eval.json", encoding="utf-8") as f:
    payload = json.load(f)
  return {
    "metrics": {
      m: {k: v for k, v in s.items() if k != "per_query"} for m, s in payload["metrics"].items()
    }
  }


register_stage("evaluate", evaluate_stage)


@gin.configurable
def bm25_stage(
  config_name: str,
  bindings: Sequence[str],
  workdir: pathlib.Path,
  queries: str = gin.REQUIRED,
  corpus: str = gin.REQUIRED,
  run_file: str = "run.trec",
  k: int = 100,
) -> dict[str, Any]:
  """The BM25 baseline as a search stage: writes workdir/run_file."""
  del config_name, bindings
  from xtr_jax.experiments import bm25

  run = bm25.bm25_run(io.read_queries(queries), bm25.read_corpus_with_titles(corpus), k=k)
  io.write_trec_run(workdir / run_file, run, tag="bm25")
  return {"run": str(workdir / run_file), "num_queries": len(run)}


register_stage("bm25", bm25_stage)


# ----------------------------------------------------------------------------- CLI


def write_report(spec: SweepSpec, output: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
  """``--report``: the queries file comes from the sweep's own ``evaluate_stage.queries``."""
  from xtr_jax.experiments import sweep_report  # noqa: PLC0415

  if spec.report is None:
    raise ValueError(f"sweep {spec.name!r} sets no sweep_spec.report (x, metrics, series)")
  queries = gin.query_parameter("evaluate_stage.queries")
  r = spec.report
  expected = {c.name: [*spec.base_bindings, *c.bindings] for c in spec.configurations}
  return sweep_report.report(
    output, dest, spec.name, r.x, r.metrics, r.series, queries, r.pairs, r.borrow, expected
  )


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="xtr-jax sweep", description=__doc__)
  parser.add_argument("--output", required=True, help="Sweep folder (results.jsonl, tables, plot).")
  parser.add_argument(
    "--only", default="", help="Comma-separated configuration names to run (default: all)."
  )
  parser.add_argument("--dry_run", action="store_true", help="Print configurations, run nothing.")
  parser.add_argument(
    "--report",
    metavar="DIR",
    help="Run nothing: copy the recorded results of --output (when there) into DIR and render "
    "DIR/report.md and the plot from them alone (sweep_spec.report says what). Points of DIR's "
    "earlier report that --output has no record of are kept, if run with today's bindings.",
  )
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
  try:
    args = gin_utils.parse_args_with_gin(parser, argv)
    spec = sweep_spec()
    if args.dry_run:
      for c in spec.configurations:
        print(f"{c.name} {json.dumps(c.labels)} stages: {' -> '.join(c.stages or spec.stages)}")
        for b in [*spec.base_bindings, *c.bindings]:
          print(f"  {b}")
      return 0
    if args.report:
      print(write_report(spec, pathlib.Path(args.output), pathlib.Path(args.report)))
      return 0
    only = [s for s in args.only.split(",") if s]
    records = run_sweep(spec, pathlib.Path(args.output), only or None)
  except (FileNotFoundError, ValueError) as e:
    print(f"xtr-jax sweep: error: {e}", file=sys.stderr)
    return 2
  failed = [r["config"] for r in records if r["status"] != "ok"]
  print((pathlib.Path(args.output) / "results.md").read_text(encoding="utf-8"))
  if failed:
    print(f"failed configurations (rerun to retry): {failed}", file=sys.stderr)
    return 1
  return 0
