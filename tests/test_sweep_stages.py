"""The sweeps' real stages (train + few-shot adaptation, index, search, generate, evaluate)
end to end at smoke size on the synthetic sample, plus resume after a crashed configuration."""

import json
import pathlib

import numpy as np
import pytest

import gin
from xtr_jax import gin_utils
from xtr_jax.experiments import sample_data, stages, sweep

SOURCES = {"ar": "src_a", "ru": "src_a", "ko": "src_a", "fi": "src_xor", "ja": "src_xor"}


def write_data(root: pathlib.Path) -> dict[str, str]:
  """The synthetic sample with a `source` per pair file, plus one leaked dev question."""
  paths = sample_data.write_sample(root / "sample", num_towns=12)
  pairs_dir = root / "pairs"
  pairs_dir.mkdir()
  dev = [json.loads(x) for x in pathlib.Path(paths["dev"]).read_text("utf-8").splitlines()]
  leaked = next(d for d in dev if d["lang"] == "ar")
  for code, source in SOURCES.items():
    src = root / "sample" / "swim_ir" / "cross_lingual" / f"{code}.jsonl"
    rows = [json.loads(x) for x in src.read_text("utf-8").splitlines()]
    if code == "ar":  # a training pair that repeats a dev question must be dropped
      rows.append({**rows[0], "_id": "leak", "query": "  " + leaked["question"].upper()})
    text = "".join(json.dumps({**r, "source": source}, ensure_ascii=False) + "\n" for r in rows)
    (pairs_dir / f"{code}.jsonl").write_text(text, "utf-8")
  return {"pairs": str(pairs_dir), **{k: str(v) for k, v in paths.items()}}


RUN = """
include 'sweeps/runs/xtr_cpu.gin'
PAIRS_DIR = '{pairs}'
CORPUS = '{corpus}'
QUERIES = '{dev}'
QRELS = '{qrels}'
VOCAB_SIZE = 300
BATCH_SIZE = 8
QUERY_LENGTH = 16
PASSAGE_LENGTH = 32
config.T5Config.d_model = 16
config.T5Config.d_ff = 32
config.T5Config.num_heads = 2
config.T5Config.d_kv = 8
config.T5Config.num_encoder_layers = 1
config.T5Config.num_decoder_layers = 1
trainer.ModelTask.proj_dim = 8
trainer.ModelTask.k_train = 16
optimizers.learning_rate_schedule.warmup_steps = 1
trainer.train.checkpoint_every = 100
trainer.train.eval_batches = None
trainer.train.log_every = 1
inputs.pairs_batches.heldout_fraction = 0.1
encode.EncodeParams.max_length = 64
encode.EncodeParams.batch_size = 16
retriever.SearchParams.token_top_k = 50
stages.SearchPlan.k = 20
"""


def write_sweep(tmp: pathlib.Path, data: dict, body: str) -> pathlib.Path:
  run = tmp / "run.gin"
  run.write_text(RUN.format(**data), "utf-8")
  path = tmp / "sweep.gin"
  text = body.replace("RUN_GIN", str(run))
  text += f"""
evaluate_stage.queries = '{data["dev"]}'
evaluate_stage.qrels = '{data["qrels"]}'
evaluate_stage.corpus = '{data["corpus"]}'
evaluate_stage.metrics = 'Recall@20,MRR@10,R@2kt'
evaluate_stage.extra_flags = ['--tokenizer', 'punkt_untrained']
bm25_stage.queries = '{data["dev"]}'
bm25_stage.corpus = '{data["corpus"]}'
"""
  path.write_text(text, "utf-8")
  return path


