"""The importance kinds of the importance axis: each maps `(n, r)` to the `[n]` weights of
the loss's features (numpy only)."""

from __future__ import annotations

import numpy as np


def geometric_importance(n: int, r: float) -> np.ndarray:
  """`I_i = r**i`, i = 0..n-1 (the n=10 experiments use r = 0.7)."""
  return np.asarray(r, np.float64) ** np.arange(n)


def relative_importance(n: int, r: float) -> np.ndarray:
  """First feature importance 1, every other feature `r` (the n=2 phase diagram)."""
  return np.concatenate([[1.0], np.full(n - 1, r, np.float64)])


def uniform_importance(n: int, r: float = 1.0) -> np.ndarray:
  """`I_i = 1` for all features; `r` must be 1 (it is only the axis label)."""
  if r != 1.0:
    raise ValueError(f"uniform importance takes no parameter, got {r}")
  return np.ones(n)


IMPORTANCE_KINDS = {
    "geometric": geometric_importance,
    "relative": relative_importance,
    "uniform": uniform_importance,
}
