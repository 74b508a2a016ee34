"""Device mesh, t5x-style logical axis rules and the shardings of params, state and batches.

Parameters carry logical axis names (``vocab``, ``embed``, ``mlp``, ``heads``, ...); the
rules map them onto the two mesh axes: ``data`` (batch parallelism) and ``model`` (tensor
parallelism). Everything else is left to GSPMD: the mesh uses ``AxisType.Auto`` and the
step functions are plain ``jax.jit`` with ``in_shardings``/``out_shardings``.

Inference (encoding, generation, the sweep's stages) places parameters by the same rules
(``shard_params_for_inference``), so a model too large for one device is split over the
``model`` axis instead of copied to every device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import gin

PyTree = Any
AxisRules = Sequence[tuple[str, str | None]]

# t5x's standard rules for a ('data', 'model') mesh: 1D parameter partitioning over 'model'.
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
  ("batch", "data"),
  ("vocab", "model"),
  ("mlp", "model"),
  ("heads", "model"),
  ("joined_kv", "model"),
  ("embed", None),
  ("kv", None),
  ("relpos_buckets", None),
  ("length", None),
)


@gin.configurable
def logical_axis_rules(rules: AxisRules = DEFAULT_RULES) -> tuple[tuple[str, str | None], ...]:
  return tuple((str(a), b) for a, b in rules)


@gin.configurable
def maybe_initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  enabled: bool = False,
) -> None:
  """Calls ``jax.distributed.initialize`` on multi-host runs (TPU pods auto-detect args)."""
  if not enabled:
    return
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )
  logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())


def create_mesh(
  mesh_shape: Sequence[int] = (-1, 1), devices: Sequence[jax.Device] | None = None
) -> Mesh:
  """A ('data', 'model') mesh; one -1 entry takes the devices left over."""
  devices = list(jax.devices() if devices is None else devices)
  shape = list(mesh_shape)
  if len(shape) != 2:
    raise ValueError(f"mesh_shape={tuple(mesh_shape)} must have 2 entries (data, model)")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh_shape={tuple(mesh_shape)} may contain at most one -1")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if len(devices) % known:
      raise ValueError(f"mesh_shape={tuple(mesh_shape)} does not divide {len(devices)} devices")
    shape[shape.index(-1)] = len(devices) // known
  if int(np.prod(shape)) > len(devices):
    raise ValueError(f"mesh_shape={tuple(shape)} needs {np.prod(shape)} devices; {len(devices)}")
  devices = devices[: int(np.prod(shape))]
  auto = (jax.sharding.AxisType.Auto,) * 2
  return jax.make_mesh(tuple(shape), ("data", "model"), axis_types=auto, devices=devices)


def param_shardings(boxed_params, mesh: Mesh, rules: AxisRules):
  """NamedShardings for the (unboxed) params from the logical axes of boxed params."""
  specs = nn.get_partition_spec(boxed_params)
  return nn.logical_to_mesh_sharding(specs, mesh, list(rules))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dim over 'data', the rest replicated."""
  return NamedSharding(mesh, PartitionSpec("data"))


def opt_state_shardings(tx: optax.GradientTransformation, abstract_params, p_shardings, mesh):
  """Optimizer-state shardings: a state leaf shaped like its param shares the param's
  sharding; factored statistics (Adafactor's row/column) and scalars are replicated.

  Frozen parameters (``make_optimizer(freeze=...)``: ``optax.multi_transform``) have no
  state: the inner optimizer's trees hold an empty ``MaskedNode`` in their place, which is
  kept as it is (mapping over it alongside the full parameter tree is a structure error).
  """
  abstract_state = jax.eval_shape(tx.init, abstract_params)
  rep = replicated(mesh)
  masked = optax.transforms.MaskedNode

  def pick(state_leaf, param_leaf, sharding):
    if isinstance(state_leaf, masked):
      return state_leaf
    if getattr(state_leaf, "shape", None) == getattr(param_leaf, "shape", ()):
      return sharding
    return rep

  return optax.tree_map_params(
    tx,
    pick,
    abstract_state,
    abstract_params,
    p_shardings,
    transform_non_params=lambda _: rep,
    is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct | masked),
  )