LANGUAGES_SWEEP = """
sweep_spec.name = 'smoke_languages'
sweep_spec.stages = ['train', 'index', 'search', 'evaluate']
sweep_spec.stage_targets = {
  'train': 'xtr_jax.experiments.stages:train_stage',
  'index': 'xtr_jax.experiments.stages:index_stage',
  'search': 'xtr_jax.experiments.stages:search_stage',
}
sweep_spec.base_bindings = [
  "include 'RUN_GIN'",
  "SWIM_IR_SOURCES = ['src_a']",
  "TRAIN_STEPS = 4",
  "FEW_SHOT_LANGUAGES = ['fi', 'ja']",
  "FEW_SHOT_SOURCES = ['src_xor']",
  "FEW_SHOT_PER_LANGUAGE = 8",
  "ADAPT_STEPS = 2",
]
sweep_spec.configurations = {
  'n2': {'bindings': ["SWIM_IR_LANGUAGES = ['ar', 'ko']"], 'labels': {'n': 2}},
  'bm25': {'stages': ['bm25', 'evaluate'], 'labels': {'system': 'BM25'}},
}
sweep_spec.plot = {'x': 'n', 'metric': 'Recall@20'}
"""


@pytest.mark.slow
def test_languages_sweep_end_to_end_and_resume(tmp_path, monkeypatch):
  data = write_data(tmp_path)
  gin_file = write_sweep(tmp_path, data, LANGUAGES_SWEEP)
  out = tmp_path / "out"

  # First run: n2 crashes in its search stage, after both training phases and the index.
  real_search, real_train = stages.search_stage, stages.trainer.train

  def crashing_search(config_name, bindings, workdir):
    raise RuntimeError("simulated crash in search")

  monkeypatch.setattr(stages, "search_stage", crashing_search)
  assert sweep.main(["--gin_file", str(gin_file), "--output", str(out)]) == 1
  records = {json.loads(x)["config"]: json.loads(x) for x in (out / "results.jsonl").open()}
  assert records["n2"]["status"] == "failed" and "simulated crash" in records["n2"]["error"]
  # BM25 + evaluate ran after it with the sweep's own gin config (restored after each stage).
  assert records["bm25"]["status"] == "ok"
  assert records["bm25"]["outputs"]["evaluate"]["metrics"]["Recall@20"]["macro"] > 0

  # Rerun: n2 runs again; its finished training phases are reused, not retrained.
  monkeypatch.setattr(stages, "search_stage", real_search)
  calls = []
  monkeypatch.setattr(
    stages.trainer, "train", lambda *a, **k: calls.append(a) or real_train(*a, **k)
  )
  assert sweep.main(["--gin_file", str(gin_file), "--output", str(out)]) == 0
  assert calls == []
  lines = [json.loads(x) for x in (out / "results.jsonl").open()]
  assert [(r["config"], r["status"]) for r in lines] == [
    ("n2", "failed"),
    ("bm25", "ok"),
    ("n2", "ok"),
  ]

  train = lines[-1]["outputs"]["train"]
  assert train["phase1"]["reused"] == 1 and train["adapt"]["reused"] == 1
  assert train["train_languages"] == ["ar", "ko"]
  assert train["data"]["dropped_question_overlap"] == 1  # the leaked dev question
  assert train["phase1"]["steps"] == 4 and train["adapt"]["steps"] == 2
  assert train["adapt_data"]["pairs"] == 16  # 8 per few-shot language
  train_pairs = [json.loads(x) for x in open(out / "n2" / "xtr" / "train_pairs.jsonl")]
  assert {r["code"] for r in train_pairs} == {"ar", "ko"} and "leak" not in {
    r["_id"] for r in train_pairs
  }
  adapt_pairs = [json.loads(x) for x in open(out / "n2" / "xtr" / "adapt_pairs.jsonl")]
  assert {r["code"] for r in adapt_pairs} == {"fi", "ja"}
  assert {r["source"] for r in adapt_pairs} == {"src_xor"}
  # Phase 2 starts from phase 1's final model and the checkpoint recorded is phase 2's.
  assert (
    str(out / "n2" / "xtr" / "phase1" / "final") in (out / "n2/xtr/adapt/config.gin").read_text()
  )
  assert json.loads((out / "n2" / "models.json").read_text())["xtr"].endswith("adapt/final")
  # One vocabulary for the whole sweep, in its output folder.
  assert train["vocabulary"] == str((out / "vocab" / "spm_300.model").resolve())

  dev_ids = {json.loads(x)["id"] for x in open(data["dev"])}
  run = (out / "n2" / "run.trec").read_text().splitlines()
  assert {line.split()[0] for line in run} == dev_ids
  metrics = lines[-1]["outputs"]["evaluate"]["metrics"]
  assert set(metrics) == {"Recall@20", "MRR@10", "R@2kt"}
  assert set(metrics["Recall@20"]["per_lang"]) == set(sample_data.LANGUAGES)
  table = (out / "results.md").read_text()
  assert "| bm25 |" in table and "| n2 | 2 |" in table
  assert (out / "smoke_languages.png").read_bytes()[:4] == b"\x89PNG"


