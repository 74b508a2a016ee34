"""kill -9 at random points, then resume: outputs must equal an uninterrupted run's.

Components (each a real subprocess on tiny self-made fixtures):
- ``train``: ``xtr-jax train`` (tiny XTR, checkpoint every 2 steps); compared: the final
  model's fingerprint and the logged loss of every step.
- ``encode``: ``xtr-jax index`` killed while encoding the corpus (resumable shards), then
  rerun; compared: the index's vectors, token_to_passage and passage ids byte for byte, and
  brute-force search results. (``index`` is an alias.)
- ``build``: the index builder (``store.build_index``, ScaNN, several segments) killed
  while it writes, then rerun; compared: vectors/ids bytes and exact search results (every
  leaf searched, every candidate re-scored: ScaNN's k-means is not deterministic run to
  run, so the partitions themselves can differ).
- ``generate``: ``xtr-jax generate`` (greedy, resumable JSONL); compared: the JSONL bytes.

Kill points: ``train`` at a uniform fraction of the reference run's time; the others at a
uniform delay after their first durable output appears (a finished shard, the build's
temporary directory, the first committed batch) within the reference's remaining time, so
kills land in the work, not in start-up. After every kill it checks that nothing
half-written is accepted: the index directory is absent or loads; finished encode shards
load; the generated JSONL's committed prefix parses; and the next run resumes.

Usage: ``python benchmarks/crash_resume.py --kills 20 [--components encode,build,generate]``.
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
  arrays: str  # token vectors + token_to_passage for the index builder


def make_fixture(root: str, num_passages: int = 96) -> Fixture:
  import jax
  import numpy as np

  from xtr_jax.checkpoints.orbax_io import save_checkpoint
  from xtr_jax.data.formats import read_corpus
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
  arrays = os.path.join(root, "fx", "arrays.npz")
  rng = np.random.default_rng(0)
  np.savez(arrays, v=rng.standard_normal((16000, 32)).astype(np.float16),
           t=np.repeat(np.arange(1600), 10).astype(np.int32))  # fmt: skip
  return Fixture(setup.corpus, setup.vocabulary, setup.checkpoint, mt5, pairs, arrays)


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


BUILD_CHILD = """
import sys
sys.path.insert(0, sys.argv[3])
from benchmarks.crash_resume import build_from_arrays
build_from_arrays(sys.argv[1], sys.argv[2])
"""


def build_from_arrays(arrays: str, out: str) -> None:
  """The index builder on fixed arrays: ScaNN, 8 segments, exact when searched."""
  import numpy as np

  from xtr_jax.index import store
  from xtr_jax.index.scann_index import ScannParams

  a = np.load(arrays)
  store.build_index(
    out, a["v"], a["t"], [f"p{i}" for i in range(int(a["t"].max()) + 1)],
    model_fingerprint="fp", backend="scann", segment_tokens=len(a["t"]) // 8,
    scann_params=ScannParams(num_leaves=8, num_leaves_to_search=8, reorder=1000,
                             training_sample_size=2000),
  )  # fmt: skip


def _build_cmd(fx: Fixture, out: str) -> list[str]:
  return ["-c", BUILD_CHILD, fx.arrays, out, str(ROOT)]


def run_cli(
  args: list[str],
  kill_after: float | None = None,
  log: str | None = None,
  trigger=None,
) -> tuple[int | None, bool, float, float | None]:
  """Runs ``xtr-jax ARGS`` (or ``python ARGS`` when ARGS[0] is ``-c``).

  With ``kill_after``: SIGKILLs it that many seconds after start, or after ``trigger()``
  first holds when a trigger is given. Returns (rc, killed, seconds, trigger time).
  """
  t0 = time.time()
  out = open(log, "ab") if log else subprocess.DEVNULL
  cmd = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "xtr_jax.cli", *args]
  proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=out, stderr=out)
  fired = None
  try:
    if trigger is not None:
      while proc.poll() is None:
        if trigger():
          fired = time.time() - t0
          break
        time.sleep(0.005)
    if kill_after is not None and (trigger is None or fired is not None):
      start = t0 if trigger is None else t0 + fired
      try:
        proc.wait(timeout=max(0.0, start + kill_after - time.time()))
      except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return proc.returncode, True, time.time() - t0, fired
    proc.wait()
    return proc.returncode, False, time.time() - t0, fired
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
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


def build_result(out: str) -> dict:
  import hashlib

  import numpy as np

  from xtr_jax.index.store import load_index

  idx = load_index(out)  # ScaNN
  h = {n: hashlib.sha256(open(os.path.join(out, n), "rb").read()).hexdigest()[:16]
       for n in ("vectors.npy", "token_to_passage.npy", "passage_ids.json")}  # fmt: skip
  q = np.asarray(idx.vectors[:20], np.float32)
  ids, scores = idx.search_tokens(q, 10)
  return {"hashes": h, "ids": ids.tolist(), "scores": np.round(scores, 4).tolist()}


def generate_result(out: str) -> dict:
  return {"bytes": pathlib.Path(out).read_bytes()}


def check_after_kill(component: str, out: str) -> str:
  """What a kill left behind, checked: '' if fine, else the problem."""
  if component == "build":
    if os.path.exists(out):
      try:
        build_result(out)
      except Exception as e:
        return f"index directory exists but does not load: {type(e).__name__}: {e}"
  if component == "encode":
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


def _first_output(component: str, out: str):
  """The trigger after which kills land: the component's first durable output."""
  parent, name = os.path.split(out)
  if component == "encode":
    progress = os.path.join(parent, f".{name}.encode", "progress.json")
    return lambda: os.path.exists(progress)
  if component == "build":
    import glob

    return lambda: bool(glob.glob(os.path.join(parent, f".{name}.tmp-*")))
  if component == "generate":
    return lambda: os.path.exists(out + ".progress.json")
  return None  # train: time since start


