"""The main job end to end at the reduced ('smoke') size, then resumed from its outputs."""

import json

from xtr_jax.experiments import demo, sample_data


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
  out = tmp_path / "demo"
  assert demo.main(["--output_dir", str(out), "--scale", "smoke"]) == 0
  printed = capsys.readouterr().out
  for stage in range(1, 9):
    assert f"[{stage}/8]" in printed

  langs = set(sample_data.LANGUAGES)
  generated = [json.loads(x) for x in (out / "generated.jsonl").read_text("utf-8").splitlines()]
  corpus_rows = (out / "data" / "corpus.tsv").read_text("utf-8").splitlines()[1:]
  assert {g["docid"] for g in generated} == {r.split("\t")[0] for r in corpus_rows}
  assert all(set(g["generated_queries"]) == langs for g in generated)

  dev_ids = {json.loads(x)["id"] for x in (out / "data/xor/dev.jsonl").read_text().splitlines()}
  for name in ("plain", "xqg"):
    run_qids = {line.split()[0] for line in (out / f"run_{name}.trec").read_text().splitlines()}
    assert run_qids == dev_ids
    assert (out / f"index_{name}" / "manifest.json").is_file()
  manifests = {
    n: json.loads((out / f"index_{n}" / "manifest.json").read_text()) for n in ("plain", "xqg")
  }
  # The augmented index holds the passages' tokens plus the generated questions' tokens.
  assert manifests["xqg"]["num_tokens"] > manifests["plain"]["num_tokens"]

  assert manifests["xqg"]["extra_weight"] == demo.SCALES["smoke"].augment_weight
  assert manifests["plain"]["num_extra_tokens"] == 0 < manifests["xqg"]["num_extra_tokens"]

  summary = (out / "summary.md").read_text("utf-8")
  for lang in langs:
    assert f"| {lang} |" in summary
    assert f"| {lang} | " in summary.split("requested language's script")[1]
  assert "| all | |" in summary  # the script-share table
  assert json.loads((out / "eval_xqg.json").read_text())["comparison"]

  # A second run finds every artefact and skips the expensive stages.
  assert demo.main(["--output_dir", str(out), "--scale", "smoke"]) == 0
  again = capsys.readouterr().out
  for stage in ("[2/8]", "[3/8]", "[4/8]", "[5/8]"):
    line = next(x for x in again.splitlines() if x.startswith(stage))
    assert "skipping" in line


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
