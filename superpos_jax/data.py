"""Synthetic sparse features and importance vectors (Elhage et al. 2022, §2).

Each feature is U[0,1) with probability `density = 1 - S` and exactly 0 otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def thin(u: jax.Array, density: jax.Array) -> jax.Array:
  """Turns uniforms into sparse features with ONE random number per feature.

  With `u ~ U[0,1)`, `u < density` has probability `density`, and given that event
  `u / density ~ U[0,1)`: the result has exactly the study's distribution. Drawing one
  number instead of two (a Bernoulli and a uniform) halves the random numbers, and lets
  many densities share the same draws.

  Args:
    u: uniforms in [0, 1), any shape.
    density: probability that a feature is present, in (0, 1]; broadcastable to `u`.

  Returns:
    Features of `u`'s shape.
  """
  return jnp.where(u < density, u / density, 0.0)


def sample_features(key: jax.Array, n: int, density: jax.Array) -> jax.Array:
  """One example `x: [n]` of sparse uniform features."""
  return thin(jax.random.uniform(key, (n,)), density)
