"""The mE5 sweeps of the research question (gin/sweeps/*_me5_*.gin): every shipped file parses
(``xtr-jax sweep --dry_run``) and its configurations build the stage plans they promise (the
data-size points differ only in their pairs, the model families only in the model, the
monolingual point only in its extra pairs, the TPU sweep's languages are nested prefixes of one
order), their selections fit the real data, and the CPU sweeps' shapes run end to end at smoke
size: configurations read from the shipped file through gin, with the smoke run file of
tests/test_sweep_pretrained.py (a tiny pretrained BERT carrying its tokenizer) in place of the
pinned one, on a tiny fake pair layout (cross_lingual/ and monolingual/), then ``--report``."""

import dataclasses
import json
import pathlib
import re

import pytest

import gin
from xtr_jax import cli, gin_utils
from xtr_jax.data import languages
from xtr_jax.experiments import stages, sweep
from xtr_jax.training import trainer

REPO = gin_utils.GIN_DIR.parent
SWEEPS = gin_utils.GIN_DIR / "sweeps"
SWEEP1 = "languages_scaling_me5_cpu"
NEW_CPU = ("data_size_me5_cpu", "model_families_me5_cpu", "monolingual_me5_cpu")
TPU = "languages_scaling_me5_tpu"
ALL = (SWEEP1, *NEW_CPU, TPU)
PINNED_CPU = "include 'sweeps/runs/xtr_me5_cpu.gin'"
XQUAD = ["ar", "ru", "zh", "hi", "tr", "vi", "de", "es", "el", "ro", "th"]
XQUAD_SOURCE = "xquad_question_to_english_paragraph"
XOR_SOURCE = "xor_tydi_train_gold_paragraph"
MONO = ["ja", "ko", "ar", "sw", "en"]


# ----------------------------------------------------------------------------- parsing


def _spec(name: str) -> sweep.SweepSpec:
  gin_utils.parse_gin([str(SWEEPS / f"{name}.gin")], [])
  return sweep.sweep_spec()


def _macro(name: str):
  return gin.query_parameter(f"{name}/macro.value")


def _resolved(spec: sweep.SweepSpec) -> dict[str, dict]:
  """Per configuration with a train stage: its plans and model settings, as the stages see them."""
  out = {}
  for c in spec.configurations:
    if "train" not in (c.stages or spec.stages):
      continue
    with stages.isolated_gin([*spec.base_bindings, *c.bindings]):
      task = trainer.ModelTask(None)
      out[c.name] = {
        "train": stages.TrainPlan(),
        "index": stages.IndexPlan(),
        "search": stages.SearchPlan(),
        "model": (
          gin.query_parameter("MODEL_KIND/macro.value"),
          task.proj_dim,
          task.k_train,
          stages.IndexPlan().pooling,
        ),
        "train_steps": _macro("TRAIN_STEPS"),
        "batch_size": _macro("BATCH_SIZE"),
        "labels": c.labels,
        "bindings": c.bindings,
      }
  return out


def _phase1_key(r: dict) -> tuple:
  """Everything phase 1 depends on (the runner's shared-phase-1 check sees only the pairs)."""
  p = r["train"]
  return (
    p.pairs_dir,
    tuple(p.languages),
    tuple(p.sources),
    p.max_pairs_per_language,
    p.extra_pairs_dir if p.extra_languages else None,
    tuple(p.extra_languages),
    p.extra_per_language,
    p.base_checkpoint,
    p.seed,
    r["model"],
    r["train_steps"],
  )


