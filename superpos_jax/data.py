"""Synthetic sparse features (Elhage et al. 2022, §2) and the data families.

Each feature is U[0,1) with probability `density = 1 - S` and exactly 0 otherwise. Every
family turns the SAME uniforms `u [n, ...]` (features on axis 0) into features, one
uniform per feature, so that a seed's draw is shared by all its models whatever their
density (common random numbers) and the draw's shape does not depend on the family.

The frequency families of Liu, Liu & Gore 2025 (`power_law`, `exponential_law`,
`linear_law`) give feature i its own probability p_i (summing to 1) and values U(0, 2)
(a family's `scale`); their one parameter rides on the density axis (`power_law`:
`density = 1/(1+a)` for `p_i ∝ i^-a`, `exponent_density`), so it is swept like a density.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from superpos_jax import families


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


# A family maps `(u [n, ...], density)` to `(present [n, ...] bool, value [n, ...] in [0,1))`.
DataFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def independent(u: jax.Array, density: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Each feature present with probability p, value `u / p` (`thin`'s one-number trick)."""
  return u < density, u / density


def _pairs(u: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Rows `2k` and `2k+1` of `u [n, ...]`, each `[n/2, ...]`."""
  pairs = u.reshape((u.shape[0] // 2, 2) + u.shape[1:])
  return pairs[:, 0], pairs[:, 1]


def _interleave(a: jax.Array, b: jax.Array) -> jax.Array:
  """Inverse of `_pairs`: `[n/2, ...]` twice -> `[n, ...]`, a on even rows."""
  return jnp.stack([a, b], axis=1).reshape((2 * a.shape[0],) + a.shape[1:])


def correlated(u: jax.Array, density: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Pairs `(2k, 2k+1)` both present iff `c < p`, with `c = u[2k]` (one draw per pair).

  Values: `c / p` for feature 2k (uniform given `c < p`) and `w = u[2k+1]` for 2k+1:
  independent U[0,1), and no more uniforms than the independent family.
  """
  c, w = _pairs(u)
  on = c < density
  return _interleave(on, on), _interleave(c / density, w)


def anticorrelated(u: jax.Array, density: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Pairs never both present, each with probability `p <= 1/2` (SCIENCE.md).

  With `u = u[2k]`, `v = u[2k+1]`: 2k present iff `u < p`, 2k+1 iff `u >= p` and
  `v < q = p/(1-p)`, so P(2k+1) = (1-p) q = p. Values `u / p` and `v / q` are uniform
  given presence (and never needed together).
  """
  a, v = _pairs(u)
  q = density / (1.0 - density)
  return _interleave(a < density, (a >= density) & (v < q)), _interleave(a / density, v / q)


def _per_feature(p: jax.Array, u: jax.Array) -> jax.Array:
  """`p [n]` shaped to broadcast against `u [n, ...]` (features on axis 0)."""
  return p.reshape(p.shape + (1,) * (u.ndim - 1))


def exponent_density(a: float) -> float:
  """The density that carries frequency exponent `a` (`p_i ∝ i^-a`) to `power_law`:
  `1 / (1 + a)`, so that a >= 0 fits the density axis (0, 1]."""
  return 1.0 / (1.0 + a)


def density_exponent(density):
  """`power_law`'s frequency exponent `a = 1/density - 1` (inverse of `exponent_density`)."""
  return 1.0 / density - 1.0


def power_law_frequencies(n: int, density: jax.Array) -> jax.Array:
  """`p_i ∝ i^-a`, i = 1..n, summing to 1, with `a = density_exponent(density)`
  (Liu, Liu & Gore 2025: their code's `1 + alpha`, their figures' data exponent α)."""
  p = jnp.arange(1, n + 1, dtype=jnp.float32) ** -density_exponent(density)
  return p / jnp.sum(p)


def exponential_frequencies(n: int, density: jax.Array) -> jax.Array:
  """`p_i ∝ exp(-i / (density · n))`, i = 0..n-1, summing to 1: the density is the decay
  length as a fraction of n (their exp-17: 1000 and 400 of n = 10240, ~0.1 and ~0.04)."""
  p = jnp.exp(-jnp.arange(n, dtype=jnp.float32) / (density * n))
  return p / jnp.sum(p)


def linear_frequencies(n: int, density: jax.Array) -> jax.Array:
  """`p_i ∝ (n - i) / n`, i = 0..n-1, summing to 1 (their exp-17); the density is unused."""
  del density
  p = (n - jnp.arange(n, dtype=jnp.float32)) / n
  return p / jnp.sum(p)


def frequency_family(frequencies: Callable[[int, jax.Array], jax.Array]) -> DataFn:
  """A data family where feature i is present with probability `frequencies(n, density)[i]`
  (independently), its value uniform: one uniform per feature, as `independent`."""
  def fn(u: jax.Array, density: jax.Array) -> tuple[jax.Array, jax.Array]:
    p = _per_feature(frequencies(u.shape[0], density), u)
    return u < p, u / p
  fn.__doc__ = f"Features present with the probabilities of `{frequencies.__name__}`."
  return fn


def register_data(name: str, fn: DataFn, description: str, *, pairs: bool = False,
                  max_density: float = 1.0, scale: float = 1.0, version: str | None = None,
                  overwrite: bool = False) -> families.DataFamily:
  """Adds a data family; its name then works in `SweepSpec(data=...)`, `--data`, result
  metadata and plots.

  Args:
    name: lower-case identifier.
    fn: `fn(u [n, ...], density) -> (present, value)`, both of `u`'s shape: which
      features are present (bool) and their values in [0, 1), from ONE uniform per
      feature (`u`, features on axis 0), so that models of a seed share the draw.
    description: one line for `--help` and result metadata.
    pairs: features come in pairs `(2k, 2k+1)` (n must be even).
    max_density: the largest density the family can produce, in (0, 1].
    scale: a present feature's value is `scale · value`, uniform in [0, scale).
    version: a label of what the code digest cannot see (data read from a file, a C
      library); changing it changes the identity of results trained with the family.
    overwrite: replace a family of the same name (never reusing a program or a cached
      result of the old one).

  Returns:
    The registered `families.DataFamily`.
  """
  if not callable(fn):
    raise families.RegistryError(f"data family {name!r}: expected a function, got {fn!r}")
  if (isinstance(max_density, bool) or not isinstance(max_density, (int, float))
      or not 0 < max_density <= 1):
    raise families.RegistryError(f"data family {name!r}: max_density must be a number in "
                                 f"(0, 1], got {max_density!r}")
  if isinstance(scale, bool) or not (isinstance(scale, (int, float)) and 0 < scale < float("inf")):
    raise families.RegistryError(f"data family {name!r}: scale must be a positive number, got {scale!r}")
  return families.add("data", families.DataFamily(name, description, fn, pairs=pairs,
                                                  max_density=float(max_density),
                                                  scale=float(scale), version=version),
                      overwrite=overwrite)


register_data("independent", independent, "each feature present with probability p, value U[0,1)")
register_data("correlated", correlated, "pairs (2k, 2k+1) present together with probability p",
              pairs=True)
register_data("anticorrelated", anticorrelated,
              "pairs (2k, 2k+1) never together, each present with probability p <= 1/2",
              pairs=True, max_density=0.5)
# Liu, Liu & Gore 2025 ("Superposition Yields Robust Neural Scaling"): x_i = u_i v_i with
# u_i ~ Bernoulli(p_i), v_i ~ U(0, 2), p summing to 1 (one feature present per example on
# average). The density axis carries each law's parameter (`exponent_density`).
register_data("power_law", frequency_family(power_law_frequencies),
              "Liu et al.: p_i ∝ i^-a summing to 1, value U(0, 2); density = 1/(1+a) "
              "carries the exponent a", scale=2.0)
register_data("power_law_unit", frequency_family(power_law_frequencies),
              "power_law with values U(0, 1) (the study's range, which sigmoid and tanh can "
              "reach); density = 1/(1+a)")
register_data("exponential_law", frequency_family(exponential_frequencies),
              "Liu et al.: p_i ∝ exp(-i/(density·n)) summing to 1, value U(0, 2)", scale=2.0)
register_data("linear_law", frequency_family(linear_frequencies),
              "Liu et al.: p_i ∝ (n-i)/n summing to 1, value U(0, 2); density unused", scale=2.0)


def features(family: str, u: jax.Array, density: jax.Array, *, signed: bool = False) -> jax.Array:
  """Features of data family `family` from uniforms `u [n, ...]`.

  Args:
    family: a registered data family (`register_data`).
    u: uniforms in [0, 1), features on axis 0 (n even for the pair families).
    density: probability that a feature is present.
    signed: values `2v - 1` in [-1, 1) instead of `v` (the `abs` model's inputs);
      absent features stay exactly 0.

  Returns:
    Features of `u`'s shape, times the family's `scale`; `independent` unsigned equals
    `thin(u, density)` bit for bit.
  """
  entry = families.get("data", family)
  present, value = entry.fn(u, density)
  value = 2.0 * value - 1.0 if signed else value
  return jnp.where(present, value if entry.scale == 1.0 else entry.scale * value, 0.0)
