"""Issue #18: NaN/Inf in stored or incoming token vectors is a one-line error naming the file
and the first bad row, for every index kind; clean indexes load and search as before.

Each corruption writes one value into the .npy on disk (a memory map opened r+), as a
fuzzed or bit-rotted file would hold it.
"""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest

from xtr_jax.index import build
from xtr_jax.index import sharded_index as si
from xtr_jax.index.brute_force import first_nonfinite_row
from xtr_jax.index.compact import CompactParams
from xtr_jax.index.scann_index import ScannParams
from xtr_jax.index.store import IndexFormatError, build_index, load_index

DIM = 16
COMPACT = CompactParams(
  num_lists=6, nprobe=6, num_subspaces=4, training_sample_size=400, kmeans_iterations=3,
  chunk_tokens=100,
)  # fmt: skip
SCANN = ScannParams(reorder=20, reorder_dtype="float32")  # float32 dataset.npy is stored too


def _data(n: int = 240, passages: int = 30, seed: int = 0):
  rng = np.random.default_rng(seed)
  v = rng.normal(size=(n, DIM))
  v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
  t2p = np.sort(np.concatenate([np.arange(passages), rng.integers(0, passages, n - passages)]))
  return v, t2p.astype(np.int32), [f"p{i}" for i in range(passages)]


def _queries(seed: int = 1) -> np.ndarray:
  q = np.random.default_rng(seed).normal(size=(5, DIM))
  return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _build(path, backend: str, data=None, **kw) -> str:
  v, t2p, pids = data or _data()
  build_index(str(path), v, t2p, pids, model_fingerprint="fp", backend=backend,
              compact_params=COMPACT, scann_params=SCANN, **kw)  # fmt: skip
  return str(path)


def _poke(path: str, where: tuple, value: float) -> float:
  """Writes ``value`` at ``where`` of the .npy at ``path`` in place; returns the old value."""
  arr = np.lib.format.open_memmap(path, mode="r+")
  old = float(arr[where])
  arr[where] = value
  arr.flush()
  del arr
  return old


def _search(index_dir: str, **kw):
  ids, scores = load_index(index_dir, **kw).search_tokens(_queries(), 7)
  return ids.tolist(), scores.tolist()


def _refused(index_dir: str, path: str, row: int, **kw) -> None:
  """The load fails with exactly the one-line message naming ``path`` and ``row``."""
  with pytest.raises(IndexFormatError) as e:
    load_index(index_dir, **kw)
  assert str(e.value) == f"index {path}: row {row} has non-finite values"
  assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


@pytest.fixture(scope="module", params=["brute_force", "scann", "compact"])
def index(request, tmp_path_factory) -> tuple[str, str]:
  backend = request.param
  return _build(tmp_path_factory.mktemp(backend) / "idx", backend), backend


def test_nan_and_inf_in_stored_vectors_name_file_and_row(index):
  d, backend = index
  clean = _search(d)
  vpath = os.path.join(d, "vectors.npy")
  for where, value in (((17, 3), np.nan), ((5, 0), np.inf), ((200, DIM - 1), -np.inf)):
    old = _poke(vpath, where, value)
    _refused(d, vpath, where[0])
    _refused(d, vpath, where[0], backend="brute_force")
    _poke(vpath, where, old)
  # Two bad rows: the first one is named.
  olds = [_poke(vpath, (r, 1), np.nan) for r in (90, 40)]
  _refused(d, vpath, 40)
  for r, old in zip((90, 40), olds):
    _poke(vpath, (r, 1), old)
  # Restored: the clean index loads and searches with the same results, checked or not.
  assert _search(d) == clean
  assert _search(d, check_vectors=False) == clean
  assert _search(d, mmap=False) == clean


def test_check_vectors_false_skips_only_the_vector_scan(index):
  d, backend = index
  vpath = os.path.join(d, "vectors.npy")
  old = _poke(vpath, (3, 2), np.nan)
  try:
    assert load_index(d, check_vectors=False).num_passages == 30
  finally:
    _poke(vpath, (3, 2), old)


