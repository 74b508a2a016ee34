"""File primitives every wing shares: atomic writes and content fingerprints.

At the bottom of the import graph (standard library only), so ``data/``, ``models/`` and
the wings above use one implementation: a crash never leaves a half-written file behind,
and the same bytes always give the same fingerprint.
"""

from __future__ import annotations

import hashlib
import os


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Temp file + fsync + rename into place."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def file_fingerprint(path: str) -> str:
  """``sha256:`` + the first 32 hex digits of the file's content hash."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return "sha256:" + h.hexdigest()[:32]
