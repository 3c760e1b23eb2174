"""The toy model `x' = f(Wᵀ W x + b)` (Elhage et al. 2022), one example at a time."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from superpos_jax.activations import ActivationFn
from superpos_jax.inits import init_std


class Params(NamedTuple):
  W: jax.Array  # [m, n]; column i is feature i's direction in the hidden space
  b: jax.Array  # [n]


def init_params(key: jax.Array, n: int, m: int, *, init: str = "xavier_normal",
                instances: int = 20) -> Params:
  """Normal init of `W [m, n]` with `inits.init_std`, zero bias.

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
