"""One process of a multi-host training run, for checking multi-host == single-host.

Why: on a TPU pod every host runs ``xtr-jax train`` with ``jax.distributed`` on and feeds
only its rows of the global batch (``train_batches(step, process_index, process_count)``).
On one machine the same path runs as N processes with emulated CPU devices each, talking
through gloo collectives; the losses must equal one process on the same global batch.

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m xtr_jax.scale.multihost \
    --process_id 0 --num_processes 2 --port 12355 --pairs 'p/*.jsonl' --vocab v.model \
    --model_dir /tmp/mh --out /tmp/mh/losses_0.json
"""

from __future__ import annotations

import argparse
import json
import os

from xtr_jax import io as xio


def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(prog="python -m xtr_jax.scale.multihost")
  ap.add_argument("--process_id", type=int, default=0)
  ap.add_argument("--num_processes", type=int, default=1)
  ap.add_argument("--port", type=int, default=12355)
  ap.add_argument("--pairs", required=True)
  ap.add_argument("--vocab", required=True)
  ap.add_argument("--model_dir", required=True)
  ap.add_argument("--out", required=True)
  ap.add_argument("--steps", type=int, default=4)
  ap.add_argument("--batch_size", type=int, default=16)
  args = ap.parse_args(argv)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax  # noqa: PLC0415
  import optax  # noqa: PLC0415

  if args.num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from xtr_jax import partitioning  # noqa: PLC0415

    partitioning.maybe_initialize_distributed(
      f"127.0.0.1:{args.port}", args.num_processes, args.process_id, enabled=True
    )
  from xtr_jax.models.config import tiny_config  # noqa: PLC0415
  from xtr_jax.training import inputs, optimizers, trainer  # noqa: PLC0415

  config = tiny_config()
  batches = inputs.jsonl_pairs_batches(
    pattern=args.pairs,
    vocabulary=args.vocab,
    batch_size=args.batch_size,
    query_length=16,
    passage_length=24,
    heldout_fraction=0.0,
  )
  result = trainer.train(
    args.model_dir,
    model_config=config,
    model_kind="xtr",
    train_batches=batches,
    num_train_steps=args.steps,
    checkpoint_every=10**9,
    log_every=1,
    export=False,
    mesh_shape=(jax.device_count(), 1),
    schedule_fn=lambda: optimizers.learning_rate_schedule(
      base_learning_rate=0.5, kind="constant", warmup_steps=0, total_steps=args.steps
    ),
    # Plain SGD: Adam's update divides by sqrt(v), which magnifies the last-bit differences
    # of a cross-process all-reduce (summation order) into ~5e-5 loss drift by step 4.
    optimizer_fn=lambda s: optax.sgd(s),
  )
  out = {
    "process_index": jax.process_index(),
    "process_count": jax.process_count(),
    "device_count": jax.device_count(),
    "local_device_count": jax.local_device_count(),
    "losses": {str(k): v for k, v in sorted(result.losses.items())},
  }
  xio.atomic_write_text(args.out, json.dumps(out))
  if args.num_processes > 1:
    jax.distributed.shutdown()
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