BASELINES_SWEEP = """
sweep_spec.name = 'smoke_baselines'
sweep_spec.stages = ['train', 'index', 'search', 'evaluate']
sweep_spec.stage_targets = {
  'train': 'xtr_jax.experiments.stages:train_stage',
  'index': 'xtr_jax.experiments.stages:index_stage',
  'search': 'xtr_jax.experiments.stages:search_stage',
}
sweep_spec.base_bindings = ["include 'RUN_GIN'", "TRAIN_STEPS = 3", "SWIM_IR_LANGUAGES = ['ar', 'fi']"]
sweep_spec.configurations = {
  'colbert': {'bindings': ["MODEL_KIND = 'colbert'", 'stages.SearchPlan.exact = True'],
              'labels': {'model': 'ColBERT'}},
  'single_vector': {'bindings': ["MODEL_KIND = 'single_vector'"], 'labels': {'model': 'single'}},
}
"""


@pytest.mark.slow
def test_baselines_sweep_colbert_and_single_vector(tmp_path):
  data = write_data(tmp_path)
  out = tmp_path / "out"
  assert (
    sweep.main(
      ["--gin_file", str(write_sweep(tmp_path, data, BASELINES_SWEEP)), "--output", str(out)]
    )
    == 0
  )
  records = [json.loads(x) for x in (out / "results.jsonl").open()]
  assert [r["status"] for r in records] == ["ok", "ok"]
  assert (out / "colbert" / "index" / "manifest.json").is_file()
  assert records[1]["outputs"]["index"]["dense"] == 1
  dev_ids = {json.loads(x)["id"] for x in open(data["dev"])}
  for name in ("colbert", "single_vector"):
    run = (out / name / "run.trec").read_text().splitlines()
    assert {line.split()[0] for line in run} == dev_ids
    assert all(len(line.split()) == 6 for line in run)

  # Single-vector xQG augmentation in the index stage: p <- (1 - alpha) p + alpha * sum(q).
  import shutil  # noqa: PLC0415

  work = tmp_path / "sv_xqg"
  shutil.copytree(out / "single_vector", work)
  plain = np.load(work / "index" / "dense_vectors.npy")
  pids = json.loads((work / "index" / "dense.json").read_text())["passage_ids"]
  questions = {pids[0]: ["wo ist der fluss", "who rules"], pids[2]: ["river king"]}
  (work / "generated.jsonl").write_text(
    "".join(
      json.dumps({"docid": pid, "generated_queries": {"de": qs}}) + "\n"
      for pid, qs in questions.items()
    )
  )
  bindings = [
    f"include '{tmp_path / 'run.gin'}'",
    "stages.IndexPlan.augment = True",
    "stages.IndexPlan.augment_alpha = 0.25",
  ]
  assert stages.index_stage("sv_xqg", bindings, work)["dense"] == 1
  augmented = np.load(work / "index" / "dense_vectors.npy")
  model = stages._load_retrieval(stages.model_checkpoint(work, "xtr"))
  dense = stages.DenseEncoder(model.params, model.config, model.proj_dim)
  for row, pid in enumerate(pids):
    expected = plain[row]
    if pid in questions:
      q = dense.encode(model.tokenizer.encode(questions[pid], 64, role="query"), 16, 64)
      expected = 0.75 * plain[row] + 0.25 * q.sum(0)
      assert not np.allclose(augmented[row], plain[row], atol=1e-4)
    np.testing.assert_allclose(augmented[row], expected, rtol=1e-4, atol=1e-5)
  (work / "generated.jsonl").unlink()
  with pytest.raises(FileNotFoundError, match="generated.jsonl: run the generate stage"):
    stages.index_stage("sv_xqg", bindings, work)


