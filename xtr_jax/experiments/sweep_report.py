"""``xtr-jax sweep --report DIR``: a sweep's tables, intervals, paired tests and plot, rendered
from its recorded results alone.

``collect`` copies what a report needs out of a sweep folder into ``DIR``: the records
(``results.jsonl``) and, per configuration, the per-query scores of the report's metrics with
each query's language (``scores/<config>.json``). ``render`` then reads ``DIR`` and nothing
else, so a figure in ``results/`` can always be rebuilt, and is never typed by hand.

Every point gets its macro average (the mean over languages, as the tables report it) with a
95% bootstrap interval that resamples queries within each language; adjacent points on the
x axis (within one series, e.g. the same few-shot k) get a paired test: the paired t-test on
per-query scores and the paired bootstrap interval of the macro difference.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xtr_jax import io as xio
from xtr_jax.evaluation import io as eval_io
from xtr_jax.evaluation import significance

SCORES_DIR = "scores"


# ----------------------------------------------------------------------------- collect


def collect(
  sweep_dir: pathlib.Path, dest: pathlib.Path, metrics: Sequence[str], queries: str
) -> int:
  """Copies the records and the per-query scores of ``metrics`` into ``dest``; returns how
  many configurations had scores. ``queries`` (the evaluated queries file) gives languages."""
  from xtr_jax.experiments.sweep import latest_by_config, read_results  # noqa: PLC0415

  records = read_results(sweep_dir / "results.jsonl")
  if not records:
    raise FileNotFoundError(f"{sweep_dir / 'results.jsonl'}: no recorded results to report")
  langs = {qid: q.lang for qid, q in eval_io.read_queries(queries).items()}
  (dest / SCORES_DIR).mkdir(parents=True, exist_ok=True)
  kept = [{k: v for k, v in r.items() if k != "traceback"} for r in records]
  text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in kept)
  xio.atomic_write_text(str(dest / "results.jsonl"), text)
  n = 0
  for name, record in latest_by_config(records).items():
    path = sweep_dir / name / "eval.json"
    if record["status"] != "ok" or not path.is_file():
      continue
    scored = json.loads(path.read_text(encoding="utf-8"))["metrics"]
    missing = [m for m in metrics if m not in scored]
    if missing:
      raise ValueError(f"{path}: no per-query scores for {missing} (have {sorted(scored)})")
    per_query = {m: scored[m]["per_query"] for m in metrics}
    qids = sorted(per_query[metrics[0]])
    unknown = [q for q in qids if q not in langs]
    if unknown:
      raise ValueError(f"{path}: queries {unknown[:3]} are not in {queries}")
    doc = {"lang": {q: langs[q] for q in qids}, "per_query": per_query}
    xio.atomic_write_text(str(dest / SCORES_DIR / f"{name}.json"), json.dumps(doc))
    n += 1
  return n


def borrow(dest: pathlib.Path, points: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> None:
  """Adds points measured by another sweep to ``dest``: for each {"name", "from", "config",
  "labels"}, the record and per-query scores of ``config`` in the report folder ``from``,
  under ``name`` with ``labels`` (this sweep's axes).

  Why: sweeps share points (sweep 1b's "all pairs at N = 4" is sweep 1's n4_k32), and
  training one again costs twenty minutes for the same numbers. The record keeps its own
  commit, bindings and outputs and says where it came from (``borrowed_from``), so the
  report shows what was run, not a relabelled copy.
  """
  from xtr_jax.experiments.sweep import append_result, latest_by_config, read_results  # noqa: PLC0415

  for point in points:
    source = pathlib.Path(point["from"])
    where = f"sweep_spec.report.borrow {point['name']!r}: {source}"
    record = latest_by_config(read_results(source / "results.jsonl")).get(point["config"])
    if record is None or record["status"] != "ok":
      raise ValueError(f"{where}/results.jsonl: no ok record of {point['config']!r}")
    scores_path = source / SCORES_DIR / f"{point['config']}.json"
    doc = _read_scores(
      scores_path, metrics, f"{where}: {scores_path} missing (render that report first)"
    )
    _same_queries(dest, doc["lang"], scores_path)
    kept = {"lang": doc["lang"], "per_query": {m: doc["per_query"][m] for m in metrics}}
    xio.atomic_write_text(str(dest / SCORES_DIR / f"{point['name']}.json"), json.dumps(kept))
    origin = {"folder": str(source), "config": point["config"], "labels": record.get("labels")}
    append_result(
      dest / "results.jsonl",
      {**record, "config": point["name"], "labels": dict(point["labels"]), "borrowed_from": origin},
    )


def _read_scores(path: pathlib.Path, metrics: Sequence[str], missing_file: str) -> dict:
  """A report folder's scores/<config>.json, which must hold every metric of ``metrics``."""
  if not path.is_file():
    raise FileNotFoundError(missing_file)
  doc = json.loads(path.read_text(encoding="utf-8"))
  missing = [m for m in metrics if m not in doc["per_query"]]
  if missing:
    raise ValueError(f"{path}: no per-query scores for {missing}")
  return doc


def _same_queries(dest: pathlib.Path, lang: Mapping[str, str], source: pathlib.Path) -> None:
  """A borrowed point is paired with this sweep's points, so it must score the same queries."""
  for path in sorted((dest / SCORES_DIR).glob("*.json"))[:1]:
    here = json.loads(path.read_text(encoding="utf-8"))["lang"]
    if set(here) != set(lang):
      raise ValueError(
        f"{source}: scores {len(lang)} queries, not the {len(here)} of {path} (another query set)"
      )


# ----------------------------------------------------------------------------- statistics


def _groups(scores: Mapping[str, float], lang: Mapping[str, str]) -> dict[str, np.ndarray]:
  by: dict[str, list[float]] = {}
  for qid in sorted(scores):
    by.setdefault(lang[qid], []).append(scores[qid])
  return {k: np.asarray(v) for k, v in sorted(by.items())}


def point_summary(scores: Mapping[str, float], lang: Mapping[str, str], seed: int = 0) -> dict:
  """Macro average (x100) with its 95% stratified bootstrap interval, and per language."""
  groups = _groups(scores, lang)
  low, high = significance.macro_bootstrap_ci(list(groups.values()), seed=seed)
  return {
    "macro": 100 * float(np.mean([g.mean() for g in groups.values()])),
    "ci": (100 * low, 100 * high),
    "per_lang": {k: 100 * float(g.mean()) for k, g in groups.items()},
  }


def paired_summary(
  a: Mapping[str, float], b: Mapping[str, float], lang: Mapping[str, str], seed: int = 0
) -> dict:
  """A - B: macro difference (x100), its paired stratified bootstrap interval, paired t p."""
  xa, xb, qids = significance.paired_arrays(a, b)
  diff = dict(zip(qids, xa - xb))
  groups = _groups(diff, lang)
  low, high = significance.macro_bootstrap_ci(list(groups.values()), seed=seed)
  _, p = significance.paired_t_test(xa, xb)
  return {
    "diff": 100 * float(np.mean([g.mean() for g in groups.values()])),
    "ci": (100 * low, 100 * high),
    "p_value": p,
  }


# ----------------------------------------------------------------------------- render


def _load(dest: pathlib.Path) -> tuple[list[dict], dict[str, dict]]:
  from xtr_jax.experiments.sweep import latest_by_config, read_results  # noqa: PLC0415

  records = list(latest_by_config(read_results(dest / "results.jsonl")).values())
  scores = {}
  for path in sorted((dest / SCORES_DIR).glob("*.json")):
    scores[path.stem] = json.loads(path.read_text(encoding="utf-8"))
  return records, scores


def _series_points(
  records: Sequence[dict], scores: Mapping[str, dict], x: str, series: str
) -> dict[Any, list[tuple[Any, str]]]:
  """{series value: [(x value, config), ...] sorted by x} for configurations with scores."""
  out: dict[Any, list[tuple[Any, str]]] = {}
  for r in records:
    labels = r.get("labels", {})
    if r["config"] in scores and x in labels:
      out.setdefault(labels.get(series) if series else "", []).append((labels[x], r["config"]))
  return {k: sorted(v, key=lambda t: t[0]) for k, v in sorted(out.items(), key=lambda t: str(t[0]))}


def _fmt_ci(s: dict) -> str:
  return f"{s['macro']:.1f} [{s['ci'][0]:.1f}, {s['ci'][1]:.1f}]"


def _baselines(records: Sequence[dict], scores: Mapping[str, dict], x: str) -> list[str]:
  return [r["config"] for r in records if r["config"] in scores and x not in r.get("labels", {})]


def render(
  dest: pathlib.Path,
  name: str,
  x: str,
  metrics: Sequence[str],
  series: str = "",
  pairs: Sequence[tuple[str, str]] = (),
) -> pathlib.Path:
  """Writes dest/report.md and dest/<name>.png from dest's records and scores alone.

  ``pairs``: (A, B) configurations to test against each other beyond adjacent points (e.g.
  one language with 1,000 pairs against four with 250 each: coverage at equal data).
  """
  records, scores = _load(dest)
  if not scores:
    raise FileNotFoundError(f"{dest / SCORES_DIR}: no per-configuration scores to render")
  points = _series_points(records, scores, x, series)
  baselines = _baselines(records, scores, x)
  lines = [f"# Sweep {name}: report", ""]
  lines += _status_lines(records)
  # Each point's bootstrap once per metric: the tables and the plot all read these.
  summaries = {
    m: {c: point_summary(s["per_query"][m], s["lang"]) for c, s in scores.items()} for m in metrics
  }
  for metric in metrics:
    lines += _point_table(metric, points, baselines, summaries[metric], x, series)
    lines += _paired_table(metric, points, scores, x, series)
    lines += _explicit_pairs_table(metric, pairs, scores)
  lines += _language_table(metrics[0], points, baselines, summaries[metrics[0]])
  report = dest / "report.md"
  xio.atomic_write_text(str(report), "\n".join(lines) + "\n")
  plot(dest / f"{name}.png", metrics[0], points, baselines, summaries[metrics[0]], x, series, name)
  return report


def _status_lines(records: Sequence[dict]) -> list[str]:
  ok = [r for r in records if r["status"] == "ok"]
  failed = [r["config"] for r in records if r["status"] != "ok"]
  hours = sum(float(r.get("seconds", 0)) for r in ok) / 3600
  commits = sorted({str(r.get("commit", "unknown")) for r in ok})
  lines = [
    f"{len(ok)} configurations recorded ok ({hours:.2f} h of stage time), commit(s) "
    + ", ".join(f"`{c}`" for c in commits)
    + "."
  ]
  if failed:
    lines.append(f"Failed (rerun the sweep to retry): {', '.join(failed)}.")
  carried = [f"`{r['config']}`" for r in ok if r.get("carried")]
  if carried:
    lines.append(
      f"Kept from this folder's earlier report (not in the sweep folder now): {', '.join(carried)}."
    )
  for r in ok:
    if "borrowed_from" in r:
      b = r["borrowed_from"]
      lines.append(f"`{r['config']}` is `{b['config']}` of `{b['folder']}` (borrowed, not rerun).")
  return [*lines, ""]


def _point_table(metric, points, baselines, summaries, x, series) -> list[str]:
  head = f"| {series or 'series'} | {x} | config | {metric} macro [95% CI] |"
  lines = [f"## {metric}", "", head, "|---|---:|---|---|"]
  for s, pts in points.items():
    for xv, config in pts:
      lines.append(f"| {s} | {xv} | {config} | {_fmt_ci(summaries[config])} |")
  for config in baselines:
    lines.append(f"| (baseline) | | {config} | {_fmt_ci(summaries[config])} |")
  return [*lines, ""]


def _paired_table(metric, points, scores, x, series) -> list[str]:
  lines = [
    f"Paired tests between adjacent {x} ({metric}, macro difference, paired t on queries):",
    "",
    f"| {series or 'series'} | A | B | A - B | 95% CI | p |",
    "|---|---|---|---:|---|---:|",
  ]
  for s, pts in points.items():
    for (_, b), (_, a) in zip(pts, pts[1:]):
      lang = scores[a]["lang"]
      d = paired_summary(scores[a]["per_query"][metric], scores[b]["per_query"][metric], lang)
      lines.append(
        f"| {s} | {a} | {b} | {d['diff']:+.1f} | [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] | "
        f"{d['p_value']:.3g} |"
      )
  return [*lines, ""]


def _explicit_pairs_table(metric, pairs, scores) -> list[str]:
  missing = sorted({c for pair in pairs for c in pair if c not in scores})
  rows = [(a, b) for a, b in pairs if a in scores and b in scores]
  if not pairs:
    return []
  lines = [f"Paired tests asked for ({metric}):", "", "| A | B | A - B | 95% CI | p |"]
  lines.append("|---|---|---:|---|---:|")
  for a, b in rows:
    d = paired_summary(
      scores[a]["per_query"][metric], scores[b]["per_query"][metric], scores[a]["lang"]
    )
    lines.append(
      f"| {a} | {b} | {d['diff']:+.1f} | [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] | "
      f"{d['p_value']:.3g} |"
    )
  if missing:
    lines.append(f"\n(not scored yet: {', '.join(missing)})")
  return [*lines, ""]


def _language_table(metric, points, baselines, summaries) -> list[str]:
  configs = [c for pts in points.values() for _, c in pts] + baselines
  per = {c: summaries[c] for c in configs}
  langs = sorted({k for s in per.values() for k in s["per_lang"]})
  lines = [f"## {metric} per language", "", "| config | " + " | ".join(langs) + " | macro |"]
  lines.append("|---|" + "---:|" * (len(langs) + 1))
  for c in configs:
    cells = [f"{per[c]['per_lang'].get(k, math.nan):.1f}" for k in langs]
    lines.append(f"| {c} | " + " | ".join(cells) + f" | {per[c]['macro']:.1f} |")
  return [*lines, ""]


def plot(path, metric, points, baselines, summaries, x, series, title) -> None:
  """Macro ``metric`` against ``x``, one line per series value, 95% intervals as error bars;
  baselines (configurations without ``x``, e.g. BM25) as dashed lines."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for s, pts in points.items():
    sums = [summaries[c] for _, c in pts]
    xs = [xv for xv, _ in pts]
    ys = [v["macro"] for v in sums]
    err = [[y - v["ci"][0] for y, v in zip(ys, sums)], [v["ci"][1] - y for y, v in zip(ys, sums)]]
    label = f"{series} = {s}" if series else "macro"
    ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, linewidth=2, label=label)
  for c in baselines:
    v = summaries[c]["macro"]
    ax.axhline(v, color="grey", linestyle="--", linewidth=1.2, label=c)
  ax.set_xlabel(x)
  ax.set_ylabel(f"{metric} (macro, %)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  tmp = path.with_name(f".{path.name}.tmp.png")
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  tmp.replace(path)


def report(
  sweep_dir: pathlib.Path | None,
  dest: pathlib.Path,
  name: str,
  x: str,
  metrics: Sequence[str],
  series: str,
  queries: str,
  pairs: Sequence[tuple[str, str]] = (),
  borrowed: Sequence[Mapping[str, Any]] = (),
  expected: Mapping[str, Sequence[str]] | None = None,
) -> pathlib.Path:
  """collect (when the sweep folder is there) + the points carried over from dest's earlier
  report (see ``carried``; only when ``expected``, {config: bindings}, is given) + the
  borrowed points + render."""
  if sweep_dir is not None and (sweep_dir / "results.jsonl").is_file():
    own = dest.resolve() == sweep_dir.resolve()
    if borrowed and own:  # before anything is written: the sweep's records stay its own
      raise ValueError(f"{dest}: borrowed points go to a report folder, not the sweep's own")
    kept = [] if own or expected is None else carried(dest, sweep_dir, expected, metrics)
    if not own:
      shutil.rmtree(dest / SCORES_DIR, ignore_errors=True)
    collect(sweep_dir, dest, metrics, queries)
    _write_carried(dest, kept)
    borrow(dest, borrowed, metrics)
  return render(dest, name, x, metrics, series, pairs)


def carried(
  dest: pathlib.Path,
  sweep_dir: pathlib.Path,
  expected: Mapping[str, Sequence[str]],
  metrics: Sequence[str],
) -> list[tuple[dict, dict]]:
  """The (record, scores) pairs of dest's earlier report that a new collect keeps: its own
  (not borrowed) ok points that the sweep folder has no ok record of.

  Why: the report folder is what is committed; the sweep folder (checkpoints, indexes) is
  scratch that stays on the machine that ran it. A sweep extended later, on another
  machine, runs only its new points into a fresh folder, and its report must still show
  the points run before, each with its own record (commit, bindings). A kept point whose
  recorded bindings are not the ones sweep_spec gives it now would mix two experiments,
  so that is an error naming it; rerunning it into the sweep folder replaces it.
  """
  from xtr_jax.experiments.sweep import latest_by_config, read_results  # noqa: PLC0415

  fresh = {
    c for c, r in latest_by_config(read_results(sweep_dir / "results.jsonl")).items()
    if r["status"] == "ok"
  }  # fmt: skip
  kept = []
  for name, record in latest_by_config(read_results(dest / "results.jsonl")).items():
    if name in fresh or name not in expected or record["status"] != "ok":
      continue
    if "borrowed_from" in record:
      continue  # borrowed again from its source below
    where = f"{dest / 'results.jsonl'}: recorded {name!r}"
    if list(record.get("bindings", [])) != list(expected[name]):
      raise ValueError(
        f"{where} ran with other bindings than sweep_spec gives it now; rerun it "
        f"(xtr-jax sweep --only {name}) or remove its record"
      )
    path = dest / SCORES_DIR / f"{name}.json"
    doc = _read_scores(path, metrics, f"{where} has no per-query scores ({path} missing)")
    kept.append(({**record, "carried": True}, doc))
  return kept


def _write_carried(dest: pathlib.Path, kept: Sequence[tuple[dict, dict]]) -> None:
  from xtr_jax.experiments.sweep import append_result  # noqa: PLC0415

  for record, doc in kept:
    _same_queries(dest, doc["lang"], dest / SCORES_DIR / f"{record['config']}.json")
    xio.atomic_write_text(str(dest / SCORES_DIR / f"{record['config']}.json"), json.dumps(doc))
    append_result(dest / "results.jsonl", record)
