"""xtr_jax.io: one path layer for local and ``gs://`` files, atomic writes, fingerprints.

The remote half runs offline against ``gs://`` paths served by fsspec's in-memory filesystem
(registered as the ``gs`` protocol, with epath told to use its fsspec backend), so the same
code path that reaches GCS on a pod (epath; gfile there, fsspec here) is exercised, not
``os``. The ``memory_gcs`` fixture lives in conftest.py, so every wing's tests can use it.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

import gin
from xtr_jax import gin_utils
from xtr_jax import io as xio


def test_remote_paths_are_never_made_local():
  assert xio.is_remote("gs://B/x") and xio.is_remote("s3://b/k") and not xio.is_remote("/a/b")
  assert not xio.is_remote("outputs/gs:/B")  # what os.path.abspath used to make of gs://B
  assert xio.abspath("gs://B/x") == "gs://B/x"
  assert xio.join("gs://B/x/", "checkpoints", "1") == "gs://B/x/checkpoints/1"
  assert xio.abspath("rel/dir").startswith("/") and xio.abspath("rel/dir").endswith("/rel/dir")


@pytest.mark.parametrize("root", ["local", "gs"])
def test_read_write_glob_replace_round_trip(root, tmp_path, memory_gcs):
  base = str(tmp_path) if root == "local" else "gs://bucket/run"
  xio.makedirs(xio.join(base, "sub"))
  xio.atomic_write_text(xio.join(base, "sub", "a.json"), "héllo")
  xio.atomic_write_json(xio.join(base, "b.json"), {"z": 1, "a": [2]})
  xio.atomic_write_bytes(xio.join(base, "sub", "c.bin"), b"\x00\x01")
  assert xio.read_text(xio.join(base, "sub", "a.json")) == "héllo"
  assert xio.read_text(xio.join(base, "b.json")) == '{\n  "a": [\n    2\n  ],\n  "z": 1\n}'
  assert xio.isfile(xio.join(base, "b.json")) and not xio.isfile(xio.join(base, "sub"))
  assert xio.isdir(xio.join(base, "sub")) and not xio.exists(xio.join(base, "nope"))
  assert xio.glob(xio.join(base, "*", "*.json")) == [xio.join(base, "sub", "a.json")]
  assert xio.glob(xio.join(base, "sub", "*")) == [
    xio.join(base, "sub", "a.json"),
    xio.join(base, "sub", "c.bin"),
  ]
  xio.replace(xio.join(base, "sub", "c.bin"), xio.join(base, "d.bin"))
  assert xio.read_bytes(xio.join(base, "d.bin")) == b"\x00\x01"
  assert not xio.exists(xio.join(base, "sub", "c.bin"))
  with xio.open_file(xio.join(base, "log.jsonl"), "a") as f:
    f.write("1\n")
  with xio.open_file(xio.join(base, "log.jsonl"), "a") as f:
    f.write("2\n")
  assert xio.read_text(xio.join(base, "log.jsonl")) == "1\n2\n"
  xio.atomic_save_npy(xio.join(base, "v.npy"), np.arange(6, dtype=np.float16).reshape(2, 3))
  with xio.open_file(xio.join(base, "v.npy"), "rb") as f:
    np.testing.assert_array_equal(np.load(f), np.arange(6).reshape(2, 3))
  digest = hashlib.sha256("héllo".encode()).hexdigest()[:32]
  assert xio.file_fingerprint(xio.join(base, "sub", "a.json")) == "sha256:" + digest
  assert xio.getsize(xio.join(base, "d.bin")) == 2
  assert xio.getsize(xio.join(base, "log.jsonl")) == 4
  with pytest.raises(FileNotFoundError):
    xio.getsize(xio.join(base, "nope"))
  xio.remove(xio.join(base, "d.bin"))
  xio.rmtree(xio.join(base, "sub"))
  assert not xio.exists(xio.join(base, "sub", "a.json")) and not xio.exists(xio.join(base, "d.bin"))
  if root == "gs":  # every object really went to the non-local filesystem
    assert all(key.startswith("bucket/run/") for key in memory_gcs)
    assert not (tmp_path / "gs:").exists()


def test_local_atomic_write_leaves_no_temp_file_on_failure(tmp_path, monkeypatch):
  target = tmp_path / "out.json"
  target.write_text("old")

  def boom(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(xio.os, "replace", boom)
  with pytest.raises(OSError, match="disk full"):
    xio.atomic_write_text(target, "new")
  assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def _pod_paths() -> dict[str, str]:
  """The I/O paths of gin/runs/train_xtr_pod.gin: its macros and the documented model_dir."""
  import xtr_jax.training.train  # noqa: F401  (registers the configurables the file binds)

  text = (gin_utils.GIN_DIR / "runs" / "train_xtr_pod.gin").read_text()
  (model_dir,) = re.findall(r"--model_dir=(\S+)", text)
  try:
    gin_utils.parse_gin(["runs/train_xtr_pod.gin"], [], finalize=False)
    return {
      "model_dir": model_dir,
      "pairs": gin.query_parameter("%PAIRS"),
      "vocab": gin.query_parameter("%VOCAB"),
    }
  finally:
    gin.clear_config()


def test_pod_recipe_paths_resolve_through_the_path_layer(memory_gcs):
  paths = _pod_paths()
  assert all(p.startswith("gs://") for p in paths.values()), paths
  # The trainer's model_dir handling (xio.makedirs / abspath / join) keeps gs:// intact.
  ckpt_dir = xio.abspath(xio.join(paths["model_dir"], "checkpoints"))
  assert ckpt_dir == paths["model_dir"] + "/checkpoints"
  xio.makedirs(paths["model_dir"])
  with xio.open_file(xio.join(paths["model_dir"], "metrics.jsonl"), "a") as f:
    f.write('{"step": 1}\n')
  # The pairs glob and the vocabulary resolve on the (in-memory) bucket.
  pair_dir = paths["pairs"].rsplit("/", 1)[0]
  for code in ("ja", "fi"):
    xio.atomic_write_text(f"{pair_dir}/{code}.jsonl", "{}\n")
  xio.atomic_write_bytes(paths["vocab"], b"spm")
  assert xio.glob(paths["pairs"]) == [f"{pair_dir}/fi.jsonl", f"{pair_dir}/ja.jsonl"]
  assert xio.isfile(paths["vocab"]) and xio.abspath(paths["vocab"]) == paths["vocab"]
  assert xio.read_text(xio.join(paths["model_dir"], "metrics.jsonl")) == '{"step": 1}\n'


def test_replace_dir_swaps_whole_directories(tmp_path):
  new, target = tmp_path / ".tmp", tmp_path / "ckpt"
  new.mkdir()
  (new / "a").write_text("1")
  xio.replace_dir(new, target)
  assert (target / "a").read_text() == "1" and not new.exists()
  new.mkdir()
  (new / "b").write_text("2")
  xio.replace_dir(new, target)
  assert sorted(p.name for p in target.iterdir()) == ["b"]  # the old one is gone, not merged
  assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # nor left aside
  with pytest.raises(ValueError, match=r"replace_dir\(gs://B/ckpt\): a remote directory"):
    xio.replace_dir(new, "gs://B/ckpt")


def test_train_command_writes_its_config_to_a_remote_model_dir(memory_gcs, monkeypatch):
  """``xtr-jax train --model_dir gs://...``: the directory and config.gin go through the path
  layer (before, os.makedirs made a local ./gs:/ folder); training gets the gs:// path."""
  from xtr_jax import partitioning
  from xtr_jax.training import train, trainer

  seen = []
  monkeypatch.setattr(trainer, "train", lambda model_dir, stop_at_step=None: seen.append(model_dir))
  monkeypatch.setattr(partitioning, "maybe_initialize_distributed", lambda: None)
  try:
    assert train.main(["--model_dir", "gs://bucket/run", "--gin.TRAIN_STEPS=7"]) == 0
    assert seen == ["gs://bucket/run"]
    assert "TRAIN_STEPS = 7" in xio.read_text("gs://bucket/run/config.gin")
  finally:
    gin.clear_config()
