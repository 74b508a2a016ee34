"""t5x-style gin flags: ``--gin_file`` (repeatable), ``--gin_bindings`` and ``--gin.NAME=VALUE``."""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import tokenize

import gin

# gin/ at the repository root; also searched so `--gin_file=models/mt5_small.gin` works anywhere.
GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / "gin"


def add_gin_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "--gin_file", action="append", default=[], help="Gin file to parse (repeatable)."
  )
  parser.add_argument(
    "--gin_bindings", action="append", default=[], help="A gin binding, e.g. 'a.b = 1'."
  )
  parser.add_argument(
    "--gin_search_paths",
    action="append",
    default=[],
    help="Extra folders in which --gin_file and gin include statements are looked up.",
  )


def split_gin_dot_flags(argv: list[str]) -> tuple[list[str], list[str]]:
  """Pulls t5x's ``--gin.NAME=VALUE`` flags out of argv; returns (rest, bindings)."""
  rest, bindings = [], []
  for arg in argv:
    if arg.startswith("--gin.") and "=" in arg:
      name, value = arg[len("--gin.") :].split("=", 1)
      bindings.append(f"{name} = {value}")
    else:
      rest.append(arg)
  return rest, bindings


def resolve_gin_file(path: str, search_paths: list[str]) -> str:
  """Finds a gin file as given, then under each search path and the project's gin/."""
  candidates = [pathlib.Path(path)]
  for root in [*search_paths, str(GIN_DIR)]:
    candidates.append(pathlib.Path(root) / path)
  for candidate in candidates:
    if candidate.is_file():
      return str(candidate)
  looked = ", ".join(str(c) for c in candidates)
  raise FileNotFoundError(f"gin file {path!r} not found; looked in: {looked}")


class _IncludeProbeFilter(logging.Filter):
  """Drops gin's "Path not found" ERROR for an include it then finds on a search path.

  gin first probes every ``include`` as a Python package resource and logs an ERROR when that
  probe fails, even when the file is then found under ``gin/``; every run's log would start
  with false errors. A path found nowhere still fails parsing with a clear message.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    from_gin = record.pathname.endswith(os.path.join("gin", "resource_reader.py"))
    return not (from_gin and record.getMessage().startswith("Path not found:"))


def parse_gin(
  gin_files: list[str],
  bindings: list[str],
  search_paths: list[str] | None = None,
  finalize: bool = True,
) -> None:
  """Parses gin files and bindings, with clear errors naming the file or binding.

  Starts from a clean configuration: each CLI entry point owns the whole gin state, so two
  commands run in one process (the demo, the sweep runner, tests) do not leak bindings or
  trip over a config that the previous one locked.
  """
  gin.clear_config()
  search_paths = list(search_paths or [])
  for root in [*search_paths, str(GIN_DIR)]:
    if os.path.isdir(root):
      gin.add_config_file_search_path(root)
  files = [resolve_gin_file(f, search_paths) for f in gin_files]
  probe_filter = _IncludeProbeFilter()
  logging.getLogger().addFilter(probe_filter)
  try:
    gin.parse_config_files_and_bindings(files, bindings, finalize_config=finalize)
  except (ValueError, SyntaxError, KeyError, TypeError, ImportError, tokenize.TokenError) as e:
    raise ValueError(f"bad gin configuration (files={files}, bindings={bindings}): {e}") from e
  finally:
    logging.getLogger().removeFilter(probe_filter)


def parse_args_with_gin(
  parser: argparse.ArgumentParser, argv: list[str] | None
) -> argparse.Namespace:
  """argparse + gin in one go: the subcommands' common entry."""
  add_gin_arguments(parser)
  rest, dot_bindings = split_gin_dot_flags(list(argv or []))
  args = parser.parse_args(rest)
  parse_gin(args.gin_file, [*args.gin_bindings, *dot_bindings], args.gin_search_paths)
  return args


def bound_config_fields(selector: str, fields: tuple[str, ...]) -> dict:
  """The ``fields`` of configurable ``selector`` bound to values in gin (macros followed);
  unbound fields and bindings to another configurable's output are left out."""
  out = {}
  for name in fields:
    try:
      value = gin.query_parameter(f"{selector}.{name}")
    except ValueError:
      continue  # not bound
    for _ in range(32):  # macros may reference macros; bounded against cycles
      macro = isinstance(value, gin.config.ConfigurableReference) and value.selector == "gin.macro"
      if not macro:
        break
      value = gin.query_parameter(f"{value.scoped_selector}.value")
    if not isinstance(value, gin.config.ConfigurableReference):
      out[name] = value
  return out