@pytest.mark.parametrize("name", ALL)
def test_sweep_gin_dry_run_and_plans(name, tmp_path, capsys):
  """``xtr-jax sweep --dry_run`` lists every configuration; each one's bindings (with its pinned
  run file) build the plans, names its phase 1 consistently, and reports what it evaluates."""
  gin_file = f"sweeps/{name}.gin"
  assert cli.main(["sweep", "--gin_file", gin_file, "--output", str(tmp_path), "--dry_run"]) == 0
  printed = capsys.readouterr().out
  spec = _spec(name)
  assert [line.split()[0] for line in printed.splitlines() if not line.startswith(" ")] == [
    c.name for c in spec.configurations
  ]
  assert spec.name == name and spec.report is not None
  evaluated = gin.query_parameter("evaluate_stage.metrics").split(",")
  assert set(spec.report.metrics) <= set(evaluated)
  resolved = _resolved(spec)
  assert resolved
  names: dict[str, tuple] = {}
  keys: dict[tuple, str] = {}
  for config, r in resolved.items():
    plan = r["train"]
    assert plan.languages or plan.base_checkpoint, config
    assert r["index"].corpus and r["search"].queries, config
    assert plan.heldout_queries == r["search"].queries  # the evaluated questions are held out
    if plan.adapt_steps:  # phase 2 must fill at least one batch (inputs.pairs_batches)
      assert plan.adapt_per_language * len(plan.adapt_languages) >= r["batch_size"], config
    if not plan.languages:
      continue
    # A named phase 1 is shared only by configurations that would train the same model, and
    # two configurations that would train the same phase 1 share its name (trained once).
    assert plan.phase1_name, f"{config}: phase 1 without a PHASE1 name"
    key = _phase1_key(r)
    assert names.setdefault(plan.phase1_name, key) == key, f"{config}: PHASE1 reused"
    assert keys.setdefault(key, plan.phase1_name) == plan.phase1_name, f"{config}: trains twice"
  # The report's x axis: every configuration either has it or is meant as a baseline.
  for c in spec.configurations:
    if spec.report.x not in c.labels:
      assert c.name in ("bm25", "colbert", "single_vector", "xor_train_all"), c.name
  assert gin.query_parameter("sweep_spec.name") == name  # the sweep's own config is back


def test_sweep1_in_domain_reference_changes_only_phase_1_data():
  """``xor_train_all``: phase 1 on every XOR-TyDi train pair of fi/ja/ru instead of XQuAD,
  the same budget, model and evaluation as the curve's points, and no phase 2."""
  resolved = _resolved(_spec(SWEEP1))
  ref, point = resolved["xor_train_all"], resolved["n4_k0"]
  plan = ref["train"]
  assert plan.languages == ["fi", "ja", "ru"] and plan.sources == [XOR_SOURCE]
  assert plan.max_pairs_per_language is None and plan.adapt_steps == 0
  assert plan.phase1_name == "xor_train_all"
  assert plan.heldout_queries == point["train"].heldout_queries
  assert plan.heldout_qrels == point["train"].heldout_qrels
  assert (ref["train_steps"], ref["batch_size"], ref["model"]) == (
    point["train_steps"], point["batch_size"], point["model"]
  )  # fmt: skip
  assert ref["index"] == point["index"] and ref["search"] == point["search"]


