"""Initialisation families of `W` (pure Python: the names and their standard deviations).

Every family draws `W [m, n]` from an *untruncated* normal with the std given here, and
the bias starts at 0; the init scale α (a grid axis) multiplies the draw. PyTorch's `xavier_normal_` is untruncated too, while
`jax.nn.initializers.glorot_normal` truncates; `model.init_params` does the drawing.
"""

from __future__ import annotations

import math
from typing import Callable


def xavier_normal_std(n: int, m: int, instances: int) -> float:
  """Per-model Glorot std `sqrt(2/(n+m))` (the principled default)."""
  del instances
  return math.sqrt(2.0 / (n + m))


def notebook_std(n: int, m: int, instances: int) -> float:
  """What the public TMS notebook gets by applying PyTorch's `xavier_normal_` to one
  `(instances, n, m)` tensor: `sqrt(2/(m*(n+instances)))`."""
  return math.sqrt(2.0 / (m * (n + instances)))


def normal_std(n: int, m: int, instances: int) -> float:
  """Plain `N(0, σ²)` with `σ² = 1/m` (Lecomte et al., incidental polysemanticity); another
  σ is this one times the init scale α, a grid axis."""
  del n, instances
  return math.sqrt(1.0 / m)


# name -> std(n, m, instances); the one list of init names (specs, CLI choices, docs).
INIT_STDS: dict[str, Callable[[int, int, int], float]] = {
    "xavier_normal": xavier_normal_std,
    "notebook": notebook_std,
    "normal": normal_std,
}
INITS = tuple(INIT_STDS)


def init_std(n: int, m: int, init: str = "xavier_normal", instances: int = 20) -> float:
  """Standard deviation of the normal that initialises `W [m, n]` for family `init`."""
  try:
    return INIT_STDS[init](n, m, instances)
  except KeyError:
    raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}") from None
