"""Superposition metrics of one model's `W: [m, n]` (Elhage et al. 2022).

Pure jax, one model at a time; vmap over grid axes. Column `W_i = W[:, i]` is feature i.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from superpos_jax.phases import AMBIGUOUS, BOTH, DEFAULT_THRESHOLDS, FEATURE1, FEATURE2, NEITHER, PhaseThresholds

# Below this norm a feature counts as unlearned: its direction Ŵ_i is undefined.
_DEAD_NORM = 1e-6


def gram(W: jax.Array) -> jax.Array:
  """`WᵀW: [n, n]`; diagonal = squared feature norms, off-diagonal = interference."""
  return W.T @ W


def feature_norms(W: jax.Array) -> jax.Array:
  """`‖W_i‖: [n]`."""
  return jnp.sqrt(jnp.sum(W * W, axis=0))


def _unit_columns(W: jax.Array) -> jax.Array:
  """`Ŵ_i = W_i / ‖W_i‖`, and 0 for dead features (not NaN)."""
  norms = feature_norms(W)[None, :]
  safe = jnp.where(norms > _DEAD_NORM, norms, 1.0)
  return jnp.where(norms > _DEAD_NORM, W / safe, 0.0)


def _projections_sq(W: jax.Array) -> jax.Array:
  """`[i, j] = (Ŵ_i · W_j)²: [n, n]`."""
  proj = _unit_columns(W).T @ W
  return proj * proj


def superposition(W: jax.Array) -> jax.Array:
  """`Σ_{j≠i} (Ŵ_i·W_j)²: [n]`, how much other features interfere with feature i."""
  p = _projections_sq(W)
  return jnp.sum(p, axis=1) - jnp.diagonal(p)


def feature_dimensionality(W: jax.Array) -> jax.Array:
  """`D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²: [n]` (sum includes j = i; Elhage et al. §6).

  1 for a feature with a dimension to itself, 1/2 for an antipodal pair, 0 (not NaN)
  for an unlearned feature.
  """
  denom = jnp.sum(_projections_sq(W), axis=1)
  norms_sq = jnp.sum(W * W, axis=0)
  alive = feature_norms(W) > _DEAD_NORM
  return jnp.where(alive, norms_sq / jnp.where(alive, denom, 1.0), 0.0)


def dims_per_feature(W: jax.Array) -> jax.Array:
  """`D* = m / ‖W‖_F²` (Elhage et al. §6): hidden dimensions per embedded feature.

  Assumes embedded features have `‖W_i‖ ≈ 1`; activations whose weights grow larger
  (sigmoid, SoLU) give a D* that is no longer "features per dimension".
  """
  m = W.shape[0]
  return m / jnp.sum(W * W)


def classify_phase(W: jax.Array, thresholds: PhaseThresholds = DEFAULT_THRESHOLDS) -> jax.Array:
  """Phase index (into `phases.PHASES`) of an n=2 model `W: [m, 2]`."""
  norms = feature_norms(W)
  on = norms > thresholds.encoded
  off = norms < thresholds.not_encoded
  cls = jnp.select(
      [on[0] & on[1], on[0] & off[1], off[0] & on[1], off[0] & off[1]],
      [BOTH, FEATURE1, FEATURE2, NEITHER],
      default=AMBIGUOUS)
  return cls.astype(jnp.int32)
