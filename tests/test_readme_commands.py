"""The README's cheap shell blocks run as written (issue 19: "every README command runs").

A fenced shell block right after a line ``<!-- test: cheap -->`` in a ``docs/readme_*.md``
section (an HTML comment: invisible once rendered) runs here with bash from the repository
root, as a reader would paste it after ``source .venv/bin/activate``. Nothing is copied:
what a block writes goes under ``tmp_path`` because paths under ``/tmp/``, ``outputs/``,
``runs/`` and ``demo_output/`` are rewritten there (gin files under ``runs/`` excepted), and
``.venv/bin/`` means this interpreter's. A block whose input comes from an expensive earlier
step (the 10-minute demo) gets a small stand-in of that input (``STAND_INS``); a block that
reads ``../shared/data`` skips when it is absent.

Cheap means a few seconds on two CPU cores; mark only such blocks (all of them together stay
under a minute).
"""

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Callable

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHARED = REPO.parent / "shared" / "data"
MARKER = "<!-- test: cheap -->"
SHELL_FENCE = re.compile(r"```(bash|sh|shell)")
OUTPUT_DIRS = ("outputs", "runs", "demo_output")
BLOCK_TIMEOUT_S = 60  # a cheap block takes seconds; this only stops a hung one


@dataclasses.dataclass(frozen=True)
class Block:
  line: int  # of the opening fence in README.md (1-based)
  script: str


def cheap_blocks(text: str) -> list[Block]:
  """The shell blocks right after a marker line; a marker before anything else is an error."""
  lines = text.splitlines()
  blocks = []
  for i, line in enumerate(lines):
    if line.strip() != MARKER:
      continue
    fence = lines[i + 1].strip() if i + 1 < len(lines) else ""
    if not SHELL_FENCE.fullmatch(fence):
      raise ValueError(f"README.md:{i + 1}: {MARKER} must be followed by a ```bash fence")
    end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
    if end is None:
      raise ValueError(f"README.md:{i + 2}: the marked block is never closed")
    blocks.append(Block(i + 2, "\n".join(lines[i + 2 : end])))
  return blocks


def localise(script: str, tmp: pathlib.Path, venv_bin: pathlib.Path) -> str:
  """The block with its outputs under ``tmp`` and ``.venv/bin/`` meaning ``venv_bin``.

  /tmp/ goes first: the paths put in afterwards may themselves live under /tmp. A path only
  matches at its start (after a space, a quote, ``=`` or a line start).
  """
  start = r"(?<![\w./-])"
  script = re.sub(start + r"/tmp/", lambda _: f"{tmp}/", script)
  script = re.sub(start + r"\.venv/bin/", lambda _: f"{venv_bin}/", script)
  dirs = "|".join(OUTPUT_DIRS)
  not_gin = r"(?![\w./*-]*\.gin\b)"
  return re.sub(rf"{start}({dirs})/{not_gin}", lambda m: f"{tmp}/{m.group(1)}/", script)


def _generated_stand_in(path: pathlib.Path) -> None:
  """Two passages' xQG questions in ``xtr-jax generate``'s layout (the demo's stage 5)."""
  rows = [
    {"docid": "sample0000_0", "generated_queries": {"ja": ["Daraはいつ設立されましたか？"]}},
    {"docid": "sample0000_1", "generated_queries": {"fi": ["Mistä Dara tunnetaan?"]}},
  ]
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


# A path a block reads but an expensive earlier step writes -> writes a small stand-in.
STAND_INS: dict[str, Callable[[pathlib.Path], None]] = {
  "demo_output/generated.jsonl": _generated_stand_in,
}


def _blocks_or_empty() -> list[Block]:
  """Collection must not fail on a bad marker: test_markers_are_well_formed reports it."""
  try:
    return cheap_blocks(README.read_text(encoding="utf-8"))
  except ValueError:
    return []


def test_markers_are_well_formed_and_invisible():
  text = README.read_text(encoding="utf-8")
  blocks = cheap_blocks(text)
  assert blocks, f"no block of README.md is marked {MARKER}"
  markdown_it = pytest.importorskip("markdown_it")
  for token in markdown_it.MarkdownIt("commonmark").parse(text):
    if MARKER in token.content:  # an HTML block: not shown by a renderer
      assert token.type == "html_block", f"README.md:{token.map[0] + 1}: {token.type}"


def test_cheap_blocks_takes_only_the_marked_shell_fences():
  text = f"```bash\nskipped\n```\n\n{MARKER}\n```bash\nxtr-jax --help\necho ok\n```\n"
  assert cheap_blocks(text) == [Block(6, "xtr-jax --help\necho ok")]
  with pytest.raises(ValueError, match="README.md:1: .* must be followed by a ```bash fence"):
    cheap_blocks(f"{MARKER}\n\n```bash\nx\n```\n")
  with pytest.raises(ValueError, match="never closed"):
    cheap_blocks(f"{MARKER}\n```bash\nx\n")


def test_localise_moves_outputs_under_tmp_and_keeps_inputs():
  script = (
    "xtr-jax train --gin_file=runs/train_xtr_cpu.gin --model_dir=outputs/x\n"
    ".venv/bin/xtr-jax convert --output /tmp/de --input ../shared/data/runs/a 'demo_output/g'"
  )
  out = localise(script, pathlib.Path("/tmp/t"), pathlib.Path("/tmp/venv/bin"))
  assert out == (
    "xtr-jax train --gin_file=runs/train_xtr_cpu.gin --model_dir=/tmp/t/outputs/x\n"
    "/tmp/venv/bin/xtr-jax convert --output /tmp/t/de --input ../shared/data/runs/a "
    "'/tmp/t/demo_output/g'"
  )


@pytest.mark.parametrize("block", _blocks_or_empty(), ids=lambda b: f"README.md:{b.line}")
def test_cheap_block_runs_as_written(block, tmp_path):
  if "../shared/data" in block.script and not SHARED.is_dir():
    pytest.skip(f"the block reads ../shared/data, not present at {SHARED}")
  for path, write in STAND_INS.items():
    if path in block.script:
      write(tmp_path / path)
  venv_bin = pathlib.Path(sys.executable).parent
  env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
  script = localise(block.script, tmp_path, venv_bin)
  done = subprocess.run(
    ["bash", "-e", "-o", "pipefail", "-c", script],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=BLOCK_TIMEOUT_S,
  )
  assert done.returncode == 0, (
    f"README.md:{block.line} exited {done.returncode}\n--- script\n{script}\n"
    f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
  )
