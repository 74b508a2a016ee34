"""mBERT's WordPiece tokenizer behind the project's tokenizer interface (issue #16).

The reference is transformers' ``BertTokenizerFast`` over a tiny mBERT-like ``vocab.txt``
written here (cased: capitals, accents, ``##`` continuations, CJK, Cyrillic, Greek, Arabic).
Checked: ``HFTokenizer`` on its saved tokenizer.json, the same tokenizer built from the
vocab.txt alone, and the tokenizer a ``convert --from hf_bert`` checkpoint carries, all give
its ids (truncated or not); folders without BERT's or XLM-R's specials fail in one line.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from xtr_jax import cli  # noqa: E402
from xtr_jax.checkpoints import orbax_io  # noqa: E402
from xtr_jax.checkpoints.tokenizers import carried_tokenizer, tokenizer_for  # noqa: E402
from xtr_jax.data import tokenizer as tk  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # mBERT's order of them (ids 0, 100-103)
PUNCT = list(".,!?'-();:")
LATIN = [
  "The", "the", "a", "is", "in", "and", "of", "cat", "dog", "city", "Paris", "Tokyo", "play",
  "walk", "run", "book", "school", "river", "king", "Café", "café", "über", "Über", "straße",
  "é", "e", "un", "##s", "##ing", "##ed", "##er", "##é", "##a", "##e", "##n", "##t", "Berlin",
  "New", "York", "1", "2", "##0", "##4", "2024", "x", "##y", "z",
]  # fmt: skip
OTHER = [
  "東", "京", "大", "学", "の", "学生", "Привет", "мир", "при", "##вет", "##ствие", "Москва",
  "καλη", "##μέρα", "Αθήνα", "مرحبا", "عالم", "नमस्ते", "##्", "🙂",
]  # fmt: skip
VOCAB = [*SPECIALS, *PUNCT, *LATIN, *OTHER]
TEXTS = [
  "The cat is playing in Paris.",
  "Café über straße, Über alles! café",
  "東京大学の学生",
  "Привет, мир! Приветствие Москва",
  "καλημέρα Αθήνα مرحبا عالم नमस्ते 🙂",
  "unknownword xyzzy qwerty",
  "e\u0301 decomposed and CAFÉ shouted",
  "  spaces   and\ttabs\nand lines  ",
  "[MASK] and [CLS] inside, [UNK] too",
  "",
  "walked walking runs books in New York 2024 (1, 2)",
  "control\x00chars\u200band\ufeffmarks",
  "a" * 120 + " long word",
  "The dog, the cat; the king: the river - the school",
]
HF_SIZES = dict(
  vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
  intermediate_size=64,
)  # fmt: skip
LENGTHS = (2, 3, 5, 8, 512)


def _reference(vocab_txt: pathlib.Path, lower: bool):
  """``BertTokenizerFast`` on the vocab.txt. transformers 5 reads it from ``vocab`` (its
  ``vocab_file`` is silently ignored there), 4.x from ``vocab_file``: both are passed, and
  the size is checked so a reference with the default 5-piece vocabulary cannot pass."""
  ref = transformers.BertTokenizerFast(
    vocab=str(vocab_txt), vocab_file=str(vocab_txt), do_lower_case=lower
  )
  assert len(ref.get_vocab()) == len(VOCAB)
  return ref


def _ref_ids(ref, texts: list[str], max_length: int | None = None) -> list[list[int]]:
  kw = dict(truncation=True, max_length=max_length) if max_length else {}
  return ref(texts, add_special_tokens=True, **kw)["input_ids"]


def _one_line(excinfo, path) -> str:
  msg = str(excinfo.value)
  assert "\n" not in msg and str(path) in msg, msg
  return msg


@pytest.fixture(scope="module")
def vocab_txt(tmp_path_factory) -> pathlib.Path:
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
  return path


@pytest.fixture(scope="module")
def reference(vocab_txt):
  return _reference(vocab_txt, lower=False)


@pytest.fixture(scope="module")
def saved(reference, tmp_path_factory) -> pathlib.Path:
  """The reference's own save_pretrained folder (tokenizer.json + tokenizer_config.json)."""
  path = tmp_path_factory.mktemp("saved") / "mbert_tok"
  reference.save_pretrained(str(path))
  assert (path / "tokenizer.json").is_file()
  return path


