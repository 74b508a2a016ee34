"""Test set-up: 8 emulated CPU devices, set before JAX is imported anywhere."""

import os
import pathlib

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

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