@pytest.mark.parametrize("name, where", [("centroids.npy", (4, 7)), ("codebooks.npy", (2, 9, 1))])
def test_compact_float_parts_are_checked(tmp_path, name, where):
  d = _build(tmp_path / "idx", "compact")
  path = os.path.join(d, "compact", "seg_00000", name)
  clean = _search(d)
  for value in (np.nan, np.inf):
    old = _poke(path, where, value)
    _refused(d, path, where[0])
    _poke(path, where, old)
  assert _search(d) == clean


def test_compact_without_vectors_checks_its_float_parts(tmp_path):
  import dataclasses

  v, t2p, pids = _data()
  d = str(tmp_path / "nv")
  build_index(d, v, t2p, pids, model_fingerprint="fp", backend="compact",
              compact_params=dataclasses.replace(COMPACT, keep_vectors=False))  # fmt: skip
  path = os.path.join(d, "compact", "seg_00000", "centroids.npy")
  _poke(path, (0, 0), np.nan)
  _refused(d, path, 0)


def test_scann_float_assets_are_checked(tmp_path):
  d = _build(tmp_path / "idx", "scann")
  path = os.path.join(d, "segments", "seg_00000", "dataset.npy")
  assert np.load(path).dtype == np.float32
  clean = _search(d)
  old = _poke(path, (11, 4), np.nan)
  _refused(d, path, 11)
  assert load_index(d, backend="brute_force").num_passages == 30  # ScaNN's files unused
  _poke(path, (11, 4), old)
  assert _search(d) == clean


def test_sharded_index_names_the_shard_file(tmp_path):
  v, t2p, pids = _data()
  half = int(np.searchsorted(t2p, 15))
  root = tmp_path / "sh"
  for i, (rows, first) in enumerate(((slice(0, half), 0), (slice(half, None), 15))):
    build_index(str(root / si.shard_dir_name(i)), v[rows], t2p[rows] - first,
                pids[first : first + 15], model_fingerprint="fp", backend="brute_force")  # fmt: skip
  si.write_sharded_manifest(str(root), [si.shard_dir_name(i) for i in range(2)])
  clean = _search(str(root))
  vpath = os.path.join(str(root), "shard_00001", "vectors.npy")
  old = _poke(vpath, (8, 0), np.inf)
  _refused(str(root), vpath, 8)
  _poke(vpath, (8, 0), old)
  assert _search(str(root)) == clean


# ----------------------------------------------------------------------------- building


@pytest.mark.parametrize("backend", ["brute_force", "compact"])
def test_build_refuses_non_finite_input_and_writes_nothing(tmp_path, backend):
  v, t2p, pids = _data()
  bad = v.astype(np.float32)
  bad[33, 5] = np.nan
  with pytest.raises(IndexFormatError, match=r"^build_index: vectors \(as float16\): row 33 "):
    _build(tmp_path / "a", backend, (bad, t2p, pids))
  # Finite as float32 but Inf once stored as float16.
  bad[33, 5], bad[70, 0] = 0.0, 1e6
  with pytest.raises(IndexFormatError, match="row 70 has non-finite values"):
    _build(tmp_path / "a", backend, (bad, t2p, pids))
  extra = [(1, np.ones((2, DIM))), (2, np.full((3, DIM), np.nan))]
  with pytest.raises(IndexFormatError, match=r"extra_vectors\[1\] .*: row 0 has non-finite"):
    _build(tmp_path / "a", backend, (v, t2p, pids), extra_vectors=extra)
  with pytest.raises(IndexFormatError, match=r"extra_vectors\[0\] .*: row 1 has non-finite"):
    _build(tmp_path / "a", backend, (v, t2p, pids),
           extra_vectors=[(0, np.stack([np.ones(DIM), np.full(DIM, 9.0)]))], extra_weight=1e4)  # fmt: skip
  assert os.listdir(tmp_path) == []


