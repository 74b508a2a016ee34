"""Test set-up: 8 emulated CPU devices, set before JAX is imported anywhere; shared fixtures
(the real data folder, a fresh gin config, an offline in-memory ``gs://`` filesystem)."""

import os
import pathlib

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402
from fsspec.implementations.memory import MemoryFileSystem  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The real data folder (../shared/data); tests that need it skip when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data not present at {SHARED_DATA}")
  return SHARED_DATA


@pytest.fixture(autouse=True)
def _fresh_gin():
  """Each test starts and ends with an empty, unlocked gin config.

  Commands finalize (lock) gin; a later test in the same worker that imports a module with
  new configurables would otherwise fail depending on test order.
  """
  import gin

  gin.clear_config()
  yield
  gin.clear_config()


class _MemoryGcs(MemoryFileSystem):
  """An in-memory ``gs://`` that names objects like gcsfs does (``bucket/key``, no root)."""

  protocol = ("gs", "gcs")
  store: dict = {}
  pseudo_dirs = [""]

  def __init__(self, *args, finalize_on_close=None, **kwargs):  # epath passes gcsfs's flag
    super().__init__(*args, **kwargs)

  @classmethod
  def _strip_protocol(cls, path):
    for prefix in ("gs://", "gcs://"):
      if path.startswith(prefix):
        path = path[len(prefix) :]
    return path.strip("/")


@pytest.fixture
def memory_gcs(monkeypatch):
  """``gs://`` (and ``gcs://``) served from memory, offline; yields the object store (a dict
  keyed ``bucket/key``). Paths go through epath's fsspec backend, as on a machine without
  TensorFlow; each test starts with an empty store (one per process: Beam's DirectRunner
  must run in this process to see it)."""
  import fsspec
  from etils.epath import backend, gpath

  # epath picks tf.io.gfile for gs:// when TensorFlow is installed (what a pod uses); here its
  # fsspec backend, which EPATH_USE_TF=0 selects. The choice is cached, so patch it too.
  monkeypatch.setenv("EPATH_USE_TF", "0")
  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
  for name in ("gs", "gcs"):
    fsspec.register_implementation(name, _MemoryGcs, clobber=True)
  backend.fsspec_backend._get_filesystem.cache_clear()
  _MemoryGcs.store.clear()
  _MemoryGcs.pseudo_dirs[:] = [""]
  yield _MemoryGcs.store
  backend.fsspec_backend._get_filesystem.cache_clear()
  _MemoryGcs.store.clear()
