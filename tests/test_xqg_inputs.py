"""xQG training batches carry the same language prompt that `xtr-jax generate` builds."""

import json

import pytest
import sentencepiece as spm

from xtr_jax.data import question_translations
from xtr_jax.data.xqg_prompt import xqg_input
from xtr_jax.training import inputs


def test_seq2seq_batches_use_the_generation_prompt(tmp_path):
  rows = [
    {
      "_id": f"r{i}",
      "lang": "Japanese",
      "code": "ja",
      "query": f"質問 {i} ですか",
      "title": f"Town{i}",
      "text": f"Town{i} was founded in {1800 + i}.",
    }
    for i in range(40)
  ]
  path = tmp_path / "ja.jsonl"
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
  vocab = str(tmp_path / "spm.model")
  factory = inputs.jsonl_pairs_batches(
    pattern=str(path),
    vocabulary=vocab,
    batch_size=4,
    query_length=16,
    passage_length=48,
    heldout_fraction=0.0,
    converter="seq2seq",
    train_vocab_size=120,
  )
  batch = next(factory(0, 0, 1))
  sp = spm.SentencePieceProcessor(model_file=vocab)
  decoded = [sp.decode([int(t) for t in row if t > 1]) for row in batch["encoder_input_tokens"]]
  expected = {xqg_input("ja", r["title"], r["text"]) for r in rows}
  for text in decoded:
    assert text.startswith("Generate a Japanese question for this passage: Town")
    assert any(e.startswith(text) for e in expected)  # truncated to passage_length


def _write_translations(root, code, questions, english):
  folder = root / f"{code}-en"
  folder.mkdir(parents=True, exist_ok=True)
  (folder / f"{code}.txt").write_text("\n".join(questions) + "\n", "utf-8")
  (folder / "en.txt").write_text("\n".join(english) + "\n", "utf-8")


def test_question_translations_become_pairs_without_dev_queries(tmp_path):
  root = tmp_path / "qt"
  _write_translations(
    root,
    "ru",
    ["Кто такой Пушкин?", "Где Москва?", "", "Кто такой Пушкин?", "Сколько лет Земле?"],
    ["Who is Pushkin?", "Where is Moscow?", "Empty source", "Who is Pushkin?", "How old is Earth?"],
  )
  dev = tmp_path / "dev.jsonl"
  dev.write_text(json.dumps({"id": "d1", "lang": "ru", "question": "Где Москва?"}) + "\n", "utf-8")
  out = tmp_path / "pairs.jsonl"
  args = ["--root", str(root), "--languages", "ru", "--exclude", str(dev), "--output", str(out)]
  assert question_translations.main(args) == 0
  rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
  # The dev query, the pair with an empty side and the duplicate are dropped.
  assert [(r["query"], r["text"]) for r in rows] == [
    ("Кто такой Пушкин?", "Who is Pushkin?"),
    ("Сколько лет Земле?", "How old is Earth?"),
  ]
  assert rows[0]["_id"] == "xor-qt-ru-1" and rows[1]["_id"] == "xor-qt-ru-5"
  assert (rows[0]["lang"], rows[0]["code"], rows[0]["title"]) == ("Russian", "ru", "")
  # They read as pairs, alone or next to other pair files (comma-separated globs).
  other = tmp_path / "other" / "fi.jsonl"
  other.parent.mkdir()
  other.write_text(json.dumps({"_id": "f1", "code": "fi", "query": "Mikä?", "text": "T"}) + "\n")
  records = inputs.read_pairs(f"{tmp_path / 'other' / '*.jsonl'}, {out}")
  assert [r["id"] for r in records] == ["f1", "xor-qt-ru-1", "xor-qt-ru-5"]
  assert records[1]["passage"] == "Who is Pushkin?"


def test_question_translations_errors_name_the_files(tmp_path, capsys):
  root = tmp_path / "qt"
  _write_translations(root, "fi", ["Mikä?", "Kuka?"], ["What?"])
  with pytest.raises(ValueError, match=r"fi\.txt has 2 lines but .*en\.txt has 1"):
    list(question_translations.translation_pairs(str(root), ["fi"]))
  with pytest.raises(FileNotFoundError, match=r"ja-en.ja\.txt not found"):
    list(question_translations.translation_pairs(str(root), ["ja"]))
  # The command turns them into a one-line usage error and writes nothing.
  out = tmp_path / "out.jsonl"
  with pytest.raises(SystemExit):
    question_translations.main(["--root", str(root), "--languages", "xx", "--output", str(out)])
  assert "unknown language code 'xx'" in capsys.readouterr().err and not out.exists()
  with pytest.raises(FileNotFoundError, match=r"no pair files match 'nope/\*\.jsonl'"):
    inputs.read_pairs(f"{root}/fi-en/*.txt,nope/*.jsonl")
