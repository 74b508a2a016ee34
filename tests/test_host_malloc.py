"""xtr_jax.host_malloc: when the glibc malloc settings for XLA:CPU apply, and that they do."""

import os
import platform
import subprocess
import sys

import pytest

from xtr_jax.host_malloc import OPT_OUT, _reason_to_skip

CPU = {"JAX_PLATFORMS": "cpu"}


@pytest.mark.parametrize(
  "env, reason",
  [
    ({**CPU, OPT_OUT: "0"}, OPT_OUT),
    ({**CPU, "MALLOC_ARENA_MAX": "4"}, "user malloc settings"),
    ({**CPU, "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, "user malloc settings"),
    ({**CPU, "LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "preloaded"),
    ({"JAX_PLATFORMS": "tpu"}, "JAX_PLATFORMS=tpu"),
  ],
)
def test_user_choices_and_accelerators_are_left_alone(env, reason):
  assert reason in _reason_to_skip(env)


def test_cpu_runs_are_tuned():
  assert _reason_to_skip(CPU) is None
  assert _reason_to_skip({**CPU, OPT_OUT: "1"}) is None


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("opt_out, want", [("1", "True"), ("0", "False")])
def test_tune_malloc_applies_in_a_fresh_process(opt_out, want):
  # A subprocess: the settings are process-wide and must come before threads start.
  code = "from xtr_jax.host_malloc import tune_malloc; print(tune_malloc(), tune_malloc())"
  env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
  env.update(CPU, **{OPT_OUT: opt_out})
  out = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
  )
  assert out.stdout.split() == [want, want]