def test_data_size_sweep_varies_only_the_pairs():
  base = _resolved(_spec(SWEEP1))["n4_k32"]
  resolved = _resolved(_spec("data_size_me5_cpu"))
  assert sorted(resolved) == ["n1_p1000", "n4_p1000", "n4_p250", "n4_p500"]
  caps = {}
  for r in resolved.values():
    plan, labels = r["train"], r["labels"]
    n = len(plan.languages)
    assert plan.languages == base["train"].languages[:n]  # sweep 1's order: ar, ru, zh, hi
    assert labels["num_train_languages"] == n
    assert labels["pairs_per_language"] == plan.max_pairs_per_language
    assert labels["total_pairs"] == n * plan.max_pairs_per_language
    caps.setdefault(n, set()).add(plan.max_pairs_per_language)
    # The same budget, phase 2, model and evaluation as sweep 1's k = 32 points.
    assert r["train_steps"] == base["train_steps"] == 120
    assert r["model"] == base["model"] == ("xtr", 0, 256, "token")
    assert r["index"] == base["index"] and r["search"] == base["search"]
    same = ("sources", "adapt_languages", "adapt_sources", "adapt_per_language", "adapt_steps")
    for field in same:
      assert getattr(plan, field) == getattr(base["train"], field), field
    assert (plan.adapt_per_language, plan.adapt_steps) == (32, 12)
  assert caps == {4: {250, 500, 1000}, 1: {1000}}
  totals = {c: r["labels"]["total_pairs"] for c, r in resolved.items()}
  assert totals["n1_p1000"] == totals["n4_p250"] == 1000  # coverage vs data at equal pairs
  # The borrowed "all pairs" points are sweep 1's, with as many languages, recorded there.
  sweep1 = _resolved(_spec(SWEEP1))
  for b in _spec("data_size_me5_cpu").report.borrow:
    record = sweep.latest_by_config(sweep.read_results(REPO / b["from"] / "results.jsonl"))
    assert record[b["config"]]["status"] == "ok"
    assert (REPO / b["from"] / "scores" / f"{b['config']}.json").is_file()
    n = b["labels"]["num_train_languages"]
    assert len(sweep1[b["config"]]["train"].languages) == n
    pairs = record[b["config"]]["outputs"]["train"]["data"]["pairs"]
    assert pairs == b["labels"]["total_pairs"] == n * b["labels"]["pairs_per_language"]


def test_model_families_differ_only_in_the_model():
  n11 = _resolved(_spec(SWEEP1))["n11_k32"]
  spec = _spec("model_families_me5_cpu")
  resolved = _resolved(spec)
  expected = {
    "xtr_k32": ("xtr", 0, 32, "token"),
    "xtr_k256": ("xtr", 0, 256, "token"),
    "xtr_k1024": ("xtr", 0, 1024, "token"),
    "colbert": ("colbert", 0, 256, "token"),  # K_TRAIN is unused by ColBERT
    "single_vector": ("single_vector", 0, 256, "mean"),
  }
  assert {c: r["model"] for c, r in resolved.items()} == expected
  model_macros = {"MODEL_KIND", "PROJ_DIM", "POOLING", "K_TRAIN", "PHASE1"}
  for config, r in resolved.items():
    # sweep 1's n11_k32 in everything but the phase-1 name, the model and ColBERT's search.
    assert r["train"] == dataclasses.replace(n11["train"], phase1_name=config), config
    assert r["index"].corpus == n11["index"].corpus and r["train_steps"] == n11["train_steps"]
    assert r["search"].exact == (config == "colbert")
    for b in r["bindings"]:
      lhs = b.split("=")[0].strip()
      assert lhs in model_macros or lhs == "stages.SearchPlan.exact", (config, b)
    kind = r["model"][0]
    assert r["labels"]["model"] == {"xtr": "XTR", "colbert": "ColBERT"}.get(kind, "single-vector")
    assert r["labels"].get("k_train") == (r["model"][2] if kind == "xtr" else None)
  assert resolved["xtr_k256"]["model"] == n11["model"]  # "XTR 384-d" is sweep 1's model


def test_monolingual_point_adds_only_the_monolingual_pairs():
  n11 = _resolved(_spec(SWEEP1))["n11_k32"]
  spec = _spec("monolingual_me5_cpu")
  mono = _resolved(spec)["n11_mono_k32"]
  assert mono["model"] == n11["model"]
  assert mono["train"] == dataclasses.replace(
    n11["train"], extra_languages=MONO, extra_per_language=1190, phase1_name="n11_mono"
  )
  assert mono["train"].extra_pairs_dir.endswith("pairs_swim_ir_layout/monolingual")
  assert mono["labels"]["monolingual_pairs_per_language"] == 1190
  # The reference (no monolingual pairs) is sweep 1's n11_k32, borrowed with its record: the
  # same bindings as this sweep's base plus sweep 1's n11_k32 ones, so only the pairs differ.
  (ref,) = spec.report.borrow
  assert ref["labels"]["monolingual_pairs_per_language"] == 0
  assert {k: v for k, v in ref["labels"].items() if k != "monolingual_pairs_per_language"} == {
    k: v for k, v in mono["labels"].items() if k != "monolingual_pairs_per_language"
  }
  record = sweep.latest_by_config(sweep.read_results(REPO / ref["from"] / "results.jsonl"))
  assert record[ref["config"]]["status"] == "ok"
  assert (REPO / ref["from"] / "scores" / f"{ref['config']}.json").is_file()
  assert set(record[ref["config"]]["bindings"]) == set(spec.base_bindings) | {"PHASE1 = 'n11'"}


