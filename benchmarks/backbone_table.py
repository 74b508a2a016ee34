"""Renders one results table from several ``xtr-jax evaluate`` JSON files, with paired tests.

Every number comes from the evaluation JSONs (per-query scores included), so the table
and the tests are never typed by hand:

  python benchmarks/backbone_table.py --system "BM25=/tmp/ev/bm25_eval.json" \
    --system "mE5 single=/tmp/me5/mean_eval.json" --pair "mE5 single:BM25" \
    --intro results/intro.md --output results/me5_xor_mini.md

The exact command that renders results/me5_xor_mini.md: `bash benchmarks/render_me5_table.sh`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from xtr_jax.evaluation.cli import compare_runs

METRICS = ("Recall@20", "Success@20", "Recall@100", "MRR@10", "R@2kt", "R@5kt")


def _load(spec: str) -> tuple[str, dict]:
  name, _, path = spec.partition("=")
  if not path:
    raise SystemExit(f"--system {spec!r}: expected NAME=EVAL_JSON")
  data = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
  return name, data["metrics"]


def _cell(x) -> str:
  return "-" if x is None else f"{x:.1f}"


def macro_table(systems: dict[str, dict]) -> list[str]:
  lines = ["| system | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
  for name, scores in systems.items():
    lines.append(f"| {name} | " + " | ".join(_cell(scores[m]["macro"]) for m in METRICS) + " |")
  return lines


def language_table(systems: dict[str, dict], metric: str = "Recall@20") -> list[str]:
  langs = sorted({lang for s in systems.values() for lang in s[metric]["per_lang"]})
  lines = ["| system | " + " | ".join(langs) + " | macro |", "|---|" + "---:|" * (len(langs) + 1)]
  for name, scores in systems.items():
    per = scores[metric]["per_lang"]
    cells = [_cell(per.get(lang)) for lang in langs] + [_cell(scores[metric]["macro"])]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return lines


def pair_table(systems: dict[str, dict], pairs: list[tuple[str, str]], seed: int) -> list[str]:
  lines = [
    "| A vs B | metric | A | B | A-B | p (paired t) | 95% bootstrap CI |",
    "|---|---|---:|---:|---:|---:|---|",
  ]
  for a, b in pairs:
    wanted = {m: systems[a][m] for m in ("Recall@20", "R@2kt", "MRR@10")}
    other = {m: systems[b][m] for m in wanted}
    for m, c in compare_runs(wanted, other, samples=10_000, confidence=0.95, seed=seed).items():
      lines.append(
        f"| {a} vs {b} | {m} | {c['mean_a']:.2f} | {c['mean_b']:.2f} | {c['diff']:+.2f} | "
        f"{c['p_value']:.3g} | [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] |"
      )
  return lines


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--system", action="append", required=True, help="NAME=EVAL_JSON (repeat).")
  p.add_argument("--pair", action="append", default=[], help="A:B paired test (repeat).")
  p.add_argument("--intro", help="Markdown placed before the tables (commands, machine, date).")
  p.add_argument("--outro", help="Markdown placed after the tables (the reading).")
  p.add_argument("--output", required=True)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  systems = dict(_load(s) for s in args.system)
  pairs = []
  for spec in args.pair:
    a, _, b = spec.partition(":")
    if a not in systems or b not in systems:
      raise SystemExit(f"--pair {spec!r}: unknown system (have {sorted(systems)})")
    pairs.append((a, b))
  parts = [pathlib.Path(args.intro).read_text(encoding="utf-8")] if args.intro else []
  parts += ["## Macro average over the 7 languages (percent)", "", *macro_table(systems), ""]
  parts += ["## Recall@20 per language", "", *language_table(systems), ""]
  if pairs:
    title = "## Paired tests (all queries; A and B are means over queries, not macro)"
    parts += [title, "", *pair_table(systems, pairs, args.seed), ""]
  if args.outro:
    parts.append(pathlib.Path(args.outro).read_text(encoding="utf-8"))
  out = pathlib.Path(args.output)
  tmp = out.with_name(f".{out.name}.tmp")
  tmp.write_text("\n".join(parts).rstrip() + "\n", encoding="utf-8")
  tmp.replace(out)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
