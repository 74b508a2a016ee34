"""`xtr-jax evaluate` end to end on tiny files."""

import json

import pytest
from scipy import stats

from xtr_jax import cli
from xtr_jax.evaluation import cli as eval_cli


@pytest.fixture
def files(tmp_path):
  queries = [
    {"id": "q1", "lang": "ja", "question": "?", "answers": ["Mount Fuji"]},
    {"id": "q2", "lang": "ja", "question": "?", "answers": ["no"]},
    {"id": "q3", "lang": "fi", "question": "?", "answers": ["Sibelius"]},
    {"id": "q4", "lang": "fi", "question": "?", "answers": ["Aalto"]},
  ]
  (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
  (tmp_path / "corpus.tsv").write_text(
    "id\ttext\ttitle\n"
    "p1\tMount Fuji is the highest mountain.\tFuji\n"
    "p2\tJean Sibelius wrote Finlandia.\tSibelius\n"
    "p3\tAlvar Aalto was an architect.\tAalto\n"
    "p4\tNothing to see.\tNone\n"
  )
  (tmp_path / "qrels").write_text("q1 0 p1 1\nq2 0 p4 1\nq3 0 p2 1\nq4 0 p3 1\n")
  # Run A: q1 gold first, q3 gold second, q4 gold third.
  (tmp_path / "a.trec").write_text(
    "q1 Q0 p1 1 3 a\nq1 Q0 p4 2 2 a\n"
    "q2 Q0 p4 1 3 a\n"
    "q3 Q0 p4 1 3 a\nq3 Q0 p2 2 2 a\n"
    "q4 Q0 p4 1 3 a\nq4 Q0 p1 2 2 a\nq4 Q0 p3 3 1 a\n"
  )
  # Run B: only q1 gold first; the others miss the gold.
  (tmp_path / "b.trec").write_text(
    "q1 Q0 p1 1 3 b\nq2 Q0 p4 1 3 b\nq3 Q0 p4 1 3 b\nq4 Q0 p4 1 3 b\n"
  )
  return tmp_path


def test_evaluate_trec_run_with_compare(files, capsys):
  out = files / "out" / "eval"
  argv = [
    "evaluate", "--run", str(files / "a.trec"), "--queries", str(files / "q.jsonl"),
    "--qrels", str(files / "qrels"), "--corpus", str(files / "corpus.tsv"),
    "--metrics", "R@2kt,Recall@1,Recall@2,MRR@10", "--compare", str(files / "b.trec"),
    "--tokenizer", "line", "--output", str(out), "--bootstrap_samples", "200",
  ]  # fmt: skip
  assert cli.main(argv) == 0
  report = json.loads((files / "out" / "eval.json").read_text())
  m = report["metrics"]
  # R@2kt: q2 skipped (answer "no"); all three others find their answer in the tiny lists.
  assert m["R@2kt"]["counts"] == {"fi": 2, "ja": 1}
  assert m["R@2kt"]["per_lang"] == {"fi": 100.0, "ja": 100.0}
  # Recall@1: q1, q2 hit; q3, q4 miss.  ja = 100, fi = 0.
  assert m["Recall@1"]["per_lang"] == {"fi": 0.0, "ja": 100.0}
  assert m["Recall@1"]["macro"] == 50.0 and m["Recall@1"]["micro"] == 50.0
  assert m["Recall@2"]["per_lang"] == {"fi": 50.0, "ja": 100.0}
  assert m["MRR@10"]["per_query"] == pytest.approx({"q1": 1, "q2": 1, "q3": 0.5, "q4": 1 / 3})
  c = report["comparison"]["MRR@10"]
  ref = stats.ttest_rel([1, 1, 0.5, 1 / 3], [1, 1, 0, 0])
  assert c["p_value"] == pytest.approx(ref.pvalue) and c["t"] == pytest.approx(ref.statistic)
  assert c["diff"] == pytest.approx(100 * (0.5 + 1 / 3) / 4)
  md = (files / "out" / "eval.md").read_text()
  assert md in capsys.readouterr().out
  assert "| fi | 2 |" in md and "paired t-test" in md


def test_evaluate_xor_json_and_default_metrics(files):
  preds = [{"id": "q1", "lang": "ja", "ctxs": ["It is Mount Fuji ."]},
           {"id": "q3", "lang": "fi", "ctxs": ["Sibel ius"]}]  # fmt: skip
  (files / "p.json").write_text(json.dumps(preds))
  argv = [
    "--run",
    str(files / "p.json"),
    "--queries",
    str(files / "q.jsonl"),
    "--tokenizer",
    "line",
  ]
  assert eval_cli.main(argv) == 0
  report = json.loads((files / "p.json.eval.json").read_text())
  assert list(report["metrics"]) == ["R@2kt", "R@5kt"]
  assert report["metrics"]["R@5kt"]["per_lang"] == {"fi": 0.0, "ja": 100.0}
  assert report["tokenizer"].startswith("word_tokenize(preserve_line=True)")


def test_evaluate_errors(files, capsys):
  base = ["--queries", str(files / "q.jsonl")]
  assert cli.main(["evaluate", "--run", str(files / "nope.trec"), *base]) == 2
  assert "--run file not found" in capsys.readouterr().err
  argv = ["--run", str(files / "a.trec"), *base, "--metrics", "Recall@5"]
  assert cli.main(["evaluate", *argv]) == 2
  assert "need --qrels" in capsys.readouterr().err
  argv = ["--run", str(files / "a.trec"), *base, "--metrics", "R@2kt"]
  assert cli.main(["evaluate", *argv]) == 2
  assert "needs --corpus" in capsys.readouterr().err
  (files / "bad.trec").write_text("q1 Q0 p1 1 3\n")
  argv = ["--run", str(files / "bad.trec"), *base, "--qrels", str(files / "qrels")]
  assert cli.main(["evaluate", *argv]) == 2
  assert "bad.trec:1: expected 6 fields" in capsys.readouterr().err


def test_punkt_params_trained_from_corpus_and_reused(files):
  params = files / "punkt.json"
  argv = ["--run", str(files / "a.trec"), "--queries", str(files / "q.jsonl"),
          "--corpus", str(files / "corpus.tsv"), "--punkt_params", str(params)]  # fmt: skip
  assert eval_cli.main(argv) == 0
  assert params.is_file()
  report = json.loads((files / "a.trec.eval.json").read_text())
  assert "punkt.json" in report["tokenizer"] or "official" in report["tokenizer"]