XQG_SWEEP = """
sweep_spec.name = 'smoke_xqg'
sweep_spec.stages = ['train', 'train_xqg', 'generate', 'index', 'search', 'evaluate']
sweep_spec.stage_targets = {
  'train': 'xtr_jax.experiments.stages:train_stage',
  'train_xqg': 'xtr_jax.experiments.stages:train_xqg_stage',
  'generate': 'xtr_jax.experiments.stages:generate_stage',
  'index': 'xtr_jax.experiments.stages:index_stage',
  'search': 'xtr_jax.experiments.stages:search_stage',
}
sweep_spec.base_bindings = [
  "include 'RUN_GIN'",
  "TRAIN_STEPS = 3",
  "SWIM_IR_LANGUAGES = ['ar', 'fi']",
  "stages.TrainPlan.shared_model = 'xtr'",
  "xqg/stages.TrainPlan.shared_model = 'xqg'",
  "xqg/stages.TrainPlan.name = 'xqg'",
  "xqg/trainer.train.model_kind = 'xqg'",
  "xqg/inputs.pairs_batches.converter = 'seq2seq'",
  "stages.GeneratePlan.corpus = %CORPUS",
  "stages.GeneratePlan.languages = ['ar', 'fi']",
  "stages.GeneratePlan.max_decode_length = 6",
  "stages.GeneratePlan.max_input_length = 32",
  "stages.IndexPlan.augment = True",
]
sweep_spec.configurations = {
  'w0.5_q1': {'bindings': ['stages.IndexPlan.augment_weight = 0.5'], 'labels': {'weight': 0.5}},
  'w1.0_q2': {'bindings': ['stages.IndexPlan.augment_weight = 1.0', 'stages.GeneratePlan.num_questions = 2',
                          'stages.IndexPlan.augment_max_df = 0.9'],
              'labels': {'weight': 1.0}},
}
"""


@pytest.mark.slow
def test_xqg_sweep_shares_models_and_augments(tmp_path):
  data = write_data(tmp_path)
  out = tmp_path / "out"
  assert (
    sweep.main(["--gin_file", str(write_sweep(tmp_path, data, XQG_SWEEP)), "--output", str(out)])
    == 0
  )
  records = [json.loads(x) for x in (out / "results.jsonl").open()]
  assert [r["status"] for r in records] == ["ok", "ok"]
  # Both models are trained once, in the sweep's models/ folder, and reused by the second.
  assert records[1]["outputs"]["train"]["phase1"]["reused"] == 1
  assert records[1]["outputs"]["train_xqg"]["phase1"]["reused"] == 1
  meta = json.loads(
    (out / "models" / "xqg" / "phase1" / "final" / "xtr_jax_checkpoint.json").read_text()
  )
  assert meta["model_kind"] == "mt5"
  generated = [json.loads(x) for x in open(out / "w1.0_q2" / "generated.jsonl")]
  corpus_ids = {x.split("\t")[0] for x in open(data["corpus"]).read().splitlines()[1:]}
  assert {g["docid"] for g in generated} == corpus_ids
  assert all(len(g["generated_queries"]["fi"]) == 2 for g in generated)
  for r in records:
    assert r["outputs"]["index"]["num_extra_tokens"] > 0


