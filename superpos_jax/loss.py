"""Importance-weighted reconstruction loss.

Convention: the loss of one example is `Σ_i I_i (x_i - x'_i)²` (summed over features, as
in SCIENCE.md and the blog), and a batch loss is its mean over examples. TMS also divides
by n; with Adam(W) that constant factor does not change the updates (up to Adam's eps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from superpos_jax.activations import ActivationFn
from superpos_jax.model import Params, forward


def example_loss(params: Params, x: jax.Array, importance: jax.Array, act: ActivationFn) -> jax.Array:
  """`Σ_i I_i (x_i - x'_i)²` for one example `x: [n]`, importance `[n]`."""
  err = x - forward(params, x, act)
  return jnp.sum(importance * err * err)


def loss_fn(params: Params, xs: jax.Array, importance: jax.Array, act: ActivationFn) -> jax.Array:
  """Mean of `example_loss` over a batch `xs: [B, n]`."""
  per_example = jax.vmap(lambda x: example_loss(params, x, importance, act))(xs)
  return jnp.mean(per_example)