def test_tpu_sweep_scales_over_one_swim_ir_order():
  sweep1 = _resolved(_spec(SWEEP1))
  spec = _spec(TPU)
  resolved = _resolved(spec)
  order = resolved["n32_k64"]["train"].languages
  assert sorted(order) == sorted(languages.SWIM_IR_CROSS_LINGUAL) and len(order) == 32
  assert order[:4] == sweep1["n4_k32"]["train"].languages  # sweep 1's first four
  assert set(order[:16]) >= set(languages.XOR_LANGUAGES)
  points = set()
  for r in resolved.values():
    plan, labels = r["train"], r["labels"]
    n, k = labels["num_train_languages"], labels["few_shot_k"]
    points.add((n, k))
    assert plan.languages == order[:n] and plan.phase1_name == f"n{n}"
    assert plan.sources == [] and plan.max_pairs_per_language is None
    assert plan.adapt_per_language == k and bool(plan.adapt_steps) == (k > 0)
    assert plan.adapt_languages == list(languages.XOR_LANGUAGES)
    assert plan.pairs_dir == "/mnt/data/swim_ir_pairs/cross_lingual"
    assert plan.heldout_qrels is None and plan.heldout_corpus is None
    assert r["train_steps"] == 20000 and r["batch_size"] == 256
    assert r["model"] == ("xtr", 128, 256, "token")
    assert r["search"].queries.endswith("xor_dev_retrieve_eng_span_v1_1.jsonl")
  assert points == {(n, k) for n in (1, 2, 4, 8, 16, 32) for k in (0, 64)}
  with stages.isolated_gin(list(spec.base_bindings)):
    from xtr_jax.index import cli as index_cli  # noqa: PLC0415

    assert gin.query_parameter("bert.bert_config.size") == "me5-base"
    assert index_cli.index_settings()["backend"] == "scann"
    assert gin.query_parameter("trainer.train.mesh_shape") == (-1, 1)


# ----------------------------------------------------------------------------- real data


def test_cpu_sweeps_selections_fit_the_shared_data(shared_data, monkeypatch):
  """Every phase-1, monolingual and few-shot selection of the CPU sweeps finds its pairs in
  ../shared/data after the held-out filter (select_pairs raises when a language has too few)."""
  monkeypatch.chdir(REPO)  # the pinned run file's paths are relative to the repository
  del shared_data
  heldout, records = None, {}

  def read(directory, codes):
    key = (directory, tuple(codes))
    if key not in records:
      records[key] = stages.read_pair_records(directory, list(codes))
    return records[key]

  for name in (SWEEP1, *NEW_CPU):
    for config, r in _resolved(_spec(name)).items():
      p = r["train"]
      if heldout is None:
        heldout = stages.HeldOut.load(p.heldout_queries, p.heldout_qrels, p.heldout_corpus)
      if p.languages:
        _, stats = stages.select_pairs(
          read(p.pairs_dir, p.languages),
          sources=p.sources,
          per_language=p.max_pairs_per_language,
          heldout=heldout,
        )
        assert sorted(stats["per_language"]) == sorted(p.languages), (name, config)
        if p.max_pairs_per_language:
          assert stats["pairs"] == len(p.languages) * p.max_pairs_per_language
      if p.extra_languages:
        _, stats = stages.select_pairs(
          read(p.extra_pairs_dir, p.extra_languages),
          per_language=p.extra_per_language,
          heldout=heldout,
        )
        assert stats["pairs"] == len(p.extra_languages) * p.extra_per_language
      if p.adapt_steps:
        _, stats = stages.select_pairs(
          read(p.adapt_pairs_dir or p.pairs_dir, p.adapt_languages),
          sources=p.adapt_sources,
          per_language=p.adapt_per_language,
          heldout=heldout,
        )
        assert stats["pairs"] == len(p.adapt_languages) * p.adapt_per_language


