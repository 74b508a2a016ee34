"""``xtr-jax sweep --report``: tables, intervals and paired tests rendered from recorded
results alone, checked against numbers computed here by hand (numpy, scipy)."""

import json
import pathlib
import shutil

import numpy as np
import pytest
from scipy import stats

from xtr_jax.evaluation import significance
from xtr_jax.experiments import sweep, sweep_report

LANGS = {"q1": "ar", "q2": "ar", "q3": "ar", "q4": "ja", "q5": "ja"}
# Recall@20 per query for three points of one series and a baseline.
SCORES = {
  "n0": {"q1": 1.0, "q2": 0.0, "q3": 0.0, "q4": 1.0, "q5": 0.0},
  "n1": {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 1.0, "q5": 0.0},
  "n2": {"q1": 1.0, "q2": 1.0, "q3": 1.0, "q4": 1.0, "q5": 1.0},
  "bm25": {"q1": 0.0, "q2": 0.0, "q3": 0.0, "q4": 1.0, "q5": 0.0},
}


def _write_sweep(root: pathlib.Path) -> pathlib.Path:
  out = root / "sweep"
  out.mkdir()
  queries = root / "dev.jsonl"
  queries.write_text(
    "".join(json.dumps({"id": q, "lang": g, "question": f"question {q}"}) + "\n" for q, g in LANGS.items()),
    "utf-8",
  )  # fmt: skip
  lines = []
  for name, per_query in SCORES.items():
    labels = {"system": "BM25"} if name == "bm25" else {"n": int(name[1]), "k": 0}
    lines.append({"config": name, "labels": labels, "status": "ok", "seconds": 60, "commit": "abc"})
    (out / name).mkdir()
    block = {"per_query": per_query, "macro": 0.0, "per_lang": {}}
    (out / name / "eval.json").write_text(json.dumps({"metrics": {"Recall@20": block}}), "utf-8")
  lines.append({"config": "n3", "labels": {"n": 3, "k": 0}, "status": "failed", "traceback": "x"})
  (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), "utf-8")
  return out


def test_macro_bootstrap_of_one_group_is_the_paired_bootstrap():
  d = np.random.default_rng(1).random(40)
  one = significance.macro_bootstrap_ci([d], num_samples=2000, seed=3)
  assert one == significance.paired_bootstrap_ci(d, np.zeros_like(d), num_samples=2000, seed=3)
  constant = significance.macro_bootstrap_ci([np.full(5, 0.2), np.full(3, 0.6)])
  assert constant == pytest.approx((0.4, 0.4))
  with pytest.raises(ValueError, match="none of them empty"):
    significance.macro_bootstrap_ci([np.zeros(0)])


