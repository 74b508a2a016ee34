"""Sweep runner with fake stages: order, resume after a crash, tables, plot, gin files."""

import csv
import json
import pathlib

import pytest

import gin
from xtr_jax import gin_utils
from xtr_jax.experiments import sweep

LANGS = ("ja", "fi")


class FakeStages:
  """train writes a file the next stage reads; evaluate returns per-language metrics."""

  def __init__(self, fail_on=()):
    self.calls, self.fail_on = [], set(fail_on)

  def train(self, config_name, bindings, workdir):
    self.calls.append(("train", config_name))
    if config_name in self.fail_on:
      raise RuntimeError(f"boom in {config_name}")
    n = int(next(b for b in bindings if b.startswith("N =")).split("=")[1])
    (workdir / "model.txt").write_text(str(n))
    return {"steps": 10 * n}

  def evaluate(self, config_name, bindings, workdir):
    self.calls.append(("evaluate", config_name))
    n = int((workdir / "model.txt").read_text())
    per_lang = {lang: 10.0 * n + i for i, lang in enumerate(LANGS)}
    return {
      "metrics": {
        "Recall@20": {
          "per_lang": per_lang,
          "macro": sum(per_lang.values()) / 2,
          "counts": {"ja": 3, "fi": 3},
          "per_query": {"q": 1.0},
        }  # fmt: skip
      }
    }


def make_spec(stages_obj, **kw):
  sweep.register_stage("fake_train", stages_obj.train)
  sweep.register_stage("fake_eval", stages_obj.evaluate)
  configs = {f"n{n}": {"bindings": [f"N = {n}"], "labels": {"n": n}} for n in (1, 2, 4)}
  return sweep.sweep_spec(
    name="toy", configurations=configs, stages=["fake_train", "fake_eval"],
    base_bindings=["BASE = 1"], plot={"x": "n", "metric": "Recall@20"}, **kw,
  )  # fmt: skip


def test_runs_resumes_and_reports(tmp_path):
  first = FakeStages(fail_on={"n2"})
  records = sweep.run_sweep(make_spec(first), tmp_path)
  assert [r["status"] for r in records] == ["ok", "failed", "ok"]
  assert "boom in n2" in records[1]["error"]
  assert first.calls == [("train", "n1"), ("evaluate", "n1"), ("train", "n2"),
                         ("train", "n4"), ("evaluate", "n4")]  # fmt: skip
  assert (tmp_path / "n1" / "bindings.gin").read_text() == "BASE = 1\nN = 1\n"

  # Rerun: only the crashed configuration runs again.
  second = FakeStages()
  records = sweep.run_sweep(make_spec(second), tmp_path)
  assert second.calls == [("train", "n2"), ("evaluate", "n2")]
  assert [r["status"] for r in records] == ["ok", "ok", "ok"]
  lines = (tmp_path / "results.jsonl").read_text().splitlines()
  assert [json.loads(x)["config"] for x in lines] == ["n1", "n2", "n4", "n2"]

  # A third run does nothing.
  third = FakeStages()
  sweep.run_sweep(make_spec(third), tmp_path)
  assert third.calls == []

  with open(tmp_path / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["config"] for r in rows] == ["n1", "n2", "n4"]
  assert float(rows[2]["fake_eval/Recall@20/ja"]) == 40.0
  assert float(rows[2]["fake_eval/Recall@20/macro"]) == 40.5
  assert float(rows[1]["fake_train/steps"]) == 20
  assert "fake_eval/Recall@20/per_query" not in rows[0]
  md = (tmp_path / "results.md").read_text()
  assert "| n4 | 4 | ok | 40.00 | 40.00 | 41.00 | 40.50 |" in md
  # Per-metric table: configurations x languages (sorted) + macro.
  assert "**Recall@20**\n\n| config | fi | ja | macro |" in md
  assert "| n2 | 21.00 | 20.00 | 20.50 |" in md
  png = (tmp_path / "toy.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_only_and_unknown_stage(tmp_path):
  stages = FakeStages()
  sweep.run_sweep(make_spec(stages), tmp_path, only=["n4"])
  assert stages.calls == [("train", "n4"), ("evaluate", "n4")]
  with pytest.raises(ValueError, match=r"unknown configuration\(s\) \['n9'\]"):
    sweep.run_sweep(make_spec(stages), tmp_path, only=["n9"])
  spec = sweep.sweep_spec(name="t", configurations={"a": {}}, stages=["no_such_stage"])
  with pytest.raises(ValueError, match="unknown stage 'no_such_stage'"):
    sweep.run_sweep(spec, tmp_path / "x")
  spec = sweep.sweep_spec(
    name="t", configurations={"a": {}}, stages=["s"], stage_targets={"s": "os.path:nope"}
  )
  with pytest.raises(ValueError, match="cannot load target 'os.path:nope'"):
    sweep.run_sweep(spec, tmp_path / "y")
  with pytest.raises(ValueError, match=r"unknown keys \['bindngs'\]"):
    sweep.sweep_spec(name="t", configurations={"a": {"bindngs": []}})


def test_per_configuration_stages(tmp_path):
  stages = FakeStages()
  make_spec(stages)
  spec = sweep.sweep_spec(
    name="t",
    configurations={"a": {"bindings": ["N = 3"]}, "b": {"bindings": ["N = 3"], "stages": ["fake_train"]}},
    stages=["fake_train", "fake_eval"],
  )  # fmt: skip
  sweep.run_sweep(spec, tmp_path)
  assert stages.calls == [("train", "a"), ("evaluate", "a"), ("train", "b")]


GIN_SWEEPS = sorted((pathlib.Path(gin_utils.GIN_DIR) / "sweeps").glob("*.gin"))


@pytest.mark.parametrize("path", GIN_SWEEPS, ids=lambda p: p.stem)
def test_shipped_sweep_gin_files_parse(path, capsys):
  gin.clear_config()
  try:
    assert sweep.main(["--gin_file", str(path), "--output", "unused", "--dry_run"]) == 0
  finally:
    gin.clear_config()
  out = capsys.readouterr().out
  assert "stages:" in out and "evaluate" in out


def test_shipped_sweeps_exist():
  assert {p.stem for p in GIN_SWEEPS} >= {"languages_scaling", "xqg_alpha", "xtr_vs_baselines"}


def test_stage_module_with_configurables_imports_under_a_locked_config(tmp_path, monkeypatch):
  """`xtr-jax sweep` locks gin before it imports the stage modules named in stage_targets."""
  (tmp_path / "my_gin_stage_mod.py").write_text(
    "import gin\n\n@gin.configurable\ndef plan(x=1):\n  return x\n\n"
    "def stage(config_name, bindings, workdir):\n  return {'x': plan()}\n"
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  gin.parse_config("")
  gin.finalize()
  fn = sweep.resolve_stage("s", {"s": "my_gin_stage_mod:stage"})
  assert fn("c", [], tmp_path) == {"x": 1}
