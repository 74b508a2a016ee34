"""The wings import downward only, and no two wings import each other (through any path).

Parsed with ``ast`` (nothing is imported), every ``import`` counts, also those inside
functions: a lazy import is still an arrow. Layers, bottom first:
  0  xtr_jax.io, xtr_jax.models, xtr_jax.partitioning (mesh + logical axis rules, used by
     training and inference alike), the edge helpers gin_utils, host_malloc and the
     ``xtr-jax`` front door xtr_jax/cli.py (it dispatches subcommands by module *name*, so it
     imports no wing, and its argument helpers serve every command's ``main``)
  1  xtr_jax.data, xtr_jax.checkpoints
  2  xtr_jax.training, .index, .evaluation, .xqg, and the seqio ``tasks`` package
  3  xtr_jax.experiments, .scale, and the wings' CLI modules (every ``*/cli.py``)
A module may import its own wing, a lower layer, or (without a cycle) a wing of its layer.
"""

from __future__ import annotations

import ast
import functools
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent

LAYERS = {
  "io": 0,
  "models": 0,
  "gin_utils": 0,
  "host_malloc": 0,
  "partitioning": 0,
  "front": 0,
  "data": 1,
  "checkpoints": 1,
  "training": 2,
  "index": 2,
  "evaluation": 2,
  "xqg": 2,
  "tasks": 2,
  "experiments": 3,
  "scale": 3,
  "cli": 3,
}

# Arrows allowed to run the wrong way (upward, or closing a cycle) while a move is under way;
# empty now. An entry that no longer exists fails test_allow_list_is_not_stale, so the list
# cannot outlive its reason.
WAITING: set[tuple[str, str]] = set()


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in [*REPO.glob("xtr_jax/**/*.py"), *REPO.glob("tasks/**/*.py")]:
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def _wing(module: str) -> str | None:
  parts = module.split(".")
  if parts[0] == "tasks":
    return "tasks"
  if parts[0] != "xtr_jax" or len(parts) == 1:
    return None
  if module == "xtr_jax.cli":
    return "front"
  return "cli" if parts[-1] == "cli" else parts[1]


def _resolve(target: str, modules: dict[str, pathlib.Path]) -> str | None:
  """The project module ``target`` names (``from a.b import c`` may name module a.b.c)."""
  while target and target not in modules:
    target = target.rpartition(".")[0]
  return target or None


def _imports(module: str, path: pathlib.Path, modules) -> set[str]:
  found = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [f"{node.module}.{a.name}" for a in node.names]
    for name in names:
      target = _resolve(name, modules)
      if target and target != module and _wing(target) is not None:
        found.add(target)
  return found


@functools.cache
def _edges() -> frozenset[tuple[str, str]]:
  modules = _modules()
  return frozenset((m, t) for m, p in modules.items() for t in _imports(m, p, modules))


def test_every_module_has_a_layer():
  unknown = {m for m in _modules() if _wing(m) is not None and _wing(m) not in LAYERS}
  assert not unknown, f"put these wings in LAYERS: {sorted(unknown)}"


def test_no_import_runs_upward():
  upward = sorted(
    f"{m} -> {t}"
    for m, t in _edges()
    if LAYERS[_wing(t)] > LAYERS[_wing(m)] and (m, t) not in WAITING
  )
  assert not upward, "imports from a lower wing to a higher one:\n" + "\n".join(upward)


def test_models_and_data_import_nothing_above_them():
  bad = sorted(
    f"{m} -> {t}"
    for m, t in _edges()
    if _wing(m) in ("models", "data") and LAYERS[_wing(t)] > 1 and (m, t) not in WAITING
  )
  assert not bad, "\n".join(bad)


def test_no_cycle_between_wings():
  graph: dict[str, set[str]] = {}
  for m, t in _edges():
    if _wing(m) != _wing(t) and (m, t) not in WAITING:
      graph.setdefault(_wing(m), set()).add(_wing(t))

  def reaches(start: str, goal: str, seen: set[str]) -> bool:
    for nxt in graph.get(start, ()):
      if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
        return True
    return False

  cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a, {b}))
  assert not cycles, "wings that import each other: " + ", ".join(cycles)


def test_allow_list_is_not_stale():
  stale = sorted(f"{m} -> {t}" for m, t in WAITING if (m, t) not in _edges())
  assert not stale, f"these arrows are gone; delete them from WAITING: {stale}"


def test_the_front_door_imports_no_wing():
  """xtr_jax/cli.py may sit at the bottom only while it imports no wing statically."""
  got = {t for m, t in _edges() if m == "xtr_jax.cli"}
  assert got <= {"xtr_jax.host_malloc"}, got


def test_the_checker_sees_an_upward_import(tmp_path):
  """The graph code itself: a lazy import inside a function is found and resolved."""
  path = tmp_path / "m.py"
  path.write_text("def f():\n  from xtr_jax.index.encode import TokenEncoder\n")
  modules = {"xtr_jax.models.m": path, "xtr_jax.index.encode": path}
  assert _imports("xtr_jax.models.m", path, modules) == {"xtr_jax.index.encode"}