# ----------------------------------------------------------------------------- smoke runs

# The shipped sizes, divided so that the tiny layout (45 pairs a language) holds them; the
# ratios (and N = 1 x 1000 = N = 4 x 250) are kept.
SMOKE_SIZES = {
  "TRAIN_STEPS": lambda n: 2,
  "ADAPT_STEPS": lambda n: min(n, 1),
  "FEW_SHOT_PER_LANGUAGE": lambda n: n // 8,
  "MAX_PAIRS_PER_LANGUAGE": lambda n: n // 50,
  "MONO_PER_LANGUAGE": lambda n: n // 119,
}


def _write_layout(root: pathlib.Path, data: dict) -> dict:
  """cross_lingual/{code}.jsonl for the 11 XQuAD codes (source XQuAD) and fi ja ru (source
  XOR-TyDi train; ru has both), monolingual/{ja,ko,ar,sw,en}.jsonl, from the synthetic
  sample's pairs (ar keeps write_data's leaked dev question)."""
  sample = root / "sample" / "swim_ir" / "cross_lingual"
  pools = {p.stem: p for p in sorted(sample.glob("*.jsonl"))}
  pools.update({p.stem: p for p in sorted(pathlib.Path(data["pairs"]).glob("*.jsonl"))})
  codes = sorted(pools)  # ar bn fi ja ko ru te

  def rows(pool: str, code: str, source: str) -> str:
    out = []
    for line in pools[pool].read_text("utf-8").splitlines():
      r = json.loads(line)
      r.update(_id=f"{code}-{source}-{r['_id']}", code=code, source=source)
      out.append(json.dumps(r, ensure_ascii=False) + "\n")
    return "".join(out)

  cross, mono = root / "layout" / "cross_lingual", root / "layout" / "monolingual"
  cross.mkdir(parents=True)
  mono.mkdir()
  files: dict[str, str] = {}
  for i, code in enumerate(XQUAD):
    files[code] = rows("ar" if code == "ar" else codes[i % len(codes)], code, XQUAD_SOURCE)
  for code in ("fi", "ja", "ru"):
    files[code] = files.get(code, "") + rows(code, code, XOR_SOURCE)
  for code, text in files.items():
    (cross / f"{code}.jsonl").write_text(text, "utf-8")
  for i, code in enumerate(MONO):
    text = rows(codes[i], code, "tydiqa_goldp_train_gold_paragraph")
    (mono / f"{code}.jsonl").write_text(text, "utf-8")
  return {**data, "pairs": str(cross), "mono": str(mono)}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  """The fake layout, the tiny pretrained checkpoint and the smoke run file (once a module)."""
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  pytest.importorskip("tokenizers")
  from test_sweep_pretrained import RUN, _pretrained  # noqa: PLC0415
  from test_sweep_stages import write_data  # noqa: PLC0415

  root = tmp_path_factory.mktemp("me5_sweeps")
  data = _write_layout(root, write_data(root))
  init = _pretrained(data, root)
  run = root / "run.gin"
  text = RUN.format(init=init, **data) + f"stages.TrainPlan.extra_pairs_dir = '{data['mono']}'\n"
  assert PINNED_CPU in text  # the smoke run file is the pinned one with tiny sizes
  run.write_text(text, "utf-8")
  return {**data, "root": root, "run": str(run), "init": init}


