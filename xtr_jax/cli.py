"""The ``xtr-jax`` console script: one entry, one subcommand per stage.

Each subcommand lives next to the code it drives and is imported only when used, so
``xtr-jax search`` does not pay for TensorFlow or the trainer.

This module is also every subcommand's edge to the user, so that they all behave alike:

* a user error (a missing file, a malformed line, a wrong flag) is one line on stderr,
  ``xtr-jax COMMAND: error: MESSAGE``, and exit code 2, never a traceback (``is_user_error``
  says which exceptions count); anything else is a bug and keeps its traceback;
* ``ArgumentParser`` shows every flag's default in ``--help`` and reports parse errors in
  that same one line;
* logs are quiet by default: third-party INFO (absl, orbax, jax's backend probing) and the
  native libraries' INFO/WARNING lines (ScaNN, XLA, TensorFlow) are dropped, and progress bars
  are off when stderr is not a terminal (log files). ``xtr-jax --verbose COMMAND`` shows
  all of it, and the traceback of a user error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import subprocess
import sys
import traceback

# name -> ("module:function", one-line help). The function takes argv (list[str]) and
# returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
  "convert": ("xtr_jax.checkpoints.convert:main", "Import HF / T5X checkpoints to orbax."),
  "train-vocab": ("xtr_jax.data.vocab:main", "Train a SentencePiece vocabulary."),
  "train": ("xtr_jax.training.train:main", "Train XTR / baselines / xQG (gin)."),
  "init-projection": (
    "xtr_jax.training.projection_init:main",
    "Add a PCA projection to a backbone checkpoint.",
  ),
  "generate": ("xtr_jax.xqg.cli:main", "Generate xQG questions for a corpus."),
  "index": ("xtr_jax.index.cli:index_main", "Encode a corpus and build a token index."),
  "search": ("xtr_jax.index.cli:search_main", "Search an index: ranked passages or a TREC run."),
  "serve": ("xtr_jax.index.service:main", "HTTP JSON search service."),
  "evaluate": ("xtr_jax.evaluation.cli:main", "XOR-Retrieve R@kt, Recall, nDCG, MRR."),
  "bm25": ("xtr_jax.experiments.bm25:main", "BM25 baseline: queries x corpus -> TREC run."),
  "sweep": ("xtr_jax.experiments.sweep:main", "Run a gin sweep end to end."),
  "demo": ("xtr_jax.experiments.demo:main", "The whole pipeline on the shipped sample."),
  "sample-data": (
    "xtr_jax.experiments.sample_data:main",
    "Write the synthetic sample (corpus, queries, qrels, pairs).",
  ),
}

USAGE_EXIT = 2
VERBOSE_FLAGS = ("-v", "--verbose")

# Loggers of libraries whose INFO records are progress chatter (orbax's "Restoring
# checkpoint", jax's "Unable to initialize backend 'tpu'"); WARNING and above still show.
CHATTY_LOGGERS = (
  "absl",
  "jax",
  "orbax",
  "tensorflow",
  "h5py",
  "matplotlib",
  "urllib3",
  "fsspec",
  "bm25s",
)

# Native (C++) stderr lines dropped unless --verbose: absl/glog and TensorFlow INFO and
# WARNING lines (ScaNN's "Could not normalize centroid", partitioner timings, TensorFlow's
# CPU-feature banner) and the errors that only say a CUDA library probed a machine without a
# GPU. Native ERROR and FATAL lines (a failed CHECK) always pass.
NATIVE_NOISE = (
  r"^[IW]\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] ",
  r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] [^ \]]+:\d+\] ",
  r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
  r"failed call to cuInit",
  r"Unable to register cu(DNN|FFT|BLAS) factory",
  r"^To enable the following instructions: .*rebuild TensorFlow",
)

# The filter runs in its own process so that a crash of ours (a segfault, a failed CHECK
# that aborts) still reaches the terminal: it reads until every writer has closed the pipe.
_FILTER_CHILD = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
noise = re.compile(sys.argv[1].encode())
def emit(data):
  while data:
    data = data[os.write(2, data):]
pending = b""
while True:
  chunk = os.read(0, 1 << 16)
  if not chunk:
    break
  *lines, pending = (pending + chunk).split(b"\n")
  out = b"".join(line + b"\n" for line in lines if not noise.search(line))
  if b"\r" in pending:  # a progress bar redrawing its line: show it now
    out, pending = out + pending, b""
  emit(out)
if pending and not noise.search(pending):
  emit(pending)
"""

_stderr_is_terminal: bool | None = None


