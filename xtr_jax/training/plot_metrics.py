"""Plots a run's ``metrics.jsonl``: training loss and held-out in-batch MRR against steps.

python -m xtr_jax.training.plot_metrics MODEL_DIR OUT.png
"""

from __future__ import annotations

import json
import sys


def load(path: str) -> tuple[dict[int, dict], dict[int, dict]]:
  """Rows by step for train and eval; a resumed run's repeated steps keep the last row."""
  train, evals = {}, {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      row = json.loads(line)
      (train if row["split"] == "train" else evals)[row["step"]] = row
  return train, evals


def main(argv: list[str]) -> int:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  model_dir, out = argv
  train, evals = load(f"{model_dir}/metrics.jsonl")
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
  steps = sorted(train)
  a.plot(steps, [train[s]["loss"] for s in steps], label="train loss")
  es = sorted(evals)
  a.plot(es, [evals[s]["loss"] for s in es], "o-", label="held-out loss")
  a.set_xlabel("step")
  a.set_ylabel("in-batch softmax CE")
  a.legend()
  for key in ("mrr", "recall@1"):
    b.plot(es, [evals[s][key] for s in es], "o-", label=f"held-out {key}")
  b.set_xlabel("step")
  b.set_ylim(0, 1)
  b.legend()
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