def _smoke_binding(binding: str, run: str) -> str:
  if binding == PINNED_CPU:
    return f"include '{run}'"
  m = re.fullmatch(r"(\w+) = (\d+)", binding)
  if m and m[1] in SMOKE_SIZES:
    return f"{m[1]} = {SMOKE_SIZES[m[1]](int(m[2]))}"
  return binding


def _smoke_sweep(name: str, smoke: dict, extra: dict | None = None) -> pathlib.Path:
  """The shipped sweep ``name`` as gin read it (configurations, labels, stages, report), with
  the smoke run file, the smoke sizes and the fake data's evaluation files; ``extra``
  configurations are added (a borrowed point trained here, as the smoke has no records)."""
  gin_utils.parse_gin([str(SWEEPS / f"{name}.gin")], [])
  q = gin.query_parameter
  base = q("sweep_spec.base_bindings")
  assert base[0] == PINNED_CPU
  configurations = {
    cname: {**c, "bindings": [_smoke_binding(b, smoke["run"]) for b in c.get("bindings", [])]}
    for cname, c in {**q("sweep_spec.configurations"), **(extra or {})}.items()
  }
  lines = [
    f"sweep_spec.name = {name!r}",
    f"sweep_spec.stages = {list(q('sweep_spec.stages'))!r}",
    f"sweep_spec.stage_targets = {dict(q('sweep_spec.stage_targets'))!r}",
    f"sweep_spec.base_bindings = {[_smoke_binding(b, smoke['run']) for b in base]!r}",
    f"sweep_spec.configurations = {configurations!r}",
    # Without its borrowed points: those are real-data records (tests/test_sweep_report.py
    # tests borrowing; the data-size test below checks that the gin's exist).
    f"sweep_spec.report = { {k: v for k, v in q('sweep_spec.report').items() if k != 'borrow'}!r}",
    f"evaluate_stage.queries = {smoke['dev']!r}",
    f"evaluate_stage.qrels = {smoke['qrels']!r}",
    f"evaluate_stage.corpus = {smoke['corpus']!r}",
    f"evaluate_stage.metrics = {q('evaluate_stage.metrics')!r}",
    "evaluate_stage.extra_flags = ['--tokenizer', 'punkt_untrained']",
    f"bm25_stage.queries = {smoke['dev']!r}",
    f"bm25_stage.corpus = {smoke['corpus']!r}",
  ]
  try:
    lines.append(f"sweep_spec.plot = {dict(q('sweep_spec.plot'))!r}")
  except ValueError:
    pass  # the sweep has no runner plot
  path = smoke["root"] / f"{name}.gin"
  path.write_text("\n".join(lines) + "\n", "utf-8")
  gin.clear_config()
  return path


