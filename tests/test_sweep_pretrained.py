"""The mE5-style sweeps at smoke size: a pretrained BERT checkpoint that carries its own
tokenizer (no vocabulary is trained), N = 0 as the backbone itself, a named phase 1 trained
once and shared by its few-shot variants, the pinned run file the real sweep uses
(gin/sweeps/runs/xtr_me5_cpu.gin), crash and resume, and ``--report``."""

import json
import pathlib
import re

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from test_sweep_stages import write_data  # noqa: E402

from xtr_jax import cli  # noqa: E402
from xtr_jax.experiments import stages, sweep  # noqa: E402

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R's order: pad id 1, as mE5
VOCAB_SIZE = 512  # bert_config('tiny')


def _words(data: dict) -> list[str]:
  """Every lower-cased word of the synthetic sample (pairs, corpus, queries)."""
  files = [*pathlib.Path(data["pairs"]).glob("*.jsonl"), data["corpus"], data["dev"]]
  text = " ".join(pathlib.Path(p).read_text("utf-8") for p in files).lower()
  return sorted(set(re.findall(r"\w+", text)))[: VOCAB_SIZE - len(SPECIALS)]


def _pretrained(data: dict, root: pathlib.Path) -> str:
  """A random tiny BertModel saved by transformers, with a WordLevel tokenizer.json, then
  ``xtr-jax convert --from hf_bert``: a checkpoint that carries its tokenizer, like mE5's."""
  from tokenizers import models, normalizers, pre_tokenizers, processors

  vocab = [*SPECIALS, *_words(data)]
  tok = tokenizers.Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, "<unk>"))
  tok.normalizer = normalizers.Lowercase()
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.post_processor = processors.TemplateProcessing(
    single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
  )
  tok.add_special_tokens(SPECIALS)
  torch.manual_seed(0)
  config = transformers.BertConfig(
    vocab_size=VOCAB_SIZE, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=128, max_position_embeddings=128, pad_token_id=1,
  )  # fmt: skip
  folder = root / "hf"
  transformers.BertModel(config).save_pretrained(str(folder), safe_serialization=True)
  tok.save(str(folder / "tokenizer.json"))
  out = str(root / "pretrained")
  assert cli.main(["convert", "--from", "hf_bert", "--input", str(folder), "--output", out]) == 0
  return out


RUN = """
include 'sweeps/runs/xtr_me5_cpu.gin'
INIT = '{init}'
PAIRS_DIR = '{pairs}'
CORPUS = '{corpus}'
QUERIES = '{dev}'
QRELS = '{qrels}'
bert.bert_config.size = 'tiny'
bert.bert_config.hidden_dropout_prob = 0.0
bert.bert_config.attention_probs_dropout_prob = 0.0
BATCH_SIZE = 8
QUERY_LENGTH = 16
PASSAGE_LENGTH = 32
K_TRAIN = 16
optimizers.learning_rate_schedule.warmup_steps = 1
optimizers.make_optimizer.freeze = ['bert/embeddings/']
trainer.train.eval_batches = None
trainer.train.log_every = 1
inputs.pairs_batches.heldout_fraction = 0.1
encode.EncodeParams.max_length = 64
encode.EncodeParams.batch_size = 16
retriever.SearchParams.token_top_k = 50
stages.SearchPlan.k = 20
"""

SWEEP = """
sweep_spec.name = 'smoke_pretrained'
sweep_spec.stage_targets = {{
  'train': 'xtr_jax.experiments.stages:train_stage',
  'index': 'xtr_jax.experiments.stages:index_stage',
  'search': 'xtr_jax.experiments.stages:search_stage',
}}
sweep_spec.base_bindings = [
  "include '{run}'",
  "SWIM_IR_SOURCES = ['src_a']",
  "TRAIN_STEPS = 3",
  "FEW_SHOT_LANGUAGES = ['fi', 'ja']",
  "FEW_SHOT_SOURCES = ['src_xor']",
]
sweep_spec.configurations = {{
  'n0_k0': {{'bindings': ["SWIM_IR_LANGUAGES = []"], 'labels': {{'n': 0, 'k': 0}}}},
  'n0_k4': {{'bindings': ["SWIM_IR_LANGUAGES = []", 'FEW_SHOT_PER_LANGUAGE = 4', 'ADAPT_STEPS = 2'],
            'labels': {{'n': 0, 'k': 4}}}},
  'n2_k0': {{'bindings': ["SWIM_IR_LANGUAGES = ['ar', 'ko']", "PHASE1 = 'n2'"],
            'labels': {{'n': 2, 'k': 0}}}},
  'n2_k4': {{'bindings': ["SWIM_IR_LANGUAGES = ['ar', 'ko']", "PHASE1 = 'n2'",
                        'FEW_SHOT_PER_LANGUAGE = 4', 'ADAPT_STEPS = 2'],
            'labels': {{'n': 2, 'k': 4}}}},
}}
sweep_spec.report = {{'x': 'n', 'series': 'k', 'metrics': ['Recall@20', 'MRR@10']}}
evaluate_stage.queries = '{dev}'
evaluate_stage.qrels = '{qrels}'
evaluate_stage.corpus = '{corpus}'
evaluate_stage.metrics = 'Recall@20,MRR@10'
"""