class UsageError(Exception):
  """A wrong flag value or combination found after parsing; the message names the flag."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """Shows each flag's default (unless the help already says it or there is none) and keeps
  the description's line breaks (the subcommands' descriptions are their docstrings)."""

  def _get_help_string(self, action: argparse.Action) -> str:
    text = action.help or ""
    if "default" in text.lower() or action.default in (None, False, [], argparse.SUPPRESS):
      return text
    return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
  """argparse with the project's conventions: defaults in --help, one-line errors.

  ``error`` keeps argparse's contract (it exits with status 2), but prints only
  ``PROG: error: MESSAGE``: the usage block argparse adds is ``--help``'s job.
  """

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("formatter_class", HelpFormatter)
    super().__init__(*args, **kwargs)

  def error(self, message: str):
    print_error(self.prog, message)
    sys.exit(USAGE_EXIT)


def fraction(text: str) -> float:
  """argparse ``type`` for shares such as ``--native_name_share``: a number in [0, 1]."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
  if not 0.0 <= value <= 1.0:
    raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
  return value


def positive_float(text: str) -> float:
  """argparse ``type`` for rates and temperatures: a finite number > 0."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
  if not 0.0 < value < float("inf"):
    raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
  return value


def positive_int(text: str) -> int:
  """argparse ``type`` for counts such as ``--k``: an integer >= 1."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
  return value


def add_skip_vector_check(parser: argparse.ArgumentParser) -> None:
  """``--skip_vector_check`` of the commands that load an index (``Retriever.load``'s
  ``check_vectors=False``): a NaN/Inf stored vector is otherwise a one-line error on load."""
  parser.add_argument(
    "--skip_vector_check",
    action="store_true",
    help="Skip the scan for NaN/Inf in the index's stored vectors: a faster load of a trusted "
    "large index (default: off, each load scans them and refuses a non-finite row).",
  )


def require_file(path: str, flag: str, what: str = "file") -> str:
  """``path`` if it is a file; else a UsageError naming ``flag`` and what is there instead."""
  if os.path.isfile(path):
    return path
  found = "a directory" if os.path.isdir(path) else "nothing"
  raise UsageError(f"{flag} {path}: expected a {what}, found {found} there")


def stderr_is_terminal() -> bool:
  """Whether the user's stderr is a terminal (progress bars only then).

  Asked before ``main`` puts the native-log filter's pipe in front of stderr.
  """
  return sys.stderr.isatty() if _stderr_is_terminal is None else _stderr_is_terminal


def print_error(prog: str, message: str) -> None:
  one_line = re.sub(r"\s*\n\s*", " ", message.strip())
  print(f"{prog}: error: {one_line}", file=sys.stderr, flush=True)


def _raised_in_project(e: BaseException) -> bool:
  tb = e.__traceback__
  while tb is not None and tb.tb_next is not None:
    tb = tb.tb_next
  if tb is None:
    return False
  package = os.path.dirname(os.path.abspath(__file__))
  return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(package + os.sep)


def is_user_error(e: BaseException) -> bool:
  """Whether ``e`` is the user's to fix (one line, exit 2) or a bug (traceback).

  * ``UsageError``: a flag check after parsing.
  * ``FileNotFoundError``, ``FileExistsError``, ``IsADirectoryError``, ``NotADirectoryError``,
    ``PermissionError``: a path the user gave (their messages name it); other OSErrors (a
    full disk, a broken pipe) are the machine's, not the input's, and keep the traceback.
  * ``ValueError`` raised by the project's own code: that is how its readers and checks
    report bad input (``data.formats.FormatError``, ``index.store.IndexFormatError``, a
    checkpoint of the wrong kind, a bad gin binding), always with a message naming the file
    and line or the setting. A ValueError raised inside numpy, JAX or another library means
    we passed it something we did not check, which is a bug: traceback.
  * Everything else (KeyError, TypeError, ...) is a bug.
  """
  if isinstance(e, (UsageError, FileNotFoundError, FileExistsError, IsADirectoryError)):
    return True
  if isinstance(e, (NotADirectoryError, PermissionError)):
    return True
  return isinstance(e, ValueError) and _raised_in_project(e)


def error_message(e: BaseException) -> str:
  if isinstance(e, OSError) and e.filename and e.strerror:
    return f"{e.filename}: {e.strerror}"  # open()'s own errors: "[Errno 2] ..." otherwise
  return str(e) or type(e).__name__