COMPONENTS = {
  "train": (_train_cmd, train_result),
  "encode": (_index_cmd, index_result),
  "build": (_build_cmd, build_result),
  "generate": (_generate_cmd, generate_result),
}
ALIASES = {"index": "encode"}


def crash_component(
  component: str, fx: Fixture, root: str, kills: int, rng: random.Random, log: str | None = None
) -> dict:
  """Reference run, then ``kills`` trials each SIGKILLed 1-2 times and resumed."""
  cmd, result = COMPONENTS[component]
  ref_out = os.path.join(root, f"{component}_ref")
  rc, _, ref_secs, ref_fired = run_cli(
    cmd(fx, ref_out), log=log, trigger=_first_output(component, ref_out)
  )
  assert rc == 0, f"{component} reference run failed (rc {rc}); see {log}"
  reference = result(ref_out)
  span = ref_secs - (ref_fired or 0.0)  # the window kills are drawn from
  trials, t0 = [], time.time()
  for k in range(kills):
    out = os.path.join(root, f"{component}_{k}")
    points, killed, problems, rc = [], 0, [], None
    for _ in range(rng.choice([1, 1, 2])):
      at = rng.uniform(0.2, 1.0) * ref_secs if component == "train" else rng.uniform(0, span)
      rc, was_killed, _, fired = run_cli(
        cmd(fx, out), kill_after=at, log=log, trigger=_first_output(component, out)
      )
      points.append(round(at + (fired or 0.0), 2))
      if not was_killed:
        break  # finished before the kill point: nothing to resume
      rc = None
      killed += 1
      problem = check_after_kill(component, out)
      if problem:
        problems.append(problem)
    if rc is None and component in ("encode", "build") and os.path.exists(out):
      rc = 0  # killed after the atomic rename: the index is complete, a rerun would refuse
    if rc is None:
      rc, _, _, _ = run_cli(cmd(fx, out), log=log)  # the resume
    equal = rc == 0 and result(out) == reference
    trials.append(
      {"kill_points_s": points, "killed": killed, "resume_rc": rc, "equal": equal,
       "problems": problems}
    )  # fmt: skip
  return {
    "component": component,
    "reference_seconds": round(ref_secs, 1),
    "first_output_s": None if ref_fired is None else round(ref_fired, 2),
    "trials": trials,
    "campaign_seconds": round(time.time() - t0),
  }


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "--kills", type=int, default=8, help="Killed-and-resumed trials per component."
  )
  parser.add_argument("--components", default="train,encode,build,generate")
  parser.add_argument("--kills_train", type=int, help="Trials for train (default: --kills).")
  parser.add_argument("--out", help="Also write every trial as JSON here.")
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
      "| component | trials | kills | resumed equal | problems | reference s | first output s "
      "| campaign s | kill points (s after start) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    bad, everything = 0, []
    for component in args.components.split(","):
      component = ALIASES.get(component, component)
      kills = args.kills_train if component == "train" and args.kills_train else args.kills
      r = crash_component(component, fx, root, kills, rng, log)
      everything.append(r)
      t = r["trials"]
      kills = sum(x["killed"] for x in t)
      equal = sum(x["equal"] for x in t)
      problems = sorted({p for x in t for p in x["problems"]})
      bad += (len(t) - equal) + len(problems)
      pts = "; ".join(",".join(map(str, x["kill_points_s"])) for x in t)
      print(
        f"| {component} | {len(t)} | {kills} | {equal}/{len(t)} | {problems or 0} | "
        f"{r['reference_seconds']} | {r['first_output_s']} | {r['campaign_seconds']} | {pts} |",
        flush=True,
      )
    if args.out:
      with open(args.out, "w") as f:
        json.dump(everything, f, indent=1)
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main())
