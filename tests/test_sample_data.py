"""The shipped sample: deterministic, well-formed, and every answer is in its gold passage."""

import csv
import json

from xtr_jax.experiments import sample_data


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def test_sample_is_deterministic_and_consistent(tmp_path):
  a = sample_data.write_sample(tmp_path / "a", num_towns=20)
  b = sample_data.write_sample(tmp_path / "b", num_towns=20)
  for key in ("corpus", "dev", "qrels", "xor_train"):
    assert _read(a[key]) == _read(b[key])

  with open(a["corpus"], encoding="utf-8") as f:
    rows = list(csv.reader(f, delimiter="\t"))
  assert rows[0] == ["id", "text", "title"]
  passages = {r[0]: r[1] for r in rows[1:]}
  assert len(passages) == 40  # two passages per town

  dev = [json.loads(line) for line in _read(a["dev"]).splitlines()]
  qrels = {}
  for line in _read(a["qrels"]).splitlines():
    qid, _, pid, rel = line.split()
    assert rel == "1"
    qrels[qid] = pid
  assert {q["id"] for q in dev} == set(qrels)
  assert {q["lang"] for q in dev} <= set(sample_data.LANGUAGES)
  for q in dev:
    # The XOR R@kt metric needs the answer string inside the gold passage.
    assert q["answers"][0] in passages[qrels[q["id"]]]

  for code in sample_data.LANGUAGES:
    recs = [json.loads(x) for x in _read(f"{a['swim_ir_dir']}/{code}.jsonl").splitlines()]
    assert recs and all(set(r) == {"_id", "lang", "code", "query", "title", "text"} for r in recs)
    assert all(r["code"] == code and r["title"] in r["query"] for r in recs)
