"""Paired significance between two systems on the same queries.

The xQG paper reports a paired t-test on per-query scores; a seeded paired bootstrap gives a
confidence interval of the mean difference that does not assume normality.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class PairedComparison:
  n: int
  mean_a: float
  mean_b: float
  diff: float  # mean(a - b)
  t_statistic: float
  p_value: float
  ci_low: float
  ci_high: float
  confidence: float


def paired_arrays(
  a: Mapping[str, float], b: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Aligns two {qid: score} maps; they must cover the same queries."""
  only_a, only_b = a.keys() - b.keys(), b.keys() - a.keys()
  if only_a or only_b:
    raise ValueError(
      f"paired test needs the same queries: {len(only_a)} only in the first "
      f"(e.g. {sorted(only_a)[:3]}), {len(only_b)} only in the second (e.g. {sorted(only_b)[:3]})"
    )
  qids = sorted(a)
  return np.array([a[q] for q in qids]), np.array([b[q] for q in qids]), qids


def paired_t_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
  """(t, two-sided p) of scipy's paired t-test; identical score lists give (0, 1)."""
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f"paired scores must be 1-d of equal shape, got {a.shape} and {b.shape}")
  if a.size < 2:
    raise ValueError(f"paired t-test needs at least 2 queries, got {a.size}")
  d = a - b
  if np.all(d == d[0]):
    # scipy returns nan when the differences have no variance.
    return (0.0, 1.0) if d[0] == 0 else (math.copysign(math.inf, d[0]), 0.0)
  res = stats.ttest_rel(a, b)
  return float(res.statistic), float(res.pvalue)


def paired_bootstrap_ci(
  a: np.ndarray,
  b: np.ndarray,
  *,
  num_samples: int = 10_000,
  confidence: float = 0.95,
  seed: int = 0,
) -> tuple[float, float]:
  """Percentile bootstrap CI of mean(a - b), resampling queries with replacement."""
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, d.size, size=(num_samples, d.size))
  means = d[idx].mean(axis=1)
  alpha = (1 - confidence) / 2
  low, high = np.quantile(means, [alpha, 1 - alpha])
  return float(low), float(high)


def compare(
  a: Mapping[str, float],
  b: Mapping[str, float],
  *,
  num_samples: int = 10_000,
  confidence: float = 0.95,
  seed: int = 0,
) -> PairedComparison:
  xa, xb, _ = paired_arrays(a, b)
  t, p = paired_t_test(xa, xb)
  low, high = paired_bootstrap_ci(xa, xb, num_samples=num_samples, confidence=confidence, seed=seed)
  return PairedComparison(
    n=int(xa.size),
    mean_a=float(xa.mean()),
    mean_b=float(xb.mean()),
    diff=float((xa - xb).mean()),
    t_statistic=t,
    p_value=p,
    ci_low=low,
    ci_high=high,
    confidence=confidence,
  )


def macro_bootstrap_ci(
  groups: list[np.ndarray],
  *,
  num_samples: int = 10_000,
  confidence: float = 0.95,
  seed: int = 0,
) -> tuple[float, float]:
  """Percentile bootstrap CI of the macro mean (the mean over groups of each group's mean).

  Queries are resampled within their group (language), so every resample keeps each
  language's size, as the macro average the tables report is defined. Passing per-query
  differences of two systems gives the paired interval of their macro difference.
  """
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  if not groups or any(np.asarray(g).size == 0 for g in groups):
    raise ValueError("macro bootstrap needs at least one group, none of them empty")
  rng = np.random.default_rng(seed)
  means = np.zeros(num_samples)
  for g in groups:
    g = np.asarray(g, np.float64)
    means += g[rng.integers(0, g.size, size=(num_samples, g.size))].mean(axis=1)
  means /= len(groups)
  alpha = (1 - confidence) / 2
  low, high = np.quantile(means, [alpha, 1 - alpha])
  return float(low), float(high)
