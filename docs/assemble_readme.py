"""Assembles README.md from the per-wing sections in docs/ (run after editing any of them).

Each wing documents itself in ``docs/readme_<wing>.md``; keeping the README a concatenation
lets the wings change their sections independently and keeps one order for readers.

  python docs/assemble_readme.py          # rewrites README.md
  python docs/assemble_readme.py --check  # exits 1 if README.md is stale or mis-renders

``--check`` also renders README.md as CommonMark (markdown-it-py, the parser GitHub's is
compatible with) and fails on what a renderer would swallow: text after a closing code
fence (CommonMark does not close the block there, so everything down to the next fence
becomes code) and a Markdown heading (``## ...``) that ends up inside a code block.

Measured numbers are never typed into a section: a line ``{{results/FILE.md#Heading}}``
is replaced by the body of that heading's section in the results file (up to the next
heading of the same or a higher level), so the README shows what the run recorded.
"""

from __future__ import annotations

import pathlib
import re
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ORDER = (
  "head",
  "layout",
  "demo",
  "backbone",
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


INCLUDE = re.compile(r"^\{\{(results/[^#}]+)#([^}]+)\}\}$", re.M)


def results_section(path: str, heading: str) -> str:
  """The body under ``heading`` (a Markdown heading's text) in ``path``, stripped."""
  lines = (DOCS.parent / path).read_text(encoding="utf-8").splitlines()
  for i, line in enumerate(lines):
    level = len(line) - len(line.lstrip("#"))
    if level and line[level:].strip() == heading:
      body = []
      for nxt in lines[i + 1 :]:
        n = len(nxt) - len(nxt.lstrip("#"))
        if n and n <= level and nxt[n:].startswith(" "):
          break
        body.append(nxt)
      return "\n".join(body).strip()
  raise SystemExit(f"{path}: no heading {heading!r} (included by a docs/readme_*.md section)")


def render(text: str) -> str:
  return INCLUDE.sub(lambda m: results_section(m.group(1), m.group(2).strip()), text)


def assemble() -> str:
  parts = [
    render((DOCS / f"readme_{name}.md").read_text(encoding="utf-8")).strip() for name in ORDER
  ]
  return "\n\n".join(parts) + "\n"


FENCE_WITH_TEXT = re.compile(r"^ {0,3}(`{3,}|~{3,})[^`~\s]*\s+\S")  # ```bash is an info string
HEADING = re.compile(r"^ {0,3}#{2,6} \S")  # '## ' and deeper; '# ' is a shell comment


def commonmark_problems(text: str) -> list[str]:
  """Lines where a CommonMark renderer would not show what the Markdown source meant."""
  from markdown_it import MarkdownIt  # noqa: PLC0415  (lint-only dependency, the [test] extra)

  lines = text.splitlines()
  problems = []
  for token in MarkdownIt("commonmark").parse(text):
    if token.type not in ("fence", "code_block") or token.map is None:
      continue
    start, end = token.map
    for lineno in range(start + 1, end):
      line = lines[lineno]
      if FENCE_WITH_TEXT.match(line):
        problems.append(f"README.md:{lineno + 1}: text after a closing code fence: {line[:60]!r}")
      elif HEADING.match(line):
        problems.append(f"README.md:{lineno + 1}: heading inside a code block: {line[:60]!r}")
  return problems


def main(argv: list[str]) -> int:
  readme = DOCS.parent / "README.md"
  text = assemble()
  if "--check" in argv:
    if readme.read_text(encoding="utf-8") != text:
      print("README.md is stale: run python docs/assemble_readme.py", file=sys.stderr)
      return 1
    problems = commonmark_problems(text)
    for problem in problems:
      print(problem, file=sys.stderr)
    return 1 if problems else 0
  readme.write_text(text, encoding="utf-8")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
