"""Registration helper: replace-on-register so ``register_all()`` can be called again."""

from __future__ import annotations

import seqio


def add_task(name: str, **kwargs) -> seqio.Task:
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(name, **kwargs)


def add_mixture(name: str, tasks, default_rate=1.0) -> seqio.Mixture:
  seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, tasks, default_rate=default_rate)