def _model_folder(path: pathlib.Path, tokenizer_files: dict[str, pathlib.Path | str]) -> str:
  """A random tiny ``BertModel`` saved by transformers, with the given tokenizer files."""
  torch.manual_seed(0)
  model = transformers.BertModel(transformers.BertConfig(**HF_SIZES))
  model.save_pretrained(str(path), safe_serialization=True)
  for name, src in tokenizer_files.items():
    if isinstance(src, pathlib.Path):
      shutil.copy(src, path / name)
    else:
      (path / name).write_text(src, encoding="utf-8")
  return str(path)


def _convert(folder: str, out: pathlib.Path) -> str:
  argv = ["convert", "--from", "hf_bert", "--input", folder, "--output", str(out)]
  assert cli.main(argv) == 0
  return str(out)


# ----------------------------------------------------------------------------- tokenizer.json


def test_tokenizer_json_gives_bert_tokenizer_fast_ids(saved, reference):
  tok = tk.HFTokenizer.from_file(str(saved / "tokenizer.json"))
  assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (2, 3, 0, len(VOCAB))
  for n in LENGTHS:
    assert tok.encode(TEXTS, n) == _ref_ids(reference, TEXTS, n), n
  assert tok.encode(TEXTS, 512) == _ref_ids(reference, TEXTS)
  ids = tok.encode(TEXTS, 512)
  assert any(1 in x for x in ids) and all(x[0] == 2 and x[-1] == 3 for x in ids)
  assert [tok.decode(x) for x in ids[:5]] == reference.batch_decode(
    ids[:5], skip_special_tokens=True
  )


def test_truncation_keeps_the_closing_sep(saved, reference):
  tok = tk.HFTokenizer.from_file(str(saved / "tokenizer.json"))
  long = [" ".join(["the cat"] * 40)]
  for n in (2, 4, 9):
    (ids,) = tok.encode(long, n)
    assert len(ids) == n and ids[0] == 2 and ids[-1] == 3
    assert [ids] == _ref_ids(reference, long, n)


def test_save_and_load_tokenizer_round_trip(saved, tmp_path):
  tok = tk.HFTokenizer.from_file(str(saved / "tokenizer.json"), query_prefix="q: ")
  tok.save(str(tmp_path))
  spec = json.loads(json.dumps(tok.to_dict()))
  assert (spec["bos_id"], spec["eos_id"], spec["pad_id"]) == (2, 3, 0)
  back = tk.load_tokenizer(spec, str(tmp_path))
  assert back.fingerprint == tok.fingerprint
  assert back.encode(TEXTS, 64, role="query") == tok.encode(TEXTS, 64, role="query")
  with pytest.raises(ValueError, match="eos_id=3 but the spec records 2") as info:
    tk.load_tokenizer({**spec, "eos_id": 2}, str(tmp_path))
  _one_line(info, tmp_path / "tokenizer.json")


def test_a_vocabulary_with_both_families_follows_its_template(saved, tmp_path):
  """<s> </s> <pad> added to a BERT tokenizer: its template closes with [SEP], so BERT's."""
  raw = tokenizers.Tokenizer.from_file(str(saved / "tokenizer.json"))
  raw.add_special_tokens(["<s>", "</s>", "<pad>"])
  raw.save(str(tmp_path / "tokenizer.json"))
  tok = tk.HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
  assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 3, 0)


def test_no_known_special_tokens_is_one_line_naming_the_file(tmp_path):
  words = {w: i for i, w in enumerate(["<unk>", "<bos>", "<eos>", "cat", "the"])}
  raw = tokenizers.Tokenizer(tokenizers.models.WordLevel(words, "<unk>"))
  raw.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  path = tmp_path / "tokenizer.json"
  raw.save(str(path))
  with pytest.raises(ValueError, match=r"\[CLS\] \[SEP\] \[PAD\]") as info:
    tk.HFTokenizer.from_file(str(path))
  assert "<s> </s> <pad>" in _one_line(info, path)


# ----------------------------------------------------------------------------- vocab.txt only


def test_vocab_txt_alone_gives_the_same_ids(vocab_txt, saved, reference):
  built = tk.HFTokenizer.from_wordpiece_vocab(str(vocab_txt))  # cased, read off the pieces
  for n in LENGTHS:
    assert built.encode(TEXTS, n) == _ref_ids(reference, TEXTS, n), n
  assert (built.bos_id, built.eos_id, built.pad_id) == (2, 3, 0)
  # The same tokenizer as transformers' own tokenizer.json, down to the fingerprint.
  assert built.fingerprint == tk.HFTokenizer.from_file(str(saved / "tokenizer.json")).fingerprint
  assert built.to_dict()["file"] == "tokenizer.json"