def _run_smoke(
  name: str, smoke: dict, only: list[str], tmp_path, extra: dict | None = None
) -> tuple[list, dict, str]:
  gin_file = _smoke_sweep(name, smoke, extra)
  out = tmp_path / "out"
  argv = ["--gin_file", str(gin_file), "--output", str(out), "--only", ",".join(only)]
  assert sweep.main(argv) == 0
  records = {json.loads(x)["config"]: json.loads(x) for x in (out / "results.jsonl").open()}
  assert sorted(records) == sorted(only)
  assert all(r["status"] == "ok" for r in records.values())
  report = tmp_path / "report"
  assert sweep.main([*argv, "--report", str(report)]) == 0
  assert (report / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
  text = (report / "report.md").read_text("utf-8")
  for metric in ("Recall@20", "R@2kt", "MRR@10"):
    assert f"## {metric}" in text
  return argv, records, text


@pytest.mark.slow
def test_data_size_sweep_smoke(smoke, tmp_path):
  only = ["n4_p250", "n4_p500", "n1_p1000", "bm25"]
  _, records, text = _run_smoke("data_size_me5_cpu", smoke, only, tmp_path)
  data = {c: records[c]["outputs"]["train"]["data"] for c in only if c != "bm25"}
  assert data["n1_p1000"]["pairs"] == data["n4_p250"]["pairs"] == 20  # 1000 / 50, 4 x 250 / 50
  assert data["n4_p500"]["pairs"] == 40
  assert all(d["dropped_question_overlap"] == 1 for d in data.values())  # the leaked ar question
  for c in ("n4_p250", "n4_p500", "n1_p1000"):
    assert records[c]["outputs"]["train"]["adapt_data"]["pairs"] == 3 * 4  # fi ja ru x 32 / 8
    assert (tmp_path / "out" / "phase1" / c / "phase1" / "final").is_dir()
  assert "| 4 | n4_p500 | n4_p250 |" in text  # paired test between adjacent pairs_per_language
  assert "| 1 | 1000 | n1_p1000 |" in text and "| (baseline) | | bm25 |" in text


@pytest.mark.slow
def test_model_families_sweep_smoke(smoke, tmp_path):
  only = ["colbert", "single_vector", "xtr_k32"]
  _, records, text = _run_smoke("model_families_me5_cpu", smoke, only, tmp_path)
  out = tmp_path / "out"
  kinds = {}
  for c in only:
    model = stages._load_retrieval(stages.model_checkpoint(out / c, "xtr"))
    kinds[c] = (model.extra["retrieval_kind"], model.extra["pooling"], model.proj_dim)
  assert kinds == {
    "colbert": ("colbert", "token", 0),
    "single_vector": ("single_vector", "mean", 0),
    "xtr_k32": ("xtr", "token", 0),
  }
  assert records["single_vector"]["outputs"]["index"]["dense"] == 1
  assert records["colbert"]["outputs"]["index"]["num_tokens"] > 0
  assert "| XTR | 32 | xtr_k32 |" in text
  assert "| (baseline) | | colbert |" in text and "| (baseline) | | single_vector |" in text


@pytest.mark.slow
def test_monolingual_sweep_smoke_resumes(smoke, tmp_path, monkeypatch):
  """Both points, a crash in the reference's search, and a rerun that trains nothing again."""
  real_search, real_train = stages.search_stage, stages.trainer.train
  calls: list[str] = []
  monkeypatch.setattr(stages.trainer, "train", lambda d, **k: calls.append(d) or real_train(d, **k))

  def crashing(config_name, bindings, workdir):
    if config_name == "n11_k32":
      raise RuntimeError("simulated crash in search")
    return real_search(config_name, bindings, workdir)

  monkeypatch.setattr(stages, "search_stage", crashing)
  # The reference is borrowed from sweep 1's records on real data; the smoke trains it here.
  ref_labels = {"num_train_languages": 11, "monolingual_pairs_per_language": 0, "few_shot_k": 32}
  extra = {"n11_k32": {"bindings": ["MONO_LANGUAGES = []", "PHASE1 = 'n11'"], "labels": ref_labels}}
  gin_file = _smoke_sweep("monolingual_me5_cpu", smoke, extra)
  out = tmp_path / "out"
  only = ["n11_mono_k32", "n11_k32"]
  argv = ["--gin_file", str(gin_file), "--output", str(out), "--only", ",".join(only)]
  assert sweep.main(argv) == 1  # one configuration failed
  assert len(calls) == 4  # two phase 1s (n11_mono, n11) and two adaptations
  monkeypatch.setattr(stages, "search_stage", real_search)
  calls.clear()
  _, records, text = _run_smoke("monolingual_me5_cpu", smoke, only, tmp_path, extra)
  assert calls == []  # the crashed configuration's models were trained before the crash
  mono, ref = (records[c]["outputs"]["train"] for c in only)
  assert mono["data"]["extra_pairs"] == 5 * 10  # ja ko ar sw en x 1190 / 119
  assert "extra_pairs" not in ref["data"]
  assert mono["data"]["pairs"] == ref["data"]["pairs"]  # the same cross-lingual pairs
  assert ref["phase1"]["reused"] == 1
  assert "| 32 | n11_mono_k32 | n11_k32 |" in text  # the paired test: with vs without
