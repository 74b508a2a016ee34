"""``xtr-jax index --reuse_index``: an index built from another index's stored vectors.

The claim under test: reusing the vectors gives the same index as encoding the corpus again
(same vectors, rows, passages, search results), for token and augmented builds and from a
compact source; and every wrong pairing is refused in one line before anything is written.
"""

import json
import os
import shutil

import numpy as np
import pytest

from xtr_jax.index.compact import CompactParams
from xtr_jax.index.store import (
  IndexFormatError,
  build_index,
  read_manifest,
  stored_corpus_vectors,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  from xtr_jax.index.testing import make_tiny_setup  # noqa: PLC0415

  root = tmp_path_factory.mktemp("reuse")
  setup = make_tiny_setup(str(root / "tiny"), num_passages=8)
  generated = root / "generated.jsonl"
  generated.write_text(
    "".join(
      json.dumps({"docid": setup.passage_ids[i], "generated_queries": {"ja": [q]}}) + "\n"
      for i, q in [(1, "river king"), (4, "old bridge")]
    )
  )
  return setup, str(generated), root


def _index(*argv: str) -> int:
  import gin  # noqa: PLC0415
  from xtr_jax import cli  # noqa: PLC0415

  try:
    return cli.main(["index", *argv, "--gin.index_settings.backend='brute_force'"])
  except SystemExit as e:  # argparse's usage errors exit (code 2) instead of returning
    return int(e.code)
  finally:
    gin.clear_config()


def _arrays(index_dir: str) -> dict:
  with open(os.path.join(index_dir, "passage_ids.json")) as f:
    ids = json.load(f)
  return {
    "ids": ids,
    "vectors": np.load(os.path.join(index_dir, "vectors.npy")),
    "t2p": np.load(os.path.join(index_dir, "token_to_passage.npy")),
  }


def _search(index_dir: str, queries: list[str]):
  from xtr_jax.index.retriever import Retriever  # noqa: PLC0415

  return Retriever.load(index_dir).search(queries, k=5, exact=True)


def test_reused_augmented_index_equals_one_encoded_from_the_corpus(tiny):
  setup, generated, root = tiny
  ck, corpus = f"--checkpoint={setup.checkpoint}", f"--corpus={setup.corpus}"
  plain, direct, reused = (str(root / n) for n in ("plain", "direct", "reused"))
  assert _index(ck, corpus, f"--output={plain}") == 0
  augment = [f"--augment_with={generated}", "--augment_weight=0.5"]
  assert _index(ck, corpus, f"--output={direct}", *augment) == 0
  assert _index(ck, f"--reuse_index={plain}", f"--output={reused}", *augment) == 0
  a, b = _arrays(direct), _arrays(reused)
  assert a["ids"] == b["ids"]
  np.testing.assert_array_equal(a["vectors"], b["vectors"])
  np.testing.assert_array_equal(a["t2p"], b["t2p"])
  m_direct, m_reused = read_manifest(direct), read_manifest(reused)
  for key in ("num_tokens", "num_corpus_tokens", "num_extra_tokens", "model_fingerprint",
              "vocabulary_fingerprint", "corpus", "pooling", "extra_weight"):  # fmt: skip
    assert m_direct[key] == m_reused[key], key
  assert m_reused["num_extra_tokens"] > 0
  assert m_reused["vectors_from"] == os.path.abspath(plain)
  assert "vectors_from" not in m_direct
  assert _search(direct, ["river king", "bridge"]) == _search(reused, ["river king", "bridge"])
  # The source is only read: the plain index is as it was.
  assert read_manifest(plain)["num_extra_tokens"] == 0


def test_reusing_an_augmented_index_drops_its_questions(tiny):
  setup, generated, root = tiny
  ck, corpus = f"--checkpoint={setup.checkpoint}", f"--corpus={setup.corpus}"
  plain, aug, back = (str(root / n) for n in ("plain2", "aug2", "back2"))
  assert _index(ck, corpus, f"--output={plain}") == 0
  assert _index(ck, corpus, f"--output={aug}", f"--augment_with={generated}") == 0
  assert _index(ck, f"--reuse_index={aug}", corpus, f"--output={back}") == 0
  a, b = _arrays(plain), _arrays(back)
  np.testing.assert_array_equal(a["vectors"], b["vectors"])
  np.testing.assert_array_equal(a["t2p"], b["t2p"])
  assert read_manifest(back)["num_extra_tokens"] == 0


def test_compact_source_gives_back_its_vectors_in_encoding_order(tmp_path):
  rng = np.random.default_rng(0)
  v = rng.normal(size=(600, 32))
  v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
  t2p = np.sort(rng.integers(0, 40, 600)).astype(np.int32)
  pids = [f"p{i}" for i in range(40)]
  extra = [(3, rng.normal(size=(5, 32)).astype(np.float32))]
  params = CompactParams(num_lists=6, nprobe=6, num_subspaces=8, training_sample_size=600)
  build_index(str(tmp_path / "c"), v, t2p, pids, model_fingerprint="fp", backend="compact",
              compact_params=params, extra_vectors=extra)  # fmt: skip
  assert os.path.isfile(tmp_path / "c" / "token_order.npy")
  stored = stored_corpus_vectors(str(tmp_path / "c"), expected_fingerprint="fp")
  np.testing.assert_array_equal(stored.vectors, v)
  np.testing.assert_array_equal(stored.token_to_passage, t2p)
  assert stored.passage_ids == pids
  with pytest.raises(IndexFormatError, match="model fingerprint 'fp'.*'other'"):
    stored_corpus_vectors(str(tmp_path / "c"), expected_fingerprint="other")


def test_compact_source_without_vectors_is_refused(tmp_path):
  v = np.eye(32, dtype=np.float16)[np.arange(64) % 32]
  params = CompactParams(num_lists=4, nprobe=4, num_subspaces=8, keep_vectors=False)
  build_index(str(tmp_path / "c"), v, np.arange(64, dtype=np.int32) // 8,
              [f"p{i}" for i in range(8)], model_fingerprint="fp", backend="compact",
              compact_params=params)  # fmt: skip
  with pytest.raises(FileNotFoundError, match="vectors.npy.*built without float16 vectors"):
    stored_corpus_vectors(str(tmp_path / "c"))


def test_wrong_reuse_pairings_are_refused_before_writing(tiny, tmp_path, capsys):
  from xtr_jax.index.testing import make_tiny_setup, write_corpus  # noqa: PLC0415

  setup, _, root = tiny
  ck = f"--checkpoint={setup.checkpoint}"
  plain = str(root / "plain3")
  assert _index(ck, f"--corpus={setup.corpus}", f"--output={plain}") == 0
  other = str(tmp_path / "other.tsv")
  write_corpus(other, 7, seed=5)
  out = str(tmp_path / "out")
  cases = [
    ([ck, f"--output={out}"], "--corpus is required (or --reuse_index"),
    ([ck, f"--reuse_index={plain}", f"--output={plain}", "--overwrite"], "the same index as"),
    ([ck, f"--reuse_index={plain}", f"--corpus={other}", f"--output={out}"],
     "not the corpus of --reuse_index"),
    ([ck, f"--reuse_index={plain}", "--pooling=mean", f"--output={out}"],
     "holds token-pooled vectors"),
    ([ck, f"--reuse_index={setup.corpus}", f"--output={out}"], "expected an index directory"),
  ]  # fmt: skip
  for argv, message in cases:
    assert _index(*argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1], (argv, err)
    assert not os.path.exists(out)
  # A sharded index: refused before the model loads (its shards are indexes to reuse).
  from xtr_jax.index import sharded_index as si  # noqa: PLC0415

  sharded = tmp_path / "sharded"
  shutil.copytree(plain, sharded / si.shard_dir_name(0))
  si.write_sharded_manifest(str(sharded), [si.shard_dir_name(0)])
  assert _index(ck, f"--reuse_index={sharded}", f"--output={out}") == 2
  assert "a sharded index; reuse its shards one by one" in capsys.readouterr().err
  assert not os.path.exists(out)
  # Another model's vectors: refused by fingerprint, naming the source index.
  stranger = make_tiny_setup(str(tmp_path / "stranger"), num_passages=8, seed=3)
  code = _index(f"--checkpoint={stranger.checkpoint}", f"--reuse_index={plain}", f"--output={out}")
  assert code != 0
  err = capsys.readouterr().err.strip().splitlines()
  assert plain in err[-1] and "model fingerprint" in err[-1]
  assert not os.path.exists(out)
