"""Assembles README.md from the per-wing sections in docs/ (run after editing any of them).

Each wing documents itself in ``docs/readme_<wing>.md``; keeping the README a concatenation
lets the wings change their sections independently and keeps one order for readers.

  python docs/assemble_readme.py          # rewrites README.md
  python docs/assemble_readme.py --check  # exits 1 if README.md is stale
"""

from __future__ import annotations

import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ORDER = (
  "head",
  "layout",
  "demo",
  "checkpoints",
  "data",
  "training",
  "xqg",
  "index",
  "evaluation",
  "scale",
  "reliability",
  "measured",
  "status",
)


def assemble() -> str:
  parts = [(DOCS / f"readme_{name}.md").read_text(encoding="utf-8").strip() for name in ORDER]
  return "\n\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
  readme = DOCS.parent / "README.md"
  text = assemble()
  if "--check" in argv:
    if readme.read_text(encoding="utf-8") != text:
      print("README.md is stale: run python docs/assemble_readme.py", file=sys.stderr)
      return 1
    return 0
  readme.write_text(text, encoding="utf-8")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
