"""XOR-TyDi question translations as extra xQG training pairs (English question -> L question).

A generator trained from scratch (the CPU recipes) has no translation knowledge: from ~1.2k
XQuAD pairs a language it learns each language's question *opening*, not how an English
entity or noun is written in Arabic or Russian. XOR-TyDi ships human English translations of
its questions (``{L}-en/{L}.txt`` and ``{L}-en/en.txt``, line-aligned); written in the SWIM-IR
record layout with the English question as the ``text``, they become pairs of the same shape
as passage -> question ("Generate a Russian question for this passage: <English>" -> Russian
question), so the seq2seq recipe reads them unchanged and the generator learns to carry
content across languages. Questions that are also evaluation queries are dropped by exact
string (``exclude``), so the dev set never leaks into training.

  python -m xtr_jax.data.question_translations --root ../shared/data/xor_tydi/question_translations \
      --languages ar,fi,ja,ru --exclude ../shared/data/xor_mini/dev.jsonl --output qt_pairs.jsonl
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Iterator

from xtr_jax import io as xio
from xtr_jax.data import formats
from xtr_jax.data.languages import LANGUAGE_NAMES


def _read_lines(path: str) -> list[str]:
  if not xio.isfile(path):
    raise FileNotFoundError(f"question translations: {path} not found")
  with xio.open_file(path) as f:
    return [line.rstrip("\n") for line in f]


def translation_pairs(
  root: str, languages: Iterable[str], exclude: Iterable[str] = ()
) -> Iterator[dict[str, str]]:
  """SWIM-IR-layout records (``query`` = question in L, ``text`` = its English translation).

  Raises a ValueError naming both files when they are not line-aligned, and skips pairs with
  an empty side (they teach nothing). Duplicated (L, en) pairs are written once.
  """
  excluded = {q.strip() for q in exclude}
  for code in languages:
    if code not in LANGUAGE_NAMES:
      raise ValueError(f"unknown language code {code!r}")
    folder = os.path.join(root, f"{code}-en")
    src_path, en_path = os.path.join(folder, f"{code}.txt"), os.path.join(folder, "en.txt")
    questions, english = _read_lines(src_path), _read_lines(en_path)
    if len(questions) != len(english):
      raise ValueError(
        f"{src_path} has {len(questions)} lines but {en_path} has {len(english)}: "
        "translations must be line-aligned"
      )
    seen: set[tuple[str, str]] = set()
    for lineno, (q, en) in enumerate(zip(questions, english), 1):
      q, en = q.strip(), en.strip()
      if not q or not en or q in excluded or (q, en) in seen:
        continue
      seen.add((q, en))
      yield {
        "_id": f"xor-qt-{code}-{lineno}",
        "lang": LANGUAGE_NAMES[code],
        "code": code,
        "query": q,
        "title": "",
        "text": en,
        "source": "xor_tydi_question_translations",
      }


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--root", required=True, help="folder holding {L}-en/{L}.txt and en.txt")
  p.add_argument("--languages", required=True, help="comma-separated codes, e.g. ar,fi,ja,ru")
  p.add_argument("--exclude", action="append", default=[], help="XOR JSONL queries to drop")
  p.add_argument("--output", required=True)
  args = p.parse_args(argv)
  try:
    exclude = [q.question for path in args.exclude for q in formats.iter_queries(path)]
    rows = list(translation_pairs(args.root, args.languages.split(","), exclude))
  except (ValueError, OSError) as e:  # malformed/missing files and unknown codes: one line
    p.error(str(e))
  formats.write_jsonl(args.output, rows)
  print(f"wrote {len(rows)} pairs to {args.output}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
