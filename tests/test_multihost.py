"""Multi-host training: 2 processes x 4 CPU devices == 1 process x 8 devices (same batch)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from xtr_jax.index import testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  return env


def _cmd(tmp, name: str, pid: int, n: int, port: int) -> list[str]:
  return [
    sys.executable, "-m", "xtr_jax.scale.multihost", "--process_id", str(pid),
    "--num_processes", str(n), "--port", str(port), "--pairs", str(tmp / "pairs.jsonl"),
    "--vocab", str(tmp / "spm.model"), "--model_dir", str(tmp / name),
    "--out", str(tmp / f"{name}_{pid}.json"),
  ]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("mh")
  rng = np.random.default_rng(0)
  rows = []
  for i in range(64):
    words = " ".join(rng.choice(testing.WORDS, int(rng.integers(4, 12))))
    rows.append({"_id": str(i), "query": words.split()[0] + " " + words[:20], "text": words})
  with open(tmp / "pairs.jsonl", "w") as f:
    f.write("\n".join(json.dumps(r) for r in rows) + "\n")
  testing.train_vocabulary([r["text"] for r in rows], str(tmp / "spm"), vocab_size=100)
  return tmp


def test_two_processes_match_one(data):
  single = subprocess.run(
    _cmd(data, "single", 0, 1, 0), env=_env(8), capture_output=True, text=True, timeout=900
  )
  assert single.returncode == 0, single.stderr[-3000:]
  port = _free_port()
  procs = [
    subprocess.Popen(
      _cmd(data, "multi", i, 2, port),
      env=_env(4),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )  # fmt: skip
    for i in range(2)
  ]
  for p in procs:
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
  one = json.load(open(data / "single_0.json"))
  assert one["device_count"] == 8 and one["process_count"] == 1
  for i in range(2):
    got = json.load(open(data / f"multi_{i}.json"))
    assert got["process_count"] == 2 and got["local_device_count"] == 4
    assert got["device_count"] == 8
    assert got["losses"].keys() == one["losses"].keys() and len(one["losses"]) == 4
    for step, loss in one["losses"].items():
      assert abs(got["losses"][step] - loss) < 1e-5, (step, got["losses"][step], loss)