def test_sharded_build_names_the_encoded_shard_file(tmp_path):
  v, t2p, pids = _data()
  work = tmp_path / "enc"
  work.mkdir()
  for i, rows in enumerate((slice(0, 100), slice(100, None))):
    np.save(work / f"vectors_{i:05d}.npy", v[rows])
    np.save(work / f"token_to_passage_{i:05d}.npy", t2p[rows])
  _poke(str(work / "vectors_00001.npy"), (17, 2), np.nan)
  shard = si.ShardInput(
    tuple(str(work / f"vectors_{i:05d}.npy") for i in range(2)),
    tuple(str(work / f"token_to_passage_{i:05d}.npy") for i in range(2)),
    tuple(pids),
  )
  with pytest.raises(IndexFormatError) as e:
    si.build_sharded_index(str(tmp_path / "out"), [shard], model_fingerprint="fp",
                           backend="brute_force")  # fmt: skip
  assert str(e.value) == f"encoded shard {work / 'vectors_00001.npy'}: row 17 has non-finite values"


def test_encoder_output_check_names_the_shard_file_and_local_row(tmp_path):
  v, _, _ = _data()
  record = {"shards": [{"index": 0, "tokens": 100}, {"index": 1, "tokens": 140}]}
  build.check_encoded_vectors(v, str(tmp_path), record)  # clean: nothing raised
  bad = v.copy()
  bad[117, 0] = np.inf
  with pytest.raises(IndexFormatError) as e:
    build.check_encoded_vectors(bad, str(tmp_path), record)
  path = os.path.join(str(tmp_path), "vectors_00001.npy")
  assert str(e.value) == f"encoded shard {path}: row 17 has non-finite values"


# ----------------------------------------------------------------------------- the scan


@pytest.mark.parametrize("dtype", ["<f2", ">f2", "<f4", ">f8"])
def test_scan_finds_the_first_bad_row_across_chunks(tmp_path, dtype):
  a = np.random.default_rng(0).normal(size=(1000, 12)).astype(dtype)
  path = str(tmp_path / "a.npy")
  np.save(path, a)
  for arr in (a, np.load(path, mmap_mode="r")):
    assert first_nonfinite_row(arr, chunk_bytes=500) is None
  for row, value in ((999, np.nan), (613, np.inf), (0, -np.inf)):
    _poke(path, (row, 11), value)
    for arr in (np.load(path), np.load(path, mmap_mode="r"), np.load(path, mmap_mode="r")[:]):
      for chunk in (1, 500, 1 << 24):
        assert first_nonfinite_row(arr, chunk_bytes=chunk) == row
  assert first_nonfinite_row(np.array([1.0, np.nan, 2.0])) == 1
  assert first_nonfinite_row(np.float32(np.inf)) == 0
  assert first_nonfinite_row(np.arange(10).reshape(5, 2)) is None
  assert first_nonfinite_row(np.full((3, 2), 70_000.0, np.float32), np.float16) == 0
  assert first_nonfinite_row(np.zeros((0, 4), np.float16)) is None


def test_scan_of_a_memory_mapped_file_keeps_memory_flat(tmp_path):
  """48 MiB of float16 vectors scanned with 1 MiB chunks: the scan's own allocations stay a
  few chunks (tracemalloc sees numpy's buffers and the bytes read)."""
  path = str(tmp_path / "big.npy")
  out = np.lib.format.open_memmap(path, "w+", np.float16, (196_608, 128))
  out[:] = 0.5
  out[-1, -1] = np.nan
  out.flush()
  del out
  arr = np.load(path, mmap_mode="r")
  tracemalloc.start()
  try:
    assert first_nonfinite_row(arr, chunk_bytes=1 << 20) == 196_607
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert peak < 6 << 20, peak