def test_lowercase_option_and_uncased_vocabulary(vocab_txt, tmp_path):
  lower = _reference(vocab_txt, lower=True)
  built = tk.HFTokenizer.from_wordpiece_vocab(str(vocab_txt), lowercase=True)
  assert built.encode(TEXTS, 512) == _ref_ids(lower, TEXTS)
  assert built.encode(TEXTS, 512) != tk.HFTokenizer.from_wordpiece_vocab(str(vocab_txt)).encode(
    TEXTS, 512
  )
  # A vocabulary without capitals is an uncased model's: lower-cased, as transformers' default.
  uncased = [p if p in SPECIALS else p.lower() for p in dict.fromkeys(VOCAB)]
  uncased = list(dict.fromkeys(uncased))
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(uncased) + "\n", encoding="utf-8")
  ref = transformers.BertTokenizerFast(vocab=str(path), vocab_file=str(path))
  assert len(ref.get_vocab()) == len(uncased) and ref.do_lower_case
  assert tk.HFTokenizer.from_wordpiece_vocab(str(path)).encode(TEXTS, 512) == _ref_ids(ref, TEXTS)


def test_bad_vocab_txt_is_one_line_naming_the_file(tmp_path):
  path = tmp_path / "vocab.txt"
  cases = {
    "no \\[CLS\\] line": [p for p in VOCAB if p != "[CLS]"],
    f"line {VOCAB.index('the') + 1} repeats the piece 'the' of line 9": [
      "the" if i == 8 else p for i, p in enumerate(VOCAB)
    ],
  }
  for match, pieces in cases.items():
    path.write_text("\n".join(pieces) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=match) as info:
      tk.HFTokenizer.from_wordpiece_vocab(str(path))
    _one_line(info, path)
  path.write_bytes(b"[PAD]\n\xff\xfe\n")
  with pytest.raises(ValueError, match="invalid UTF-8") as info:
    tk.HFTokenizer.from_wordpiece_vocab(str(path))
  _one_line(info, path)


# ----------------------------------------------------------------------------- convert


@pytest.mark.parametrize("layout", ["tokenizer.json", "vocab.txt", "vocab.txt+lower"])
def test_converted_mbert_checkpoint_carries_the_reference_tokenizer(
  layout, vocab_txt, saved, tmp_path
):
  """``convert --from hf_bert`` of a tiny BertModel folder with each tokenizer layout."""
  if layout == "tokenizer.json":
    files = {n: saved / n for n in ("tokenizer.json", "tokenizer_config.json")}
  else:
    files = {"vocab.txt": vocab_txt}
    if layout.endswith("+lower"):
      files["tokenizer_config.json"] = json.dumps({"do_lower_case": True, "pad_token": "[PAD]"})
  ref = _reference(vocab_txt, lower=layout.endswith("+lower"))
  ckpt = _convert(_model_folder(tmp_path / "mbert", files), tmp_path / "ckpt")
  meta = orbax_io.load_metadata(ckpt)
  spec = meta["extra"]["tokenizer"]
  assert spec["file"] == "tokenizer.json" and (tmp_path / "ckpt" / "tokenizer.json").is_file()
  assert (spec["bos_id"], spec["eos_id"], spec["pad_id"]) == (2, 3, 0)
  assert meta["config"]["pad_token_id"] == 0
  tok = tokenizer_for(ckpt, meta["extra"], None)
  for n in (3, 512):
    assert tok.encode(TEXTS, n) == _ref_ids(ref, TEXTS, n)
  extra, assets = carried_tokenizer(ckpt)  # what a checkpoint trained from it inherits
  assert extra["tokenizer"] == spec and set(assets) == {"tokenizer.json"}


@pytest.mark.parametrize("name", ["vocab.txt", "tokenizer.json"])
def test_convert_refuses_a_folder_without_known_specials(name, tmp_path, capsys):
  pieces = ["<unk>", *VOCAB[5:]]
  src = tmp_path / name
  if name == "vocab.txt":
    src.write_text("\n".join(pieces) + "\n", encoding="utf-8")
  else:
    model = tokenizers.models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="<unk>")
    tokenizers.Tokenizer(model).save(str(src))
  folder = _model_folder(tmp_path / "odd", {name: src})
  capsys.readouterr()  # transformers' save progress bar
  argv = ["convert", "--from", "hf_bert", "--input", folder, "--output", str(tmp_path / "c")]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert "\n" not in err and str(tmp_path / "odd" / name) in err, err
  assert ("not a BERT vocabulary" if name == "vocab.txt" else "[CLS] [SEP] [PAD]") in err, err
  assert not (tmp_path / "c").exists()
