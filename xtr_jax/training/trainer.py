"""t5x-style trainer: sharded jit steps, orbax checkpoints with resume, evaluation, metrics.

One loop for the four model kinds: ``xtr`` (token vectors, XTR in-batch token-retrieval
loss), ``colbert`` (token vectors, sum-of-max), ``single_vector`` (mean-pooled vector) and
``xqg`` (the mT5 encoder-decoder with token cross-entropy). The training state is
``{step, params, opt_state}``; the input position is the step (the batch iterator is
recreated at ``start_step`` on resume), and dropout keys are ``fold_in(seed, step)``, so a
resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

import gin
from xtr_jax import io as xio
from xtr_jax import partitioning
from xtr_jax.checkpoints import orbax_io
from xtr_jax.checkpoints.embedded import resolve_checkpoint
from xtr_jax.models import bert2bert
from xtr_jax.models.bert import BertConfig
from xtr_jax.models.config import T5Config
from xtr_jax.models.xtr import RetrievalEncoder
from xtr_jax.training import losses, optimizers
from xtr_jax.training.inputs import BatchFactory

MODEL_KINDS = ("xtr", "colbert", "single_vector", "xqg")
RETRIEVAL_KINDS = ("xtr", "colbert", "single_vector")
# Softmax temperatures per kind: XTR and single-vector scores lie in [-1, 1] (normalised by
# Z, or one cosine), so they need a sharp softmax; ColBERT's sum over query tokens does not.
DEFAULT_TEMPERATURE = {"xtr": 0.05, "colbert": 1.0, "single_vector": 0.05, "xqg": 1.0}
PyTree = Any


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ModelTask:
  """A model kind with its network, loss and evaluation metrics."""

  config: T5Config | BertConfig
  kind: str = "xtr"
  proj_dim: int = 128
  k_train: int = 256
  temperature: float | None = None  # None: DEFAULT_TEMPERATURE[kind]
  z_loss: float = 1e-4
  mask_duplicate_passages: bool = True

  def __post_init__(self):
    if self.kind not in MODEL_KINDS:
      raise ValueError(f"model kind {self.kind!r}; expected one of {MODEL_KINDS}")

  @property
  def tau(self) -> float:
    return DEFAULT_TEMPERATURE[self.kind] if self.temperature is None else self.temperature

  @property
  def is_retrieval(self) -> bool:
    return self.kind in RETRIEVAL_KINDS

  @property
  def module(self) -> nn.Module:
    if self.is_retrieval:
      pooling = "mean" if self.kind == "single_vector" else "token"
      return RetrievalEncoder(self.config, proj_dim=self.proj_dim, pooling=pooling)
    return bert2bert.seq2seq_model(self.config)  # mT5, or BERT2BERT for a Bert2BertConfig

  def init(self, rng: jax.Array) -> PyTree:
    """Boxed params (logical axes attached)."""
    ids = jnp.ones((1, 8), jnp.int32)
    if self.is_retrieval:
      return self.module.init(rng, ids)["params"]
    return self.module.init(rng, ids, ids)["params"]

  def _encode(self, params, ids, rng, deterministic):
    return self.module.apply(
      {"params": params},
      ids,
      (ids != self.config.pad_token_id).astype(jnp.int32),
      deterministic=deterministic,
      rngs=None if deterministic else {"dropout": rng},
    )

  def retrieval_logits(self, params, batch, rng, deterministic) -> tuple[jax.Array, jax.Array]:
    queries, passages = batch["query_tokens"], batch["passage_tokens"]
    candidates = passages
    if "negative_tokens" in batch:
      neg = batch["negative_tokens"]
      candidates = jnp.concatenate([passages, neg.reshape(-1, neg.shape[-1])], axis=0)
    candidate_mask = None
    if self.mask_duplicate_passages:  # another query's positive equal to mine is no negative
      same = jnp.all(passages[:, None, :] == candidates[None, :, :], axis=-1)
      candidate_mask = ~same
    rq, rd = jax.random.split(rng)
    q = self._encode(params, queries, rq, deterministic)
    d = self._encode(params, candidates, rd, deterministic)
    pad = self.config.pad_token_id
    if self.kind == "single_vector":
      _, logits = losses.single_vector_loss(
        q, d, temperature=self.tau, candidate_mask=candidate_mask
      )
    elif self.kind == "colbert":
      _, logits = losses.colbert_loss(
        q,
        queries != pad,
        d,
        candidates != pad,
        temperature=self.tau,
        candidate_mask=candidate_mask,
      )
    else:  # the mask also keeps copies of the positive out of each query's token pool
      _, logits = losses.xtr_loss(
        q,
        queries != pad,
        d,
        candidates != pad,
        k_train=self.k_train,
        temperature=self.tau,
        candidate_mask=candidate_mask,
      )
    if candidate_mask is None:
      candidate_mask = jnp.ones(logits.shape, bool)
    return logits, candidate_mask

  def loss(self, params, batch, rng, deterministic=False) -> tuple[jax.Array, dict]:
    if self.is_retrieval:
      logits, mask = self.retrieval_logits(params, batch, rng, deterministic)
      loss = losses.in_batch_cross_entropy(logits, mask)
      return loss, losses.in_batch_ranking_metrics(logits, mask)
    enc = batch["encoder_input_tokens"]
    logits = self.module.apply(
      {"params": params},
      enc,
      batch["decoder_input_tokens"],
      (enc != self.config.pad_token_id).astype(jnp.int32),
      None,
      deterministic=deterministic,
      rngs=None if deterministic else {"dropout": rng},
    )
    loss, accuracy, _ = losses.token_cross_entropy(
      logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"], self.z_loss
    )
    return loss, {"token_accuracy": accuracy}

  def eval_metrics(self, params, batch) -> dict:
    loss, metrics = self.loss(params, batch, jax.random.key(0), deterministic=True)
    return {"loss": loss, **metrics}

  def count_tokens(self, batch: dict[str, np.ndarray]) -> int:
    names = [k for k in batch if k.endswith("_tokens") and k != "decoder_input_tokens"]
    return int(sum(np.count_nonzero(batch[k]) for k in names))


class Trainer:
  """Sharded state creation, train step and eval step on one mesh."""

  def __init__(
    self,
    task: ModelTask,
    tx: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    rules: partitioning.AxisRules = partitioning.DEFAULT_RULES,
    seed: int = 0,
    microbatches: int = 1,
    schedule: optax.Schedule | None = None,
  ):
    self.task, self.tx, self.mesh, self.seed = task, tx, mesh, seed
    self.microbatches = max(int(microbatches), 1)
    self.schedule = schedule
    boxed = jax.eval_shape(task.init, jax.random.key(seed))
    self.param_shardings = partitioning.param_shardings(boxed, mesh, rules)
    self.abstract_params = nn.meta.unbox(boxed)
    opt_shardings = partitioning.opt_state_shardings(
      tx, self.abstract_params, self.param_shardings, mesh
    )
    rep = partitioning.replicated(mesh)
    self.state_shardings = {
      "step": rep,
      "params": self.param_shardings,
      "opt_state": opt_shardings,
    }
    abstract = jax.eval_shape(self._state_from_params, self.abstract_params)
    self.abstract_state = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract,
      self.state_shardings,
    )
    batch_sh = partitioning.batch_sharding(mesh)
    self._init_params = jax.jit(
      lambda rng: nn.meta.unbox(task.init(rng)), out_shardings=self.param_shardings
    )
    self._init_state = jax.jit(self._state_from_params, out_shardings=self.state_shardings)
    self._train_step = jax.jit(
      self._step,
      in_shardings=(self.state_shardings, batch_sh),
      out_shardings=(self.state_shardings, rep),
      donate_argnums=(0,),
    )
    self._eval_step = jax.jit(
      task.eval_metrics, in_shardings=(self.param_shardings, batch_sh), out_shardings=rep
    )

  def _state_from_params(self, params):
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": self.tx.init(params)}

  def init_state(self, params: PyTree | None = None) -> PyTree:
    """Fresh state from the seed, or from given (unboxed, host or device) params."""
    if params is None:
      params = self._init_params(jax.random.key(self.seed))
    else:
      params = jax.device_put(params, self.param_shardings)
    return self._init_state(params)

  def _grads(self, params, batch, rng):
    grad_fn = jax.value_and_grad(self.task.loss, has_aux=True)
    if self.microbatches == 1:
      (loss, aux), grads = grad_fn(params, batch, rng)
      return loss, aux, grads
    m = self.microbatches

    def split(x):
      if x.shape[0] % m:
        raise ValueError(f"batch of {x.shape[0]} rows not divisible by microbatches={m}")
      return x.reshape(m, x.shape[0] // m, *x.shape[1:])

    micro = jax.tree.map(split, batch)

    def body(carry, xs):
      i, mb = xs
      (loss, aux), grads = grad_fn(params, mb, jax.random.fold_in(rng, i))
      return jax.tree.map(jnp.add, carry, (loss, aux, grads)), None

    (loss0, aux0), grads0 = jax.eval_shape(
      grad_fn, params, jax.tree.map(lambda x: x[0], micro), rng
    )
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (loss0, aux0, grads0))
    total, _ = jax.lax.scan(body, zeros, (jnp.arange(m), micro))
    return jax.tree.map(lambda x: x / m, total)

  def _step(self, state, batch):
    params, step = state["params"], state["step"]
    rng = jax.random.fold_in(jax.random.key(self.seed), step)
    loss, aux, grads = self._grads(params, batch, rng)
    updates, opt_state = self.tx.update(grads, state["opt_state"], params)
    params = optax.apply_updates(params, updates)
    metrics = {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads)}
    if self.schedule is not None:
      metrics["learning_rate"] = self.schedule(step)
    return {"step": step + 1, "params": params, "opt_state": opt_state}, metrics

  def train_step(self, state, host_batch: dict[str, np.ndarray]):
    return self._train_step(state, partitioning.global_batch(host_batch, self.mesh))

  def eval_step(self, params, host_batch: dict[str, np.ndarray]) -> dict:
    return self._eval_step(params, partitioning.global_batch(host_batch, self.mesh))


# ----------------------------------------------------------------------------- checkpoints


def merge_imported_params(init: PyTree, imported: PyTree, source: str) -> tuple[PyTree, list[str]]:
  """Initial params with every param present in ``imported`` replaced by it.

  Params only in ``imported`` (e.g. an mT5 decoder when training a retriever) are ignored;
  params only in ``init`` (e.g. a fresh projection) keep their initialisation and are
  returned in the second value. A shape mismatch is an error naming the param.
  """
  flat_init, flat_imp = orbax_io.flatten_params(init), orbax_io.flatten_params(imported)
  used, fresh = 0, []
  merged = {}
  for path, value in flat_init.items():
    if path in flat_imp:
      got = np.asarray(flat_imp[path])
      if tuple(got.shape) != tuple(value.shape):
        raise ValueError(
          f"checkpoint {source}: param {path!r} has shape {tuple(got.shape)} but the model "
          f"expects {tuple(value.shape)}"
        )
      merged[path] = got.astype(value.dtype)
      used += 1
    else:
      merged[path] = value
      fresh.append(path)
  if not used:
    raise ValueError(
      f"checkpoint {source} shares no parameter with the model "
      f"(model has e.g. {sorted(flat_init)[:3]}, checkpoint has {sorted(flat_imp)[:3]})"
    )
  return orbax_io.unflatten_params(merged), fresh


def export_final(
  directory: str,
  params: PyTree,
  task: ModelTask,
  vocabulary: str | None,
  init_checkpoint: str | None = None,
  language_tags: bool = False,
) -> None:
  """The final model in the project's checkpoint format (``orbax_io.save_checkpoint``).

  A model trained from a checkpoint that carries its own tokenizer carries it too.
  """
  from xtr_jax.checkpoints.tokenizers import carried_tokenizer  # noqa: PLC0415

  extra, assets = carried_tokenizer(init_checkpoint) if init_checkpoint else ({}, {})
  if vocabulary and not assets:
    extra["vocabulary"] = xio.abspath(vocabulary)
  if task.is_retrieval:
    extra.update(
      proj_dim=task.proj_dim,
      pooling="mean" if task.kind == "single_vector" else "token",
      retrieval_kind=task.kind,
    )
    kind = "retrieval"
  else:
    kind = "bert2bert" if isinstance(task.config, bert2bert.Bert2BertConfig) else "mt5"
    extra["language_tags"] = language_tags  # read by `xtr-jax generate --language_tags auto`
  host_params = jax.tree.map(np.asarray, jax.device_get(params))
  orbax_io.save_checkpoint(
    directory, host_params, task.config, model_kind=kind, extra=extra, assets=assets
  )


# ----------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class TrainResult:
  state: PyTree
  losses: dict[int, float]  # step (1-based, after the update) -> training loss
  eval_metrics: dict[int, dict[str, float]]


def _scalars(metrics: dict) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


@gin.configurable(denylist=["model_dir", "stop_at_step"])
def train(
  model_dir: str,
  *,
  model_config: T5Config | BertConfig = gin.REQUIRED,
  model_kind: str = "xtr",
  train_batches: BatchFactory = gin.REQUIRED,
  eval_batches: BatchFactory | None = None,
  num_train_steps: int = 1000,
  microbatches: int = 1,
  checkpoint_every: int = 500,
  keep_checkpoints: int = 3,
  eval_every: int = 500,
  eval_steps: int = 10,
  log_every: int = 50,
  seed: int = 0,
  init_checkpoint: str | None = None,
  vocabulary: str | None = None,
  export: bool = True,
  mesh_shape: tuple[int, int] = (-1, 1),
  stop_at_step: int | None = None,
  schedule_fn: Callable[..., optax.Schedule] = optimizers.learning_rate_schedule,
  optimizer_fn: Callable[..., optax.GradientTransformation] = optimizers.make_optimizer,
  tensorboard: bool = True,
) -> TrainResult:
  """Trains (or resumes) in ``model_dir``; ``stop_at_step`` stops early without saving
  (tests use it to simulate a killed job). ``tensorboard=False`` writes metrics.jsonl only
  and skips importing TensorFlow (clu's writer), ~5 s of CPU per process start."""
  xio.makedirs(model_dir)
  trainer = _build_trainer(
    model_config, model_kind, mesh_shape, seed, microbatches, schedule_fn, optimizer_fn
  )
  logging.info(
    "mesh %s; model kind %s; %d steps", dict(trainer.mesh.shape), model_kind, num_train_steps
  )
  meta = {"model_kind": model_kind, "config": model_config.to_dict(), "seed": seed}
  cadence = _Cadence(num_train_steps, log_every, eval_every, checkpoint_every, stop_at_step)
  ckpt_dir = xio.abspath(xio.join(model_dir, "checkpoints"))
  with _checkpoint_manager(ckpt_dir, keep_checkpoints) as manager:
    state, init_checkpoint = _restore_or_init(manager, ckpt_dir, trainer, meta, init_checkpoint)
    start = int(jax.device_get(state["step"]))
    log = _RunLog(model_dir, tensorboard)
    batches = train_batches(start, jax.process_index(), jax.process_count())
    loop = _Loop(trainer, manager, meta, log, cadence, eval_batches, eval_steps)
    state, step = loop.run(state, start, batches)
    manager.wait_until_finished()
    log.flush()
  if export and step == num_train_steps and jax.process_index() == 0:
    language_tags = bool(getattr(train_batches, "language_tags", False))
    _export_to_final(model_dir, state, trainer.task, vocabulary, init_checkpoint, language_tags)
  return TrainResult(state, log.losses, log.evals)


def _build_trainer(
  model_config: T5Config | BertConfig,
  model_kind: str,
  mesh_shape: tuple[int, int],
  seed: int,
  microbatches: int,
  schedule_fn: Callable[..., optax.Schedule],
  optimizer_fn: Callable[..., optax.GradientTransformation],
) -> Trainer:
  """The model task, optimizer and mesh that ``train``'s arguments (and gin) describe.

  The schedule is built once and shared by the optimizer and the trainer, so the logged
  ``learning_rate`` is the one the optimizer applies.
  """
  task = ModelTask(model_config, kind=model_kind)
  schedule = schedule_fn()
  tx = optimizer_fn(schedule)
  mesh = partitioning.create_mesh(mesh_shape)
  rules = partitioning.logical_axis_rules()
  return Trainer(task, tx, mesh, rules, seed=seed, microbatches=microbatches, schedule=schedule)


def _checkpoint_manager(ckpt_dir: str, keep_checkpoints: int) -> ocp.CheckpointManager:
  """Orbax's manager for the run's checkpoints: it keeps the newest ``keep_checkpoints`` and
  only ever exposes finished ones, which is what makes a killed run resumable."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep_checkpoints, create=True)
  return ocp.CheckpointManager(ckpt_dir, options=options)


def _restore_or_init(
  manager: ocp.CheckpointManager,
  ckpt_dir: str,
  trainer: Trainer,
  meta: dict[str, Any],
  init_checkpoint: str | None,
) -> tuple[PyTree, str | None]:
  """The state a run starts from, and ``init_checkpoint`` as the export should see it.

  The run's own latest checkpoint wins (a rerun resumes, whatever ``init_checkpoint`` says);
  otherwise the params of ``init_checkpoint`` (resolved to a directory, which the export
  then reads its tokenizer from); otherwise a fresh initialisation from the seed.
  """
  latest = manager.latest_step()
  if latest is not None:
    return _resume(manager, ckpt_dir, latest, trainer, meta), init_checkpoint
  if init_checkpoint:
    init_checkpoint = resolve_checkpoint(init_checkpoint)
    return _init_from_checkpoint(trainer, init_checkpoint), init_checkpoint
  return trainer.init_state(), init_checkpoint


def _resume(
  manager: ocp.CheckpointManager,
  ckpt_dir: str,
  latest: int,
  trainer: Trainer,
  meta: dict[str, Any],
) -> PyTree:
  """The state saved at step ``latest``, after checking that it comes from the same model.

  Resuming a different model kind or config in the same directory would either fail deep in
  orbax with a shape error or, worse, silently mix runs; the saved ``meta`` says which.
  """
  saved = manager.restore(latest, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  for key in ("model_kind", "config"):
    if saved.get(key) != meta[key]:
      raise ValueError(
        f"{ckpt_dir}/{latest}: checkpoint has {key}={saved.get(key)!r} but this run has "
        f"{meta[key]!r}; use a fresh --model_dir"
      )
  state = manager.restore(
    latest, args=ocp.args.Composite(state=ocp.args.StandardRestore(trainer.abstract_state))
  )["state"]
  logging.info("resumed from %s/%d", ckpt_dir, latest)
  return state


def _init_from_checkpoint(trainer: Trainer, init_checkpoint: str) -> PyTree:
  """A step-0 state whose params come from ``init_checkpoint`` where the model has them.

  Params the checkpoint lacks (a new projection, say) keep the seed's initialisation, so a
  retriever can start from an mT5 or BERT checkpoint; they are logged, since a typo in a
  param name would otherwise train that part from scratch unnoticed.
  """
  loaded = orbax_io.load_checkpoint(init_checkpoint)
  fresh = jax.device_get(trainer._init_params(jax.random.key(trainer.seed)))
  params, new = merge_imported_params(fresh, loaded.params, init_checkpoint)
  if new:
    logging.info("params not in %s (freshly initialised): %s", init_checkpoint, new)
  return trainer.init_state(params)


@dataclasses.dataclass(frozen=True)
class _Cadence:
  """When the loop stops, logs, evaluates and saves.

  Each periodic job also runs at the last step, so a finished run always ends with a logged
  loss, an eval (when there are eval batches) and a checkpoint whatever the periods are.
  """

  num_train_steps: int
  log_every: int
  eval_every: int
  checkpoint_every: int
  stop_at_step: int | None = None

  def finished(self, step: int) -> bool:
    """Whether the loop is done: all steps taken, or ``stop_at_step`` (a simulated kill)."""
    if step >= self.num_train_steps:
      return True
    return self.stop_at_step is not None and step >= self.stop_at_step

  def _due(self, step: int, every: int) -> bool:
    return step % every == 0 or step == self.num_train_steps

  def log_due(self, step: int) -> bool:
    return self._due(step, self.log_every)

  def eval_due(self, step: int) -> bool:
    return self._due(step, self.eval_every)

  def save_due(self, step: int) -> bool:
    return self._due(step, self.checkpoint_every)


class _Throughput:
  """Steps and tokens per second of training time since the last report.

  Eval and checkpoint saves run inside ``paused()``, so the rates measure training alone and
  stay comparable between runs that evaluate or save at different periods.
  """

  def __init__(self) -> None:
    self.restart()

  def restart(self) -> None:
    self.t0, self.tokens, self.steps = time.time(), 0, 0

  def count(self, tokens: int) -> None:
    self.tokens += tokens
    self.steps += 1

  def rates(self) -> dict[str, float]:
    elapsed = max(time.time() - self.t0, 1e-9)
    return {"steps_per_sec": self.steps / elapsed, "tokens_per_sec": self.tokens / elapsed}

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    paused = time.time()
    yield
    self.t0 += time.time() - paused


class _RunLog:
  """Where a run's metrics go: TensorBoard (clu; or nowhere), metrics.jsonl on process 0,
  the log, and the histories that ``TrainResult`` returns, all written at the same steps."""

  def __init__(self, model_dir: str, tensorboard: bool) -> None:
    self.writer = _metric_writer(model_dir, tensorboard)
    self.path = xio.join(model_dir, "metrics.jsonl")
    self.losses: dict[int, float] = {}
    self.evals: dict[int, dict[str, float]] = {}

  def train(self, step: int, num_train_steps: int, scalars: dict[str, float]) -> None:
    self.losses[step] = scalars["loss"]
    self.writer.write_scalars(step, {f"train/{k}": v for k, v in scalars.items()})
    _append_jsonl(self.path, {"step": step, "split": "train", **scalars})
    logging.info(
      "step %d/%d loss %.4f lr %.2e | %.2f steps/s %.0f tokens/s",
      step,
      num_train_steps,
      scalars["loss"],
      scalars.get("learning_rate", float("nan")),
      scalars["steps_per_sec"],
      scalars["tokens_per_sec"],
    )

  def eval(self, step: int, result: dict[str, float]) -> None:
    self.evals[step] = result
    self.writer.write_scalars(step, {f"eval/{k}": v for k, v in result.items()})
    _append_jsonl(self.path, {"step": step, "split": "eval", **result})
    logging.info("eval step %d: %s", step, " ".join(f"{k} {v:.4f}" for k, v in result.items()))

  def flush(self) -> None:
    self.writer.flush()


@dataclasses.dataclass
class _Loop:
  """The step loop and the jobs it runs between steps (log, eval, save), one method each."""

  trainer: Trainer
  manager: ocp.CheckpointManager
  meta: dict[str, Any]
  log: _RunLog
  cadence: _Cadence
  eval_batches: BatchFactory | None
  eval_steps: int

  def run(
    self, state: PyTree, start: int, batches: Iterator[dict[str, np.ndarray]]
  ) -> tuple[PyTree, int]:
    """Steps from ``start`` until the cadence says stop; the final state and step.

    The step is counted on the host: reading it back from the state would make the host
    wait for the device at every step.
    """
    meter = _Throughput()
    step = start
    while not self.cadence.finished(step):
      host_batch = next(batches)
      tokens = self.trainer.task.count_tokens(host_batch) * jax.process_count()
      state, metrics = self.trainer.train_step(state, host_batch)
      step += 1
      meter.count(tokens)
      if self.cadence.log_due(step):
        self._log_train(step, metrics, meter)
      with meter.paused():
        self._eval_and_save(step, state)
    return state, step

  def _log_train(self, step: int, metrics: dict, meter: _Throughput) -> None:
    scalars = _scalars(metrics)
    scalars.update(meter.rates())
    self.log.train(step, self.cadence.num_train_steps, scalars)
    meter.restart()

  def _eval_and_save(self, step: int, state: PyTree) -> None:
    if self.eval_batches is not None and self.cadence.eval_due(step):
      result = evaluate(self.trainer, state["params"], self.eval_batches, self.eval_steps)
      self.log.eval(step, result)
    if self.cadence.save_due(step):
      _save_checkpoint(self.manager, step, state, self.meta)


def _save_checkpoint(
  manager: ocp.CheckpointManager, step: int, state: PyTree, meta: dict[str, Any]
) -> None:
  """The state with the run's meta beside it; ``_resume`` checks the meta before restoring."""
  manager.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave({**meta, "step": step})
    ),
  )