def test_point_and_paired_summaries_against_hand_computed_numbers():
  p = sweep_report.point_summary(SCORES["n1"], LANGS)
  assert p["macro"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
  assert p["per_lang"] == pytest.approx({"ar": 200 / 3, "ja": 50.0})
  assert p["ci"][0] <= p["macro"] <= p["ci"][1]
  d = sweep_report.paired_summary(SCORES["n2"], SCORES["n1"], LANGS)
  assert d["diff"] == pytest.approx(100 * ((1 - 2 / 3) + (1 - 1 / 2)) / 2)
  a = np.array([SCORES["n2"][q] for q in sorted(LANGS)])
  b = np.array([SCORES["n1"][q] for q in sorted(LANGS)])
  assert d["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_report_renders_from_the_copied_records_alone(tmp_path):
  out = _write_sweep(tmp_path)
  dest = tmp_path / "results" / "report"
  args = dict(name="smoke", x="n", metrics=["Recall@20"], series="k")
  sweep_report.report(out, dest, queries=str(tmp_path / "dev.jsonl"), **args)
  first = (dest / "report.md").read_text("utf-8")
  assert "| 0 | 1 | n1 | 58.3 [" in first  # (2/3 + 1/2) / 2
  assert "| 0 | n2 | n1 | +41.7 | [" in first
  assert "| (baseline) | | bm25 | 25.0 [" in first
  assert "Failed (rerun the sweep to retry): n3." in first
  assert "Paired tests asked for" not in first
  sweep_report.render(dest, pairs=[("n2", "bm25"), ("n3", "n0")], **args)
  paired = (dest / "report.md").read_text("utf-8")
  assert "| n2 | bm25 | +75.0 | [" in paired and "(not scored yet: n3)" in paired
  sweep_report.render(dest, **args)
  assert "| n2 | 100.0 | 100.0 | 100.0 |" in first
  assert (dest / "smoke.png").stat().st_size > 1000
  assert "traceback" not in (dest / "results.jsonl").read_text("utf-8")
  shutil.rmtree(out)  # the sweep folder is gone: the report renders from dest alone
  (dest / "report.md").unlink()
  sweep_report.report(None, dest, queries="unused", **args)
  assert (dest / "report.md").read_text("utf-8") == first


def test_report_errors_name_the_file(tmp_path):
  out = _write_sweep(tmp_path)
  with pytest.raises(ValueError, match=r"eval.json: no per-query scores for \['MRR@10'\]"):
    sweep_report.collect(out, tmp_path / "r", ["Recall@20", "MRR@10"], str(tmp_path / "dev.jsonl"))
  with pytest.raises(FileNotFoundError, match="no recorded results"):
    sweep_report.collect(tmp_path / "nowhere", tmp_path / "r", ["Recall@20"], "x")


def test_sweep_cli_report_needs_a_report_spec(tmp_path, capsys):
  gin_file = tmp_path / "s.gin"
  gin_file.write_text(
    "sweep_spec.name = 's'\nsweep_spec.configurations = {'a': {}}\n"
    "evaluate_stage.queries = 'q.jsonl'\n",
    "utf-8",
  )
  argv = [
    "--gin_file",
    str(gin_file),
    "--output",
    str(tmp_path / "o"),
    "--report",
    str(tmp_path / "r"),
  ]
  assert sweep.main(argv) == 2
  assert "sets no sweep_spec.report" in capsys.readouterr().err


def test_borrowed_point_joins_the_series_with_its_own_record(tmp_path):
  """A point of another sweep's report folder is tested against this sweep's points."""
  out = _write_sweep(tmp_path)
  queries = str(tmp_path / "dev.jsonl")
  args = dict(name="smoke", x="n", metrics=["Recall@20"], series="k")
  other = tmp_path / "results" / "other"
  sweep_report.report(out, other, queries=queries, **args)  # n0, n1, n2, bm25 rendered there
  # This sweep has n0 and n1 only; its n = 5 point is the other folder's n2.
  for name in ("n2", "bm25"):
    shutil.rmtree(out / name)
  dest = tmp_path / "results" / "this"
  borrowed = [{"name": "n5", "from": str(other), "config": "n2", "labels": {"n": 5, "k": 0}}]
  sweep_report.report(out, dest, queries=queries, borrowed=borrowed, **args)
  text = (dest / "report.md").read_text("utf-8")
  assert "| 0 | 5 | n5 | 100.0 [" in text
  assert "| 0 | n5 | n1 | +41.7 | [" in text  # the same paired test as n2 vs n1 there
  assert f"`n5` is `n2` of `{other}` (borrowed, not rerun)." in text
  record = sweep.read_results(dest / "results.jsonl")[-1]
  assert record["config"] == "n5" and record["commit"] == "abc"
  assert record["borrowed_from"] == {
    "folder": str(other),
    "config": "n2",
    "labels": {"n": 2, "k": 0},
  }
  # Rendered again from dest alone (the other folder gone): the same report.
  shutil.rmtree(other)
  (dest / "report.md").unlink()
  sweep_report.report(None, dest, queries="unused", **args)
  assert (dest / "report.md").read_text("utf-8") == text
  # A borrowed config that is not there, or not ok, names the folder and the config.
  bad = [{"name": "x", "from": str(dest), "config": "n3", "labels": {"n": 3}}]
  with pytest.raises(ValueError, match=r"borrow 'x': .*results.jsonl: no ok record of 'n3'"):
    sweep_report.report(out, tmp_path / "r2", queries=queries, borrowed=bad, **args)
  # Scores of another query set cannot be paired with this sweep's points.
  fewer = json.loads((dest / "scores" / "n5.json").read_text("utf-8"))
  fewer["lang"].pop("q5")
  (dest / "scores" / "n5.json").write_text(json.dumps(fewer), "utf-8")
  wrong = [{"name": "y", "from": str(dest), "config": "n5", "labels": {"n": 6}}]
  with pytest.raises(ValueError, match=r"n5.json: scores 4 queries, not the 5 of .*another query"):
    sweep_report.report(out, tmp_path / "r3", queries=queries, borrowed=wrong, **args)
  with pytest.raises(ValueError, match="each 'borrow' entry needs name, from, config, labels"):
    sweep._report_spec({"x": "n", "borrow": [{"name": "x"}]})


def test_a_fresh_sweep_folder_keeps_the_earlier_reports_points(tmp_path):
  # The report is committed, the sweep folder is not: a sweep extended on another machine
  # runs only its new point into a fresh folder, and the report keeps the points run before.
  out = _write_sweep(tmp_path)
  queries = str(tmp_path / "dev.jsonl")
  args = dict(name="smoke", x="n", metrics=["Recall@20"], series="k", queries=queries)
  dest = tmp_path / "report"
  expected = {n: [] for n in ("n0", "n1", "n2", "n3", "bm25")}
  sweep_report.report(out, dest, expected=expected, **args)
  first = (dest / "report.md").read_text("utf-8")
  shutil.rmtree(out)
  fresh = _write_sweep(tmp_path)  # n2 alone reruns in a new folder, with other scores
  for name in ("n0", "n1", "bm25"):
    shutil.rmtree(fresh / name)
  records = [json.loads(line) for line in (fresh / "results.jsonl").read_text("utf-8").splitlines()]
  (fresh / "results.jsonl").write_text(
    "".join(json.dumps({**r, "commit": "def"}) + "\n" for r in records if r["config"] == "n2"),
    "utf-8",
  )
  block = {"per_query": {**SCORES["n2"], "q5": 0.0}, "macro": 0.0, "per_lang": {}}
  (fresh / "n2" / "eval.json").write_text(json.dumps({"metrics": {"Recall@20": block}}), "utf-8")
  sweep_report.report(fresh, dest, expected=expected, **args)
  text = (dest / "report.md").read_text("utf-8")
  assert "4 configurations recorded ok" in text and "commit(s) `abc`, `def`." in text
  assert "Kept from this folder's earlier report (not in the sweep folder now): " in text
  assert "`n0`, `n1`, `bm25`" in text and "Failed" not in text  # n3 failed: not kept
  assert "| 0 | 1 | n1 | 58.3 [" in text and "| (baseline) | | bm25 | 25.0 [" in text
  assert "| 0 | 2 | n2 | 75.0 [" in text and "| 0 | 2 | n2 | 100.0 [" in first  # (1 + 1/2) / 2
  kept = {r["config"]: r for r in sweep.read_results(dest / "results.jsonl")}
  assert kept["n1"]["commit"] == "abc" and kept["n1"]["carried"] and "carried" not in kept["n2"]
  # Rendering again from the same two folders changes nothing.
  sweep_report.report(fresh, dest, expected=expected, **args)
  assert (dest / "report.md").read_text("utf-8") == text
  # A kept point whose bindings differ from what the spec gives it now is an error, and the
  # report folder is left as it was.
  with pytest.raises(
    ValueError, match=r"report/results.jsonl: recorded 'n0' ran with other bindings"
  ):
    sweep_report.report(fresh, dest, expected={**expected, "n0": ["N = 0"]}, **args)
  assert (dest / "report.md").read_text("utf-8") == text
  assert (dest / "scores" / "n0.json").is_file()
