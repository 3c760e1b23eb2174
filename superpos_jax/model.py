"""The toy model `x' = f(Wᵀ W x + b)` (Elhage et al. 2022), one example at a time."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from superpos_jax.activations import ActivationFn

INITS = ("xavier_normal", "notebook")


class Params(NamedTuple):
  W: jax.Array  # [m, n]; column i is feature i's direction in the hidden space
  b: jax.Array  # [n]


def init_std(n: int, m: int, init: str = "xavier_normal", instances: int = 20) -> float:
  """Standard deviation of the (untruncated) normal that initialises `W`.

  Args:
    n: features.
    m: hidden dimensions.
    init: "xavier_normal" for the per-model Glorot std `sqrt(2/(n+m))`; "notebook" for
      what the public TMS notebook gets by applying PyTorch's `xavier_normal_` to one
      `(instances, n, m)` tensor, `sqrt(2/(m*(n+instances)))`.
    instances: the notebook's instance count (only for "notebook").
  """
  if init == "xavier_normal":
    return (2.0 / (n + m)) ** 0.5
  if init == "notebook":
    return (2.0 / (m * (n + instances))) ** 0.5
  raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")


def init_params(key: jax.Array, n: int, m: int, *, init: str = "xavier_normal",
                instances: int = 20) -> Params:
  """Normal init of `W [m, n]` with `init_std`, zero bias.

  Uses `jax.nn.initializers.variance_scaling` with the *untruncated* normal, as PyTorch's
  `xavier_normal_` does (`jax.nn.initializers.glorot_normal` truncates).
  """
  std = init_std(n, m, init, instances)
  # variance_scaling's fan_avg variance is scale * 2 / (n + m); pick scale to hit `std`.
  scale = std**2 * (n + m) / 2.0
  w_init = jax.nn.initializers.variance_scaling(scale, "fan_avg", "normal", in_axis=1, out_axis=0)
  return Params(W=w_init(key, (m, n), jnp.float32), b=jnp.zeros((n,), jnp.float32))


def forward(params: Params, x: jax.Array, act: ActivationFn) -> jax.Array:
  """Reconstruction `x' = f(Wᵀ W x + b)` of one example `x: [n]`."""
  h = params.W @ x  # [m]
  return act(params.W.T @ h + params.b)
