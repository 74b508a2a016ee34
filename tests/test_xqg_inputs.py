"""xQG training batches carry the same language prompt that `xtr-jax generate` builds."""

import json

import sentencepiece as spm

from xtr_jax.models.generate_cli import xqg_input
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