def test_select_pairs_filters_and_is_stable():
  recs = [
    {"_id": f"{c}{i}", "code": c, "query": f"q {c} {i}", "text": f"t {i}", "source": s}
    for c, s in (("aa", "x"), ("bb", "y"))
    for i in range(10)
  ]
  held = stages.HeldOut(frozenset({"q aa 3"}), frozenset({"t 4"}))
  kept, stats = stages.select_pairs(recs, sources=["x"], per_language=5, heldout=held, seed=1)
  assert stats["candidates"] == 10
  assert stats["dropped_question_overlap"] == 1 and stats["dropped_passage_overlap"] == 1
  assert len(kept) == 5 and {r["code"] for r in kept} == {"aa"}
  assert {r["_id"] for r in kept}.isdisjoint({"aa3", "aa4"})
  again, _ = stages.select_pairs(
    list(reversed(recs)), sources=["x"], per_language=5, heldout=held, seed=1
  )
  assert [r["_id"] for r in again] == [r["_id"] for r in kept]
  with pytest.raises(ValueError, match="language 'aa': 8 pairs, fewer than 9 asked"):
    stages.select_pairs(recs, sources=["x"], per_language=9, heldout=held)
  with pytest.raises(FileNotFoundError, match=r"pair file\(s\) not found for languages \['zz'\]"):
    stages.read_pair_records("/nonexistent", ["zz"])


def test_isolated_gin_restores_the_callers_config():
  gin.parse_config("sweep.evaluate_stage.queries = 'q.jsonl'")
  gin.finalize()
  with stages.isolated_gin(["stages.SearchPlan.k = 7"]):
    assert stages.SearchPlan().k == 7
    with pytest.raises(ValueError):
      gin.query_parameter("sweep.evaluate_stage.queries")
  assert gin.query_parameter("sweep.evaluate_stage.queries") == "q.jsonl"
  assert gin.config_is_locked()
  assert stages.SearchPlan().k == 100


SHIPPED = sorted((gin_utils.GIN_DIR / "sweeps").glob("*.gin"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_sweeps_bindings_parse_into_plans(path):
  """Every configuration's bindings (with the pinned run gin) parse and build the plans."""
  gin_utils.parse_gin([str(path)], [])
  spec = sweep.sweep_spec()
  for config in spec.configurations:
    if "train" not in (config.stages or spec.stages):
      continue
    with stages.isolated_gin([*spec.base_bindings, *config.bindings]):
      plan = stages.TrainPlan()
      # No phase-1 languages (N = 0) means the base checkpoint is the model.
      assert plan.languages or plan.base_checkpoint
      assert stages.IndexPlan().corpus and stages.SearchPlan().queries
  assert gin.query_parameter("sweep_spec.name") == spec.name  # the sweep config is back


def test_vocabulary_texts_reads_pairs_corpus_and_lines(tmp_path):
  (tmp_path / "a.jsonl").write_text(
    json.dumps({"query": "q1", "title": "T", "text": "x", "source": "keep"}) + "\n"
    + json.dumps({"query": "q2", "title": "", "text": "y", "source": "drop"}) + "\n"
  )  # fmt: skip
  (tmp_path / "c.tsv").write_text("id\ttext\ttitle\np1\tbody one\tTitle One\n")
  (tmp_path / "s.txt").write_text("a sentence\n\n")
  texts = stages.vocabulary_texts(
    [str(tmp_path / "*.jsonl"), str(tmp_path / "c.tsv"), str(tmp_path / "s.txt")], ["keep"]
  )
  assert texts == ["T x", "Title One body one", "a sentence", "q1"]
  with pytest.raises(FileNotFoundError, match="matches no file"):
    stages.vocabulary_texts([str(tmp_path / "none*.jsonl")])
