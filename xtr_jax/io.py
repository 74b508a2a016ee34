"""One path layer for local and remote files: open, glob, makedirs, atomic writes, fingerprints.

Every wing reads and writes through these functions, so a ``gs://`` model directory or corpus
works wherever a local one does (the pod recipe writes to ``gs://``). Local paths go straight to
``os`` (fast; ``fsync`` + ``os.replace`` make writes atomic); paths with a URI scheme
(``gs://``, ``s3://``, ``az://``, ``hf://``) go to ``etils.epath``, which orbax already brings:
it uses ``tf.io.gfile`` when TensorFlow is installed and ``fsspec`` otherwise (or with
``EPATH_USE_TF=0``). On an object store a single object appears only once its upload has
finished, so a remote write to the final name is already atomic; no temp + rename is needed.

At the bottom of the import graph: it imports nothing from the project, so ``data/``,
``models/`` and the wings above share one implementation. tests/test_io.py runs every function
against ``gs://`` paths served by fsspec's in-memory filesystem (offline).
"""

from __future__ import annotations

import glob as _glob
import hashlib
import io as _io
import json
import os
import re
import shutil
import uuid
from typing import IO, Any

PathLike = str | os.PathLike

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_remote(path: PathLike) -> bool:
  """True for ``scheme://...`` paths (``gs://B/x``), which must never touch ``os.path``."""
  return bool(_URI.match(os.fspath(path)))


def _epath(path: PathLike):
  from etils import epath  # noqa: PLC0415  (only remote paths pay for it)

  return epath.Path(os.fspath(path))


def join(base: PathLike, *parts: str) -> str:
  """``os.path.join`` that keeps ``gs://B`` as is (posix separators for remote paths)."""
  base = os.fspath(base)
  if is_remote(base):
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
  return os.path.join(base, *parts)


def abspath(path: PathLike) -> str:
  """Absolute local path; a remote path is returned unchanged (never ``./gs:/B/x``)."""
  path = os.fspath(path)
  return path if is_remote(path) else os.path.abspath(path)


def exists(path: PathLike) -> bool:
  return _epath(path).exists() if is_remote(path) else os.path.exists(path)


def isfile(path: PathLike) -> bool:
  if is_remote(path):
    p = _epath(path)
    return p.exists() and not p.is_dir()
  return os.path.isfile(path)


def isdir(path: PathLike) -> bool:
  return _epath(path).is_dir() if is_remote(path) else os.path.isdir(path)


def getsize(path: PathLike) -> int:
  """The file's size in bytes (``os.path.getsize``); FileNotFoundError when it is missing."""
  if not is_remote(path):
    return os.path.getsize(path)
  return _epath(path).stat().length


def makedirs(path: PathLike) -> None:
  """``mkdir -p``; on object stores a no-op where directories do not exist."""
  if is_remote(path):
    _epath(path).mkdir(parents=True, exist_ok=True)
  else:
    os.makedirs(path, exist_ok=True)


def glob(pattern: PathLike) -> list[str]:
  """Sorted matches of a ``*`` pattern, local or remote (``gs://B/pairs/*.jsonl``)."""
  pattern = os.fspath(pattern)
  if not is_remote(pattern):
    return sorted(_glob.glob(pattern))
  # The backend epath picked for the scheme (gfile or fsspec) globs whole patterns, so a
  # ``*`` may stand in a folder too; both return full ``scheme://`` paths.
  return sorted(os.fspath(p) for p in _epath(pattern)._backend.glob(pattern))


def open_file(path: PathLike, mode: str = "r") -> IO[Any]:
  """Opens a local or remote file; text modes are UTF-8."""
  if not is_remote(path):
    if "b" in mode:
      return open(path, mode)
    return open(path, mode, encoding="utf-8")
  f = _epath(path).open(mode.replace("t", "").replace("b", "") + "b")
  return f if "b" in mode else _io.TextIOWrapper(f, encoding="utf-8")


def read_bytes(path: PathLike) -> bytes:
  with open_file(path, "rb") as f:
    return f.read()


def read_text(path: PathLike) -> str:
  return read_bytes(path).decode("utf-8")


def remove(path: PathLike) -> None:
  if is_remote(path):
    _epath(path).unlink()
  else:
    os.remove(path)


def rmtree(path: PathLike) -> None:
  if is_remote(path):
    _epath(path).rmtree()
  else:
    shutil.rmtree(path)


def replace(src: PathLike, dst: PathLike) -> None:
  """Renames ``src`` to ``dst``, replacing it (atomic locally; copy + delete on object stores)."""
  if is_remote(src) or is_remote(dst):
    _epath(src).replace(_epath(dst))
  else:
    os.replace(src, dst)


# ---------------------------------------------------------------------------- atomic writes


def replace_dir(tmp: PathLike, target: PathLike) -> None:
  """Moves the finished directory ``tmp`` to ``target``, replacing an existing one.

  The old directory is renamed aside, the new one in, then the old deleted: a reader sees a
  whole directory (old or new), never a mix. Local only: an object store has no atomic
  directory rename, so remote directories are written in place by their writers.
  """
  tmp, target = os.fspath(tmp), os.fspath(target)
  if is_remote(tmp) or is_remote(target):
    raise ValueError(f"replace_dir({target}): a remote directory cannot be replaced atomically")
  if not os.path.exists(target):
    os.rename(tmp, target)
    return
  parent, name = os.path.split(os.path.abspath(target))
  old = os.path.join(parent, f".{name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
  os.rename(target, old)
  os.rename(tmp, target)
  shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: PathLike, data: bytes, *, make_parents: bool = False) -> None:
  """Writes ``data`` so that a reader sees the old file or the new one, never a part.

  Local: temp file in the same folder + fsync + ``os.replace``. Remote: one object upload.
  ``make_parents`` creates the folder first.
  """
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if make_parents and parent:
    makedirs(parent)
  if is_remote(path):
    with _epath(path).open("wb") as f:
      f.write(data)
    return
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path: PathLike, text: str, *, make_parents: bool = True) -> None:
  """UTF-8 ``text`` via ``atomic_write_bytes``, creating the folder first (``make_parents``)."""
  atomic_write_bytes(path, text.encode("utf-8"), make_parents=make_parents)


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = 2) -> None:
  """JSON with sorted keys (stable bytes for the same object), written atomically."""
  atomic_write_bytes(path, json.dumps(obj, indent=indent, sort_keys=True).encode("utf-8"))


def atomic_save_npy(path: PathLike, array) -> None:
  """``np.save`` to ``path`` atomically (streamed to a temp file locally, one upload remotely)."""
  import numpy as np  # noqa: PLC0415

  path = os.fspath(path)
  if is_remote(path):
    buf = _io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())
    return
  tmp = f"{path}.tmp-{os.getpid()}.npy"
  try:
    with open(tmp, "wb") as f:
      np.save(f, array)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


# ---------------------------------------------------------------------------- fingerprints


def file_fingerprint(path: PathLike) -> str:
  """``sha256:`` + the first 32 hex digits of the file's content hash."""
  h = hashlib.sha256()
  with open_file(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return "sha256:" + h.hexdigest()[:32]
