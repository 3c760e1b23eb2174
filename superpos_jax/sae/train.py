"""One sparse autoencoder (SAE) on one toy model's hidden activations, top to bottom.

The recipe is Bricken et al. 2023 ("Towards Monosemanticity"), on the toy ground truth
of Sharkey, Braun & Millidge 2022 (SCIENCE.md, "SAE feature recovery"):

  codes           c = ReLU(W_e (h − b_d) + b_e)          [k]
  reconstruction  ĥ = W_d c + b_d                         [m]
  loss            ‖h − ĥ‖² + λ ‖c‖₁, averaged over the batch; Adam
  decoder         columns of W_d at unit norm: the gradient component parallel to each
                  column is removed before Adam's update, and the columns are
                  renormalised after every step

Initialisation (which the recipe leaves open for toy data): the columns of W_d are
normal draws scaled to unit norm, `W_e = W_dᵀ`, `b_e = b_d = 0`.

In the bottleneck toy model `h = W x`, so feature i's true direction in hidden space is
`W_i / ‖W_i‖`. `max_cosine` measures how well a dictionary recovers it.

    trainer = make_train(spec, n=10, m=5, k=20)
    out = trainer.train(init_key, data_key, W, density, l1)

`make_train` reads only the static settings of `spec` (steps, batch size, lr, log window,
evaluation size) and returns pure functions of one SAE's swept values (its init key, the
toy model's W, density and data key, λ). The SAE stage (`sae_sweep.py`) vmaps them over
the SAE grid and every toy model of a result, as `sweep.py` does with `train.py`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from superpos_jax import data
from superpos_jax.sae.spec import SAESpec
from superpos_jax.train import draw_uniforms, scan_steps

# Seed of the SAE evaluation set (one set of uniforms for every SAE; each toy model
# thins it with its own density), distinct from the toy models' `train.EVAL_SEED`.
SAE_EVAL_SEED = 2**31 - 2
# Folded into a toy seed's key for the SAE's training data, so that it is fresh data of
# the toy model's distribution, not the batches the toy model itself was trained on
# (those come from `fold_in(key(seed), 1)`, see `sweep.point_keys`).
SAE_DATA_STREAM = 0x5AE
# Every latent dead: the max cosine of a feature is this (no live latent to match it).
NO_LATENT = -1.0


class SAEParams(NamedTuple):
  W_e: jax.Array  # [k, m] encoder
  b_e: jax.Array  # [k]
  W_d: jax.Array  # [m, k] decoder, unit-norm columns (the dictionary)
  b_d: jax.Array  # [m]


class SAEState(NamedTuple):
  params: SAEParams
  opt_state: optax.OptState


class SAEMetrics(NamedTuple):
  """One SAE on the evaluation set (`SAE_EVAL_SEED`, thinned by the toy's density)."""

  eval_loss: jax.Array  # [] ‖h − ĥ‖² + λ‖c‖₁, batch mean
  reconstruction_error: jax.Array  # [] Σ‖h − ĥ‖² / Σ‖h‖² (0 where every h is 0)
  l0: jax.Array  # [] mean number of active latents per example
  frequency: jax.Array  # [k] fraction of examples where latent j is active (0: dead)
  max_cosine: jax.Array  # [n] max over live latents j of cos(W_i, d_j)
  # What SAELens's detection and variance metrics need (`sae_metrics`):
  coactivation: jax.Array  # [k, n] fraction of examples: latent j active and x_i > 0
  feature_frequency: jax.Array  # [n] fraction of examples where x_i > 0
  mse: jax.Array  # [] mean over examples of ‖h − ĥ‖²
  hidden_variance: jax.Array  # [] mean over examples of ‖h − mean(h)‖²


class SAEOutput(NamedTuple):
  params: SAEParams
  loss_history: jax.Array  # [T] mean training loss of each log window
  metrics: SAEMetrics


def unit_columns(W: jax.Array) -> jax.Array:
  """Columns of `W [m, k]` scaled to unit norm (a zero column stays 0)."""
  norms = jnp.sqrt(jnp.sum(W * W, axis=0, keepdims=True))
  return jnp.where(norms > 0, W / jnp.where(norms > 0, norms, 1.0), 0.0)


def remove_parallel(W_d: jax.Array, grad: jax.Array) -> jax.Array:
  """`grad [m, k]` less its component along each unit column of `W_d` (Bricken et al.):
  the step then moves a column only within the sphere's tangent plane."""
  return grad - W_d * jnp.sum(W_d * grad, axis=0, keepdims=True)


def init_params(key: jax.Array, m: int, k: int) -> SAEParams:
  """Unit-norm normal dictionary `W_d [m, k]`, `W_e = W_dᵀ`, zero biases."""
  W_d = unit_columns(jax.random.normal(key, (m, k), jnp.float32))
  return SAEParams(W_e=W_d.T, b_e=jnp.zeros((k,), jnp.float32), W_d=W_d,
                   b_d=jnp.zeros((m,), jnp.float32))


def encode(params: SAEParams, h: jax.Array) -> jax.Array:
  """Codes `c = ReLU(W_e (h − b_d) + b_e)` of examples stored as columns `h [m, B]`: `[k, B]`."""
  return jax.nn.relu(params.W_e @ (h - params.b_d[:, None]) + params.b_e[:, None])


def decode(params: SAEParams, c: jax.Array) -> jax.Array:
  """`ĥ = W_d c + b_d`: `[k, B] -> [m, B]`."""
  return params.W_d @ c + params.b_d[:, None]


def loss_fn(params: SAEParams, h: jax.Array, l1: jax.Array) -> jax.Array:
  """`‖h − ĥ‖² + λ‖c‖₁` averaged over the columns of `h [m, B]` (codes are ≥ 0, so
  ‖c‖₁ is their sum)."""
  c = encode(params, h)
  err = h - decode(params, c)
  return (jnp.vdot(err, err) + l1 * jnp.sum(c)) / h.shape[1]


def hidden(W: jax.Array, u: jax.Array, density: jax.Array, family: str = "independent") -> jax.Array:
  """The bottleneck model's hidden activations `h = W x [m, B]` of the features that
  `data.features(family, u [n, B], density)` makes: the toy model's own distribution."""
  return W @ data.features(family, u, density)


def data_key(toy_seed: jax.Array, density: jax.Array) -> jax.Array:
  """The SAE's training-data key of a toy model: its seed and density only, so every
  SAE of a toy model, and toy models of every activation at the same (seed, density),
  see the same data (common random numbers)."""
  base = jax.random.fold_in(jax.random.key(toy_seed), SAE_DATA_STREAM)
  bits = jax.lax.bitcast_convert_type(jnp.asarray(density, jnp.float32), jnp.uint32)
  return jax.random.fold_in(base, bits)


def init_key(sae_seed: jax.Array, k: int) -> jax.Array:
  """The initial dictionary's key: the SAE seed and the dictionary size only."""
  return jax.random.fold_in(jax.random.key(sae_seed), k)


def max_cosine(W: jax.Array, W_d: jax.Array, alive: jax.Array) -> jax.Array:
  """Per true feature i, `max_j cos(W_i, d_j)` over the live latents j: `[n]`.

  The mean over features is the MMCS (Sharkey et al. 2022). Dead latents are left out:
  a unit column that never fires carries no feature, and in few hidden dimensions a
  random one can lie close to a feature by chance. The cosine is signed (codes are
  ≥ 0, so a latent along −W_i does not read feature i).

  Args:
    W: the toy model's `[m, n]`; column i is feature i (a zero column gives 0).
    W_d: the dictionary `[m, k]`, any column norms.
    alive: `[k]` bool, latents active on the evaluation set.

  Returns:
    `[n]` in [−1, 1]; `NO_LATENT` (−1) where no latent is alive.
  """
  cos = unit_columns(W).T @ unit_columns(W_d)  # [n, k]
  return jnp.max(jnp.where(alive[None, :], cos, NO_LATENT), axis=1)


def metrics(params: SAEParams, x: jax.Array, W: jax.Array, l1: jax.Array) -> SAEMetrics:
  """`SAEMetrics` of one SAE on the features `x [n, E]` of the toy model `W [m, n]`
  (its examples are `h = W x`)."""
  h = W @ x  # [m, E]
  c = encode(params, h)  # [k, E]
  err = h - decode(params, c)
  sq_err, sq_h = jnp.vdot(err, err), jnp.vdot(h, h)
  active = c > 0
  frequency = jnp.mean(active, axis=1)
  E = h.shape[1]
  present = (x > 0).astype(jnp.float32)
  centred = h - jnp.mean(h, axis=1, keepdims=True)  # two passes: no cancellation
  return SAEMetrics(
      eval_loss=(sq_err + l1 * jnp.sum(c)) / E,
      reconstruction_error=jnp.where(sq_h > 0, sq_err / jnp.where(sq_h > 0, sq_h, 1.0), 0.0),
      l0=jnp.sum(active) / E,
      frequency=frequency,
      max_cosine=max_cosine(W, params.W_d, frequency > 0),
      coactivation=active.astype(jnp.float32) @ present.T / E,
      feature_frequency=jnp.mean(present, axis=1),
      mse=sq_err / E,
      hidden_variance=jnp.vdot(centred, centred) / E)


class SAETrainer(NamedTuple):
  """The pieces of one SAE's training (pure, jittable; vmap any argument).

  `train` is `fit(init(init_key), ...)`; the SAE stage vmaps `init`, `step` and
  `metrics` itself so that one toy model's batch `h` is computed once for its whole
  SAE grid.
  """

  init: Callable[[jax.Array], SAEState]
  step: Callable[..., tuple[SAEState, jax.Array]]
  eval_features: Callable[[jax.Array], jax.Array]
  fit: Callable[..., SAEOutput]
  train: Callable[..., SAEOutput]


def make_train(spec: SAESpec, n: int, m: int, k: int, *, family: str = "independent",
               on_window: Callable[[jax.Array], None] | None = None) -> SAETrainer:
  """Builds the training of one SAE with `spec`'s static settings.

  Args:
    spec: its steps, batch_size, lr, log_every and eval_size are read.
    n, m: the toy model's features and hidden dimensions.
    k: latents (the dictionary size, a multiple of n in the SAE stage).
    family: the toy model's data family (`data.DATA`).
    on_window: called with the window index after every full log window, inside the
      compiled program (progress).

  Returns:
    An `SAETrainer`; its `train(init_key, data_key, W [m, n], density, l1) -> SAEOutput`
    is the whole training of one SAE on the toy model W.
  """
  B = spec.batch_size
  opt = optax.adam(spec.lr)

  def init(key: jax.Array) -> SAEState:
    params = init_params(key, m, k)
    return SAEState(params, opt.init(params))

  def step(state: SAEState, h: jax.Array, l1) -> tuple[SAEState, jax.Array]:
    """One Adam step on the batch `h [m, B]`, the decoder kept at unit-norm columns."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, h, l1)
    grads = grads._replace(W_d=remove_parallel(state.params.W_d, grads.W_d))
    updates, opt_state = opt.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return SAEState(params._replace(W_d=unit_columns(params.W_d)), opt_state), loss

  def eval_features(density) -> jax.Array:
    """`x [n, E]` of the evaluation set, thinned by the toy model's density."""
    u = jax.random.uniform(jax.random.key(SAE_EVAL_SEED), (n, spec.eval_size))
    return data.features(family, u, density)

  def fit(state: SAEState, key: jax.Array, W: jax.Array, density, l1) -> SAEOutput:
    """Every step from `state` on fresh batches of `W`'s data, then the metrics."""
    def advance(state, ts):
      u = draw_uniforms(key, ts, n, B)  # [g, n, B]
      hs = jax.vmap(hidden, (None, 0, None, None))(W, u, density, family)
      return jax.lax.scan(lambda st, h: step(st, h, l1), state, hs)

    state, history = scan_steps(spec, advance, state, step_bytes=4 * n * B, on_window=on_window)
    return SAEOutput(state.params, history, metrics(state.params, eval_features(density), W, l1))

  def train(init_key_, data_key_, W, density, l1) -> SAEOutput:
    return fit(init(init_key_), data_key_, W, density, l1)

  return SAETrainer(init, step, eval_features, fit, train)
