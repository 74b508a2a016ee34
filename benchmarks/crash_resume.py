"""kill -9 at random points, then resume: outputs must equal an uninterrupted run's.

Components (each a real ``xtr-jax`` subprocess on tiny self-made fixtures):
- ``train``: ``xtr-jax train`` (tiny XTR, checkpoint every 2 steps); compared: the final
  model's fingerprint and the logged loss of every step.
- ``index``: ``xtr-jax index`` (resumable shard encoding + atomic index build, brute force);
  compared: vectors, token_to_passage and passage ids byte for byte, and search results.
- ``generate``: ``xtr-jax generate`` (greedy, resumable JSONL); compared: the JSONL bytes.

After every kill it checks that nothing half-written is accepted: the index directory is
absent or loads; finished encode shards load; the generated JSONL's committed prefix parses;
and the next run resumes (the trainer restores its latest checkpoint).

Usage: ``python benchmarks/crash_resume.py --kills 8 [--components train,index,generate]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = {
  **os.environ,
  "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
  "JAX_PLATFORMS": "cpu",
  "TF_CPP_MIN_LOG_LEVEL": "3",
  "PYTHONPATH": str(ROOT),
}


@dataclasses.dataclass
class Fixture:
  corpus: str
  vocabulary: str
  retrieval_ckpt: str
  mt5_ckpt: str
  pairs: str


def make_fixture(root: str, num_passages: int = 48) -> Fixture:
  import jax

  from xtr_jax.checkpoints.orbax_io import save_checkpoint
  from xtr_jax.index.encode import read_corpus
  from xtr_jax.index.testing import make_tiny_setup
  from xtr_jax.models import t5
  from xtr_jax.models.config import tiny_config

  setup = make_tiny_setup(os.path.join(root, "fx"), num_passages=num_passages)
  cfg = tiny_config()
  mt5 = os.path.join(root, "fx", "mt5")
  params = t5.init_params(cfg, jax.random.PRNGKey(3), t5.Transformer)
  save_checkpoint(mt5, params, cfg, model_kind="mt5", extra={"vocabulary": setup.vocabulary})
  pairs = os.path.join(root, "fx", "pairs.jsonl")
  with open(pairs, "w", encoding="utf-8") as f:
    for i, p in enumerate(read_corpus(setup.corpus)):
      q = " ".join(p.text.split()[:4])
      f.write(json.dumps({"_id": f"x{i}", "query": q, "title": p.title, "text": p.text}) + "\n")
  return Fixture(setup.corpus, setup.vocabulary, setup.checkpoint, mt5, pairs)


def _train_cmd(fx: Fixture, out: str) -> list[str]:
  from xtr_jax.models.config import tiny_config

  cfg = tiny_config()
  return [
    "train", f"--model_dir={out}", "--gin_file=runs/train_xtr_cpu.gin",
    f"--gin.PAIRS='{fx.pairs}'", f"--gin.VOCAB='{fx.vocabulary}'",
    f"--gin.VOCAB_SIZE={cfg.vocab_size}", "--gin.TRAIN_STEPS=10", "--gin.BATCH_SIZE=8",
    "--gin.QUERY_LENGTH=8", "--gin.PASSAGE_LENGTH=16",
    "--gin.trainer.train.checkpoint_every=2", "--gin.trainer.train.eval_batches=None",
    "--gin.trainer.train.log_every=1", "--gin.trainer.train.keep_checkpoints=2",
    "--gin.trainer.ModelTask.k_train=8",
    "--gin.optimizers.learning_rate_schedule.warmup_steps=2",
  ]  # fmt: skip


def _index_cmd(fx: Fixture, out: str) -> list[str]:
  return [
    "index", f"--checkpoint={fx.retrieval_ckpt}", f"--corpus={fx.corpus}", f"--output={out}",
    "--gin.index_settings.backend='brute_force'", "--gin.EncodeParams.shard_size=6",
    "--gin.EncodeParams.batch_size=6", "--gin.EncodeParams.buckets=(64,)",
  ]  # fmt: skip


def _generate_cmd(fx: Fixture, out: str) -> list[str]:
  return [
    "generate", f"--checkpoint={fx.mt5_ckpt}", f"--corpus={fx.corpus}", f"--output={out}",
    "--languages=ja,ko", "--strategy=greedy", "--batch_size=4", "--max_decode_length=6",
    "--max_input_length=32", "--no_progress",
  ]  # fmt: skip


def run_cli(args: list[str], kill_after: float | None = None, log: str | None = None):
  """Runs ``xtr-jax ARGS``; with ``kill_after`` SIGKILLs it then. Returns (rc, killed, secs)."""
  t0 = time.time()
  out = open(log, "ab") if log else subprocess.DEVNULL
  proc = subprocess.Popen(
    [sys.executable, "-m", "xtr_jax.cli", *args], cwd=ROOT, env=ENV, stdout=out, stderr=out
  )
  try:
    proc.wait(timeout=kill_after)
    return proc.returncode, False, time.time() - t0
  except subprocess.TimeoutExpired:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode, True, time.time() - t0
  finally:
    if log:
      out.close()


# ----------------------------------------------------------------------------- results


def train_result(out: str) -> dict:
  with open(os.path.join(out, "final", "xtr_jax_checkpoint.json")) as f:
    fp = json.load(f)["fingerprint"]
  losses = {}
  with open(os.path.join(out, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      if row.get("split") == "train":
        losses[row["step"]] = row["loss"]  # a resumed step re-logs: keep the last
  return {"fingerprint": fp, "losses": losses}


def index_result(out: str) -> dict:
  import hashlib

  import numpy as np

  from xtr_jax.index.store import load_index

  idx = load_index(out, backend="brute_force")
  h = {n: hashlib.sha256(open(os.path.join(out, n), "rb").read()).hexdigest()[:16]
       for n in ("vectors.npy", "token_to_passage.npy", "passage_ids.json")}  # fmt: skip
  q = np.asarray(idx.vectors[:5], np.float32)
  ids, scores = idx.search_tokens(q, 3)
  return {"hashes": h, "search": idx.tokens_to_passages(ids).tolist(), "scores": scores.tolist()}


def generate_result(out: str) -> dict:
  return {"bytes": pathlib.Path(out).read_bytes()}


def check_after_kill(component: str, out: str) -> str:
  """What a kill left behind, checked: '' if fine, else the problem."""
  if component == "index":
    if os.path.exists(out):
      try:
        index_result(out)
      except Exception as e:
        return f"index directory exists but does not load: {e}"
    work = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.encode")
    progress = os.path.join(work, "progress.json")
    if os.path.exists(progress):
      from xtr_jax.index.encode import load_shards

      try:
        record = json.load(open(progress))
        load_shards(work, record)
      except Exception as e:
        return f"finished shards do not load: {type(e).__name__}: {e}"
  if component == "generate":
    prog = out + ".progress.json"
    if os.path.exists(prog):
      state = json.load(open(prog))["state"]
      data = pathlib.Path(out).read_bytes()[: state["output_bytes"]]
      if len(data) < state["output_bytes"]:
        return "committed output is shorter than progress says"
      try:
        rows = [json.loads(x) for x in data.decode().splitlines() if x]
      except ValueError as e:
        return f"committed output has a half-written line: {e}"
      if len(rows) != state["passages"]:
        return f"{len(rows)} committed rows but progress says {state['passages']}"
  return ""


COMPONENTS = {
  "train": (_train_cmd, train_result),
  "index": (_index_cmd, index_result),
  "generate": (_generate_cmd, generate_result),
}


def crash_component(
  component: str, fx: Fixture, root: str, kills: int, rng: random.Random, log: str | None = None
) -> dict:
  """Reference run, then ``kills`` runs each SIGKILLed at a random time and resumed."""
  cmd, result = COMPONENTS[component]
  ref_out = os.path.join(root, f"{component}_ref")
  rc, _, ref_secs = run_cli(cmd(fx, ref_out), log=log)
  assert rc == 0, f"{component} reference run failed (rc {rc}); see {log}"
  reference = result(ref_out)
  trials = []
  for k in range(kills):
    out = os.path.join(root, f"{component}_{k}")
    # Kill 1-2 times per trial, at random points of the expected run time (start-up included).
    points, killed, problems, rc = [], 0, [], None
    for _ in range(rng.choice([1, 1, 2])):
      at = rng.uniform(0.2, 1.0) * ref_secs
      rc, was_killed, _ = run_cli(cmd(fx, out), kill_after=at, log=log)
      points.append(round(at, 1))
      if not was_killed:
        break  # finished before the kill point: nothing to resume
      rc = None
      killed += 1
      problem = check_after_kill(component, out)
      if problem:
        problems.append(problem)
    if rc is None and component == "index" and os.path.exists(out):
      rc = 0  # killed after the atomic rename: the index is complete, a rerun would refuse
    if rc is None:
      rc, _, _ = run_cli(cmd(fx, out), log=log)  # the resume
    equal = rc == 0 and result(out) == reference
    trials.append(
      {
        "kill_points_s": points,
        "killed": killed,
        "resume_rc": rc,
        "equal": equal,
        "problems": problems,
      }
    )
  return {"component": component, "reference_seconds": round(ref_secs, 1), "trials": trials}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "--kills", type=int, default=8, help="Killed-and-resumed trials per component."
  )
  parser.add_argument("--components", default="train,index,generate")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", help="Keep files here (default: a temporary folder).")
  args = parser.parse_args(argv)
  rng = random.Random(args.seed)
  with tempfile.TemporaryDirectory(prefix="crash_") as tmp:
    root = args.workdir or tmp
    os.makedirs(root, exist_ok=True)
    fx = make_fixture(root)
    log = os.path.join(root, "subprocess.log")
    print(
      "| component | trials | kills | resumed equal | problems | reference s | kill points (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    bad = 0
    for component in args.components.split(","):
      r = crash_component(component, fx, root, args.kills, rng, log)
      t = r["trials"]
      kills = sum(x["killed"] for x in t)
      equal = sum(x["equal"] for x in t)
      problems = sorted({p for x in t for p in x["problems"]})
      bad += (len(t) - equal) + len(problems)
      pts = "; ".join(",".join(map(str, x["kill_points_s"])) for x in t)
      print(
        f"| {component} | {len(t)} | {kills} | {equal}/{len(t)} | {problems or 0} | {r['reference_seconds']} | {pts} |",
        flush=True,
      )
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main())