def _export_to_final(
  model_dir: str,
  state: PyTree,
  task: ModelTask,
  vocabulary: str | None,
  init_checkpoint: str | None,
  language_tags: bool,
) -> None:
  """The finished model as ``model_dir/final``: the format search, encode and generate load."""
  final = xio.join(model_dir, "final")
  export_final(final, state["params"], task, vocabulary, init_checkpoint, language_tags)
  logging.info("final model -> %s", final)


class _NoWriter:
  def write_scalars(self, step, scalars):
    pass

  def flush(self):
    pass


def _metric_writer(model_dir: str, tensorboard: bool):
  if not tensorboard:
    return _NoWriter()
  from clu import metric_writers  # imports TensorFlow

  return metric_writers.create_default_writer(
    model_dir, just_logging=jax.process_index() > 0, asynchronous=False
  )


def evaluate(trainer: Trainer, params, eval_batches: BatchFactory, eval_steps: int) -> dict:
  """Mean of the eval metrics over the first ``eval_steps`` held-out batches."""
  sums: dict[str, float] = {}
  it = eval_batches(0, jax.process_index(), jax.process_count())
  n = 0
  for _ in range(eval_steps):
    try:
      batch = next(it)
    except StopIteration:
      break
    for k, v in _scalars(trainer.eval_step(params, batch)).items():
      sums[k] = sums.get(k, 0.0) + v
    n += 1
  return {k: v / max(n, 1) for k, v in sums.items()}


def _append_jsonl(path: str, row: dict) -> None:
  if jax.process_index() == 0:
    with xio.open_file(path, "a") as f:
      f.write(json.dumps(row) + "\n")