@pytest.mark.slow
def test_pretrained_sweep_shares_phase1_resumes_and_reports(tmp_path, monkeypatch):
  data = write_data(tmp_path)
  init = _pretrained(data, tmp_path)
  run = tmp_path / "run.gin"
  run.write_text(RUN.format(init=init, **data), "utf-8")
  gin_file = tmp_path / "sweep.gin"
  gin_file.write_text(SWEEP.format(run=run, **data), "utf-8")
  out = tmp_path / "out"
  argv = ["--gin_file", str(gin_file), "--output", str(out)]

  real_search, real_train = stages.search_stage, stages.trainer.train
  calls: list[str] = []
  monkeypatch.setattr(stages.trainer, "train", lambda d, **k: calls.append(d) or real_train(d, **k))

  def search_crashing_on_n2_k4(config_name, bindings, workdir):
    if config_name == "n2_k4":
      raise RuntimeError("simulated crash in search")
    return real_search(config_name, bindings, workdir)

  monkeypatch.setattr(stages, "search_stage", search_crashing_on_n2_k4)
  assert sweep.main(argv) == 1
  # Phase 1 of 'n2' trained once for both k; adaptations for n0_k4 and n2_k4; no vocabulary.
  assert sorted(pathlib.Path(c).relative_to(out).as_posix() for c in calls) == [
    "n0_k4/xtr/adapt",
    "n2_k4/xtr/adapt",
    "phase1/n2/phase1",
  ]
  assert not (out / "vocab").exists()
  records = {json.loads(x)["config"]: json.loads(x) for x in (out / "results.jsonl").open()}
  assert records["n2_k4"]["status"] == "failed"
  n0 = records["n0_k0"]
  assert n0["outputs"]["train"]["phase1"] == {"steps": 0, "base_checkpoint": init}
  assert json.loads((out / "n0_k0" / "models.json").read_text())["xtr"] == init
  assert n0["commit"] and n0["bindings"][0] == f"include '{run}'"
  # The adapted model starts from the backbone itself; n2_k0 is phase 1's final model.
  adapt_gin = re.sub(r"\\\n\s*", "", (out / "n0_k4/xtr/adapt/config.gin").read_text())
  assert f"init_checkpoint = '{init}'" in adapt_gin
  n2_model = json.loads((out / "n2_k0" / "models.json").read_text())["xtr"]
  assert n2_model == str((out / "phase1" / "n2" / "phase1" / "final").resolve())
  # The index holds token vectors although the backbone's own pooling is mean.
  manifest = json.loads((out / "n0_k0" / "index" / "manifest.json").read_text())
  assert manifest["pooling"] == "token" and manifest["proj_dim"] == 64

  calls.clear()
  monkeypatch.setattr(stages, "search_stage", real_search)
  assert sweep.main(argv) == 0
  assert calls == []  # everything the crashed configuration needed was trained before
  last = [json.loads(x) for x in (out / "results.jsonl").open()][-1]
  assert last["config"] == "n2_k4" and last["status"] == "ok"
  assert last["outputs"]["train"]["phase1"]["reused"] == 1

  # Another configuration may not reuse phase 1 'n2' with different pairs.
  other = [f"include '{run}'", "SWIM_IR_LANGUAGES = ['ar']", "PHASE1 = 'n2'", "TRAIN_STEPS = 3"]
  with pytest.raises(
    ValueError, match=r"phase1/n2/phase1: this phase 1 was trained with other pairs"
  ):
    stages.train_stage("x", other, out / "x")
  # ... nor with the same pairs but another model or budget.
  base = [f"include '{run}'", "SWIM_IR_SOURCES = ['src_a']", "SWIM_IR_LANGUAGES = ['ar', 'ko']"]
  for change in ("TRAIN_STEPS = 5", "K_TRAIN = 8", "MODEL_KIND = 'colbert'"):
    with pytest.raises(ValueError, match=r"trained with other training settings"):
      stages.train_stage("x", [*base, "PHASE1 = 'n2'", "TRAIN_STEPS = 3", change], out / "x")

  report = tmp_path / "report"
  assert sweep.main([*argv, "--report", str(report)]) == 0
  text = (report / "report.md").read_text("utf-8")
  assert "## Recall@20" in text and "## MRR@10" in text
  assert "| 4 | n2_k4 | n0_k4 |" in text  # the paired test between adjacent n at k = 4
  assert (report / "smoke_pretrained.png").read_bytes()[:4] == b"\x89PNG"