def test_random_single_value_corruptions_are_always_refused(tmp_path):
  """A small fuzz: one NaN/Inf anywhere in vectors.npy is always the one-line error with
  its row; the same file restored always loads with the clean results."""
  d = _build(tmp_path / "idx", "brute_force")
  vpath = os.path.join(d, "vectors.npy")
  clean = _search(d)
  rng = np.random.default_rng(5)
  for _ in range(25):
    where = (int(rng.integers(0, 240)), int(rng.integers(0, DIM)))
    old = _poke(vpath, where, float(rng.choice([np.nan, np.inf, -np.inf])))
    _refused(d, vpath, where[0])
    _poke(vpath, where, old)
  assert _search(d) == clean


# ----------------------------------------------------------------------------- users' switch


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory) -> str:
  """A brute-force index of the tiny model (its checkpoint recorded in the manifest)."""
  from xtr_jax.index.testing import build_tiny_index, make_tiny_setup

  root = str(tmp_path_factory.mktemp("tiny"))
  return build_tiny_index(make_tiny_setup(root, num_passages=20), os.path.join(root, "idx"))


@pytest.fixture
def nan_index(tiny_index, tmp_path) -> tuple[str, str]:
  """A copy of ``tiny_index`` with a NaN in row 9 of vectors.npy: (index dir, that file)."""
  import shutil

  d = str(tmp_path / "idx")
  shutil.copytree(tiny_index, d)
  vpath = os.path.join(d, "vectors.npy")
  _poke(vpath, (9, 3), np.nan)
  return d, vpath


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
  """``xtr-jax ARGV``: (exit code, stderr); searching a NaN row may warn, which is not
  this test's concern once the user skipped the check."""
  from xtr_jax import cli

  with np.errstate(all="ignore"):
    try:
      code = cli.main(argv)
    except SystemExit as e:
      code = e.code
  return code, capsys.readouterr().err


def test_retriever_refuses_a_nan_row_unless_told_to_skip_the_scan(nan_index):
  from xtr_jax.index.retriever import Retriever

  d, vpath = nan_index
  with pytest.raises(IndexFormatError) as e:
    Retriever.load(d)
  assert str(e.value) == f"index {vpath}: row 9 has non-finite values"
  retriever = Retriever.load(d, check_vectors=False)
  assert retriever.index.num_passages == 20
  with np.errstate(all="ignore"):
    assert len(retriever.search(["river king"], 3)[0]) == 3


@pytest.mark.parametrize("command", ["search", "serve"])
def test_cli_refuses_a_nan_row_unless_skip_vector_check(capsys, monkeypatch, nan_index, command):
  """Default: the one-line error (exit 2, no traceback); --skip_vector_check: it runs."""
  from xtr_jax.index import service

  served = []
  real_make_server = service.make_server

  def make_server(*args, **kwargs):  # serve: everything but the serving loop
    server, sock = real_make_server(*args, **kwargs)
    server.run = lambda sockets: served.append(sockets)
    return server, sock

  monkeypatch.setattr(service, "make_server", make_server)
  d, vpath = nan_index
  argv = [command, "--index", d] + (["--query", "river"] if command == "search" else [])
  argv += ["--port", "0"] if command == "serve" else []
  code, err = _cli(capsys, argv)
  assert code == 2
  assert err == f"xtr-jax {command}: error: index {vpath}: row 9 has non-finite values\n"
  code, err = _cli(capsys, [*argv, "--skip_vector_check"])
  assert code == 0, err
  assert "Traceback" not in err
  assert len(served) == (command == "serve")


def test_skip_vector_check_is_documented_in_help(capsys):
  from xtr_jax.index import service
  from xtr_jax.index.cli import search_parser

  for main in (lambda: search_parser().parse_args(["--help"]), lambda: service.main(["--help"])):
    with pytest.raises(SystemExit):
      main()
    text = " ".join(capsys.readouterr().out.split())
    assert "--skip_vector_check Skip the scan for NaN/Inf in the index's stored vectors" in text
    assert "(default: off," in text
