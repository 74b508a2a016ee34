"""Keep glibc malloc from handing XLA:CPU's big per-call buffers back to the kernel.

XLA:CPU allocates an executable's temporaries with ``malloc`` on every call and frees them
afterwards. Encoder temporaries are large (the attention logits of a 32 x 512 mE5-small
batch are 32 * 12 * 512 * 512 * 4 B = 400 MB), far above glibc's mmap threshold (at most
32 MB), so each call mmaps fresh zero pages and munmaps them again: every page is faulted
in anew. Measured on a 2-core CPU, a 16 x 512 batch spent as much time in the kernel as in
the encoder (sys ~ user, about a million minor faults a call) and ran at 0.7x torch's speed;
with the settings below there are no faults and it runs at 1.4x. Per-thread arenas alone are
not enough: glibc deletes a worker thread's emptied heap, so the next call faults it in again.

The settings: one arena (``M_ARENA_MAX``; every thread shares the main heap, whose trimming
the next setting controls), no mmap-backed chunks (``M_MMAP_MAX=0``) and a trim threshold of
2 GiB (``M_TRIM_THRESHOLD``), so freed buffers stay mapped and the next call reuses them. The
cost: the process keeps its peak heap (less any free top above 2 GiB) until it exits, which
an encoder that runs the same shapes again and again needs anyway.

They are ``mallopt`` calls, not ``MALLOC_*`` variables, because glibc reads those once at
start-up, before Python runs. ``M_ARENA_MAX`` only binds threads that have not picked an
arena yet, so :func:`tune_malloc` must run before JAX (or torch, TensorFlow) starts threads:
``xtr_jax.cli.main`` calls it first thing.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: the largest threshold it can set

OPT_OUT = "XTR_JAX_TUNE_MALLOC"  # "0": leave malloc alone
# The user's own malloc settings win: with any of these set, nothing is changed.
_USER_SETTINGS = (
  "MALLOC_ARENA_MAX",
  "MALLOC_MMAP_MAX_",
  "MALLOC_MMAP_THRESHOLD_",
  "MALLOC_TRIM_THRESHOLD_",
  "MALLOC_TOP_PAD_",
)
# Accelerator hosts keep their buffers on the device; their host threads (input pipelines)
# gain nothing from one shared arena and could contend on it.
_ACCELERATOR_NODES = ("/dev/accel0", "/dev/nvidiactl", "/dev/kfd")

_applied: bool | None = None


def _reason_to_skip(environ) -> str | None:
  if environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
    return f"{OPT_OUT}={environ[OPT_OUT]}"
  user = [k for k in _USER_SETTINGS if k in environ]
  if user or "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
    return f"user malloc settings {user or ['GLIBC_TUNABLES']}"
  if any(lib in environ.get("LD_PRELOAD", "") for lib in ("jemalloc", "tcmalloc", "mimalloc")):
    return "another allocator is preloaded"
  platforms = environ.get("JAX_PLATFORMS", "").strip().lower()
  if platforms and not platforms.startswith("cpu"):
    return f"JAX_PLATFORMS={platforms}"
  if not platforms and any(os.path.exists(p) for p in _ACCELERATOR_NODES):
    return "an accelerator device is present"
  return None


def tune_malloc(environ=None) -> bool:
  """Applies the settings above once per process; True when they are in effect.

  A no-op (False) off glibc, when ``XTR_JAX_TUNE_MALLOC=0``, when the user set glibc malloc
  variables or preloads another allocator, or when JAX will run on an accelerator.
  """
  global _applied
  if _applied is not None:
    return _applied
  environ = os.environ if environ is None else environ
  _applied = False
  if _reason_to_skip(environ) is not None:
    return False
  try:
    libc = ctypes.CDLL(None)
    libc.gnu_get_libc_version  # noqa: B018  (raises off glibc: musl, macOS)
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  _applied = all(
    mallopt(param, value) == 1
    for param, value in (
      (M_ARENA_MAX, 1),
      (M_MMAP_MAX, 0),
      (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    )
  )
  return _applied