def global_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This host's rows -> global arrays sharded over 'data' (multi-host safe)."""
  sharding = batch_sharding(mesh)
  data_size = mesh.shape["data"]
  out = {}
  for name, value in batch.items():
    value = np.asarray(value)
    global_rows = value.shape[0] * jax.process_count()
    if global_rows % data_size:
      raise ValueError(
        f"batch feature {name!r} has {global_rows} rows in all, not divisible by the mesh's "
        f"'data' axis of size {data_size}"
      )
    out[name] = jax.make_array_from_process_local_data(sharding, value)
  return out


# ----------------------------------------------------------------------------- inference


def inference_mesh(model_parallel: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ('data', 'model') mesh over the local devices: ``model_parallel`` devices per replica."""
  devices = list(jax.local_devices() if devices is None else devices)
  if model_parallel < 1 or len(devices) % model_parallel:
    raise ValueError(f"model_parallel={model_parallel} does not divide {len(devices)} devices")
  return create_mesh((-1, model_parallel), devices=devices)


def _fit(sharding: NamedSharding, shape: tuple[int, ...]) -> NamedSharding:
  """Replicates the dims a rule would split unevenly (e.g. XLM-R's 250,002-row vocab on 4)."""
  spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
  for i, axis in enumerate(spec):
    names = axis if isinstance(axis, tuple) else (axis,)
    size = int(np.prod([sharding.mesh.shape[a] for a in names if a is not None]))
    if axis is not None and shape[i] % size:
      spec[i] = None
  return NamedSharding(sharding.mesh, PartitionSpec(*spec[: len(shape)]))


def inference_param_shardings(
  params: PyTree,
  module: nn.Module,
  mesh: Mesh,
  rules: AxisRules = DEFAULT_RULES,
  example_inputs: Sequence[jax.Array] | None = None,
) -> PyTree:
  """NamedShardings for ``params`` from ``module``'s logical axes under ``rules``.

  The axes come from an abstract ``module.init`` (no parameter is materialised); a
  parameter the module does not declare (an extra checkpoint entry) is replicated.
  ``example_inputs`` are ``init``'s arguments (default: one ``[1, 8]`` id batch; an
  encoder-decoder takes two).
  """
  from flax import traverse_util  # noqa: PLC0415

  inputs = tuple(example_inputs) if example_inputs is not None else (np.ones((1, 8), np.int32),)
  boxed = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs)["params"])
  declared = traverse_util.flatten_dict(param_shardings(boxed, mesh, rules))
  rep = replicated(mesh)
  flat = traverse_util.flatten_dict(nn.meta.unbox(params))
  out = {k: _fit(declared.get(k, rep), tuple(np.shape(v))) for k, v in flat.items()}
  return traverse_util.unflatten_dict(out)


def shard_params_for_inference(
  params: PyTree,
  module: nn.Module,
  mesh: Mesh,
  rules: AxisRules = DEFAULT_RULES,
  example_inputs: Sequence[jax.Array] | None = None,
) -> PyTree:
  """``params`` placed on ``mesh`` by the training rules (``inference_param_shardings``).

  Jit the model with ``in_shardings=(jax.tree.map(lambda a: a.sharding, params), ...)``
  or let jit take the arrays' shardings.
  """
  from flax import traverse_util  # noqa: PLC0415

  shardings = inference_param_shardings(params, module, mesh, rules, example_inputs)
  flat, where = (
    traverse_util.flatten_dict(nn.meta.unbox(params)),
    traverse_util.flatten_dict(shardings),
  )
  return traverse_util.unflatten_dict({k: jax.device_put(v, where[k]) for k, v in flat.items()})


def param_bytes_per_device(params: PyTree) -> dict[jax.Device, int]:
  """Bytes of ``params`` each device holds (its addressable shards)."""
  out: dict[jax.Device, int] = {}
  for leaf in jax.tree.leaves(params):
    for shard in leaf.addressable_shards:
      out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
  return out