class NativeLogFilter:
  """Routes this process's fd 2 through a child that drops ``NATIVE_NOISE`` lines.

  Native libraries write to fd 2 directly, below Python's logging; ScaNN's absl logging has
  no switch at all. Only the console entry installs it: a process that calls ``main(argv)``
  (tests, the demo) keeps its own stderr.
  """

  def __init__(self):
    sys.stderr.flush()
    self._saved = os.dup(2)
    read, write = os.pipe()
    pattern = "|".join(f"(?:{p})" for p in NATIVE_NOISE)
    self._child = subprocess.Popen(
      [sys.executable, "-I", "-S", "-c", _FILTER_CHILD, pattern],
      stdin=read,
      stderr=self._saved,
      close_fds=True,
    )
    os.close(read)
    os.dup2(write, 2)
    os.close(write)

  def close(self) -> None:
    sys.stderr.flush()
    os.dup2(self._saved, 2)  # closes our end of the pipe: the child drains it and exits
    os.close(self._saved)
    try:
      self._child.wait(timeout=10)
    except subprocess.TimeoutExpired:  # a subprocess of ours still holds the pipe
      pass


def quiet_process(verbose: bool) -> NativeLogFilter | None:
  """Process-wide settings, before JAX / TensorFlow / tqdm are imported; the user's own
  environment variables win. Never sets JAX_PLATFORMS: a GPU or TPU must stay in use."""
  global _stderr_is_terminal
  _stderr_is_terminal = sys.stderr.isatty()
  if verbose:
    return None
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow / XLA: no INFO, WARNING
  if not _stderr_is_terminal:
    os.environ.setdefault("TQDM_DISABLE", "1")  # bars collapse into one line in log files
  return NativeLogFilter()


def configure_logging(verbose: bool) -> None:
  """The project's INFO lines, timestamped; third-party INFO only with ``--verbose``."""
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  quiet_loggers(verbose)


def quiet_loggers(verbose: bool) -> None:
  """``CHATTY_LOGGERS`` at WARNING (``--verbose``: NOTSET, the root's INFO). Run again once a
  subcommand's module is imported: a library may set its logger's level on import (bm25s
  sets DEBUG), which would undo the first call."""
  for name in CHATTY_LOGGERS:
    logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


def _usage() -> str:
  lines = ["usage: xtr-jax [--verbose] COMMAND [flags]", "", "commands:"]
  lines += [f"  {name:<16} {doc}" for name, (_, doc) in COMMANDS.items()]
  lines += [
    "",
    "Run `xtr-jax COMMAND --help` for a command's flags.",
    "--verbose (-v): show library INFO logs, native log lines and error tracebacks.",
  ]
  return "\n".join(lines)


def run_command(name: str, argv: list[str], verbose: bool = False) -> int:
  """Runs subcommand ``name``; a user error becomes one line on stderr and exit code 2."""
  module_name, func_name = COMMANDS[name][0].split(":")
  # Each subcommand owns the whole gin state. Unlock and clear before importing it, so a
  # second command in one process (demo, sweeps, tests) can register its configurables.
  import gin

  gin.clear_config()
  func = getattr(importlib.import_module(module_name), func_name)
  quiet_loggers(verbose)  # after the imports that may have set a library's level
  try:
    return int(func(argv) or 0)
  except Exception as e:
    if not is_user_error(e):
      raise
    if verbose:
      traceback.print_exc()
    print_error(f"xtr-jax {name}", error_message(e))
    return USAGE_EXIT


def main(argv: list[str] | None = None, *, owns_process: bool | None = None) -> int:
  """``xtr-jax [--verbose] COMMAND ...``; ``owns_process`` (default: called as the console
  script, ``argv is None``) also sets the process-wide log settings (``quiet_process``)."""
  owns_process = argv is None if owns_process is None else owns_process
  argv = list(sys.argv[1:] if argv is None else argv)
  verbose = False
  while argv and argv[0] in VERBOSE_FLAGS:
    verbose, argv = True, argv[1:]
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(_usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    print_error("xtr-jax", f"unknown command {name!r}; run `xtr-jax --help` for the list")
    return USAGE_EXIT
  native_filter = quiet_process(verbose) if owns_process else None
  try:
    # Before any subcommand imports JAX: XLA:CPU frees and re-allocates its big temporaries
    # every call, and glibc's defaults return them to the kernel each time (sys time as high
    # as user time while encoding). See xtr_jax/host_malloc.py; XTR_JAX_TUNE_MALLOC=0 opts out.
    from xtr_jax.host_malloc import tune_malloc

    tune_malloc()
    configure_logging(verbose)
    return run_command(name, rest, verbose)
  finally:
    if native_filter is not None:
      native_filter.close()


if __name__ == "__main__":
  sys.exit(main())
