"""Share of generated questions written in the requested language's script, per language.

A question counts when the Unicode script holding most of its letters is the one expected
for its language (Japanese: Kana or Han). The same measure on the human questions of the
pair files (``--reference``) shows what the measure gives on correct text.

  .venv/bin/python benchmarks/xqg_script_share.py --generated outputs/generated.jsonl \
    --reference '../shared/data/pairs_swim_ir_layout/cross_lingual/*.jsonl'
"""

from __future__ import annotations

import argparse
import glob
import json

from xtr_jax.xqg.script_share import share_table, shares


def _generated(path):
  with open(path, encoding="utf-8") as f:
    for line in f:
      for code, qs in json.loads(line)["generated_queries"].items():
        for q in qs:
          yield code, q


def _reference(pattern):
  for path in sorted(glob.glob(pattern)):
    with open(path, encoding="utf-8") as f:
      for line in f:
        r = json.loads(line)
        yield r["code"], r["query"]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--generated", required=True)
  parser.add_argument("--reference", help="Glob of SWIM-IR layout JSONL (human questions).")
  args = parser.parse_args()
  gen = shares(_generated(args.generated))
  ref = shares(_reference(args.reference)) if args.reference else {}
  print(share_table(gen, ref))


if __name__ == "__main__":
  main()
