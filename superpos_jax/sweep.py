"""The sweep engine: a whole grid of toy models trained in ONE compiled XLA program.

    spec = SweepSpec(n=10, m=5, densities=(1.0, 0.1, 0.01), seeds=(0, 1, 2))
    result = run(spec)                      # results.SweepResult
    result.sel(activation="relu", density=0.1)["W"]   # [I, L, S, m, n]

The grid is activation × density × importance × lr × seed. Inside the program the points
are grouped by activation (one vmapped computation per activation in the same scan body),
because a `lax.switch` over activations under `vmap` evaluates every branch at every point.

Random numbers (Elhage et al.'s data, redrawn every step) are *common* by default: the
init and the uniform draws of a model depend only on its seed, and each model thins the
shared draws with its own density (`data.thin`). Every model still sees an exact i.i.d.
stream of its own distribution; models that share a seed see correlated streams, which
makes neighbouring grid points directly comparable and divides the random numbers drawn
per step by the number of points per seed. `rng="per_point"` gives every point its own
stream, derived from all of its coordinate values. Either way a point's key is a function
of its coordinate *values*, so it trains to the same numbers alone or inside any grid.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import platform
import subprocess
import time
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from superpos_jax import activations, data, metrics, results
from superpos_jax.loss import example_loss, loss_fn
from superpos_jax.model import INITS, Params, init_params

RNG_MODES = ("shared", "per_point")
# Seed of the evaluation set: one fixed set of examples for every model of every grid.
EVAL_SEED = 2**31 - 1


class SpecError(ValueError):
  """An invalid sweep specification (message says which field and why)."""


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  """What to train: the grid axes (swept) and the static settings (compiled in).

  Grid axes (arrays inside the program; changing their values reuses the compiled
  program as long as their lengths stay the same): `activations` (grouped, static names),
  `densities`, `importances`, `lrs`, `seeds`.

  Attributes:
    n: features.
    m: hidden dimensions.
    activations: registry names (`superpos_jax.activations.names()`).
    densities: feature densities `1 - S`, each in (0, 1].
    importance_kind: "geometric" (`I_i = r**i`), "relative" (`[1, r, ..., r]`),
      "uniform" (`I_i = 1`; importances must be `(1.0,)`) or "explicit"
      (`importance_vectors` given; `importances` are their labels).
    importances: the importance axis: the parameter r of each setting.
    importance_vectors: explicit `[n]` vectors, only with importance_kind="explicit".
    lrs: learning rates (an axis: optax takes them as arrays, no recompilation).
    seeds: non-negative integer seeds.
    steps: optimisation steps (fresh batch every step).
    batch_size: examples per step.
    weight_decay: AdamW's decoupled weight decay (PyTorch's default 0.01).
    init: "xavier_normal" (per model) or "notebook" (TMS notebook's std), see model.py.
    init_instances: instance count for the "notebook" init's std.
    log_every: steps per loss-history window.
    eval_size: examples in the fixed evaluation set (used to pick the best seed).
    rng: "shared" (common random numbers per seed) or "per_point" (see module doc).
    phase_encoded, phase_not_encoded: n=2 phase thresholds (`metrics.PhaseThresholds`).
  """

  n: int
  m: int
  activations: tuple[str, ...] = activations.STUDY
  densities: tuple[float, ...] = (1.0,)
  importance_kind: str = "geometric"
  importances: tuple[float, ...] = (0.7,)
  importance_vectors: tuple[tuple[float, ...], ...] | None = None
  lrs: tuple[float, ...] = (1e-3,)
  seeds: tuple[int, ...] = (0,)
  steps: int = 10_000
  batch_size: int = 1024
  weight_decay: float = 0.01
  init: str = "xavier_normal"
  init_instances: int = 20
  log_every: int = 100
  eval_size: int = 16_384
  rng: str = "shared"
  phase_encoded: float = 0.8
  phase_not_encoded: float = 0.2

  def __post_init__(self):
    # Accept lists from callers, store tuples so the spec stays hashable.
    for f in ("activations", "densities", "importances", "lrs", "seeds"):
      object.__setattr__(self, f, tuple(getattr(self, f)))
    if self.importance_vectors is not None:
      object.__setattr__(self, "importance_vectors",
                         tuple(tuple(float(x) for x in v) for v in self.importance_vectors))
    self.validate()

  def validate(self) -> None:
    """Raises `SpecError` naming the first invalid field."""
    def need(ok, msg):
      if not ok:
        raise SpecError(msg)

    for f in ("n", "m", "steps", "batch_size", "log_every", "eval_size", "init_instances"):
      v = getattr(self, f)
      need(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
           f"{f} must be a positive integer, got {v!r}")
    need(self.m <= self.n, f"m must be <= n for a bottleneck (got n={self.n}, m={self.m})")
    for f in ("activations", "densities", "importances", "lrs", "seeds"):
      need(len(getattr(self, f)) >= 1, f"{f} must not be empty")
    for name in self.activations:
      activations.get(name)  # raises UnknownActivationError listing valid names
    need(len(set(self.activations)) == len(self.activations), "activations must be distinct")
    for d in self.densities:
      need(isinstance(d, (int, float)) and 0.0 < d <= 1.0 and math.isfinite(d),
           f"every density must be in (0, 1], got {d!r}")
    for lr in self.lrs:
      need(isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr),
           f"every learning rate must be > 0, got {lr!r}")
    for s in self.seeds:
      need(isinstance(s, (int, np.integer)) and 0 <= s < 2**31, f"seeds must be integers in [0, 2^31), got {s!r}")
    need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
    need(self.init in INITS, f"unknown init {self.init!r}; valid: {', '.join(INITS)}")
    need(self.rng in RNG_MODES, f"unknown rng {self.rng!r}; valid: {', '.join(RNG_MODES)}")
    kinds = (*data.IMPORTANCE_KINDS, "explicit")
    need(self.importance_kind in kinds,
         f"unknown importance_kind {self.importance_kind!r}; valid: {', '.join(kinds)}")
    if self.importance_kind == "explicit":
      vecs = self.importance_vectors
      need(vecs is not None and len(vecs) == len(self.importances),
           "importance_kind='explicit' needs one importance vector per importance label")
      for v in vecs:
        need(len(v) == self.n, f"each importance vector must have n={self.n} entries")
    else:
      need(self.importance_vectors is None, "importance_vectors need importance_kind='explicit'")
      if self.importance_kind == "uniform":
        need(self.importances == (1.0,), "uniform importance takes importances=(1.0,)")
    for v in self.importance_matrix().ravel():
      need(v > 0 and math.isfinite(v), f"every importance must be > 0 and finite, got {v}")
    need(0 <= self.phase_not_encoded <= self.phase_encoded,
         "phase thresholds need 0 <= phase_not_encoded <= phase_encoded")

  @property
  def grid_shape(self) -> tuple[int, ...]:
    """`(A, D, I, L, S)`, the leading shape of every result array."""
    return (len(self.activations), len(self.densities), len(self.importances),
            len(self.lrs), len(self.seeds))

  @property
  def num_models(self) -> int:
    return math.prod(self.grid_shape)

  def importance_matrix(self) -> np.ndarray:
    """`[I, n]` importance vectors of the importance axis."""
    if self.importance_kind == "explicit":
      return np.asarray(self.importance_vectors, np.float64)
    make = data.IMPORTANCE_KINDS[self.importance_kind]
    return np.stack([make(self.n, float(r)) for r in self.importances])

  def history_steps(self) -> np.ndarray:
    """Step count at the end of each loss-history window."""
    ends = np.arange(self.log_every, self.steps + 1, self.log_every)
    if ends.size == 0 or ends[-1] != self.steps:
      ends = np.append(ends, self.steps)
    return ends

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "SweepSpec":
    d = dict(d)
    if d.get("importance_vectors") is not None:
      d["importance_vectors"] = tuple(tuple(v) for v in d["importance_vectors"])
    return cls(**d)

  def digest(self) -> str:
    """Short hash of the spec (with the package version), to key cached results."""
    import hashlib
    from superpos_jax import __version__
    text = json.dumps({"spec": self.to_dict(), "version": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Static(NamedTuple):
  """Everything the compiled program depends on besides the swept array values."""

  n: int
  m: int
  activations: tuple[str, ...]
  grid_shape: tuple[int, ...]
  steps: int
  batch_size: int
  init: str
  init_instances: int
  log_every: int
  eval_size: int
  rng: str
  phase_encoded: float
  phase_not_encoded: float


def _static(spec: SweepSpec) -> _Static:
  return _Static(spec.n, spec.m, spec.activations, spec.grid_shape, spec.steps,
                 spec.batch_size, spec.init, spec.init_instances, spec.log_every,
                 spec.eval_size, spec.rng, spec.phase_encoded, spec.phase_not_encoded)


def _float_bits(x: jax.Array) -> jax.Array:
  return jax.lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.uint32)


def _optimizer(lr: jax.Array, weight_decay: jax.Array) -> optax.GradientTransformation:
  # PyTorch AdamW defaults (betas 0.9/0.999, eps 1e-8); decay applies to W and b alike,
  # as torch.optim.AdamW does when given all parameters.
  return optax.adamw(learning_rate=lr, weight_decay=weight_decay)


def _make_point_step(act: activations.ActivationFn):
  """One AdamW step of one model on the batch `thin(u, density)`."""

  def point_step(params, opt_state, u, density, importance, lr, weight_decay):
    x = data.thin(u, density)  # [B, n]
    loss, grads = jax.value_and_grad(loss_fn)(params, x, importance, act)
    updates, opt_state = _optimizer(lr, weight_decay).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return point_step


def _per_stream(fn, n_point_args: int):
  """vmaps `fn(state..., u, *point_args)` over points (u shared) then over streams."""
  inner = jax.vmap(fn, in_axes=(0, 0, None) + (0,) * n_point_args + (None,))
  return jax.vmap(inner, in_axes=(0, 0, 0) + (0,) * n_point_args + (None,))


@functools.lru_cache(maxsize=32)
def _program(static: _Static) -> Callable:
  """Builds the jitted whole-grid training program for one static configuration."""
  A, D, I, L, S = static.grid_shape
  n, B = static.n, static.batch_size
  acts = [activations.get(a).fn for a in static.activations]
  n_windows = len(np.arange(static.log_every, static.steps + 1, static.log_every))
  remainder = static.steps - n_windows * static.log_every
  thresholds = metrics.PhaseThresholds(static.phase_encoded, static.phase_not_encoded)

  @chex.assert_max_traces(n=1)
  def train_grid(densities, importance_vectors, lrs, seeds, weight_decay):
    # Points are ordered (seed, density, importance, lr). Streams own random numbers:
    # shared mode: one stream per seed, holding Q = D*I*L points;
    # per_point mode: one stream per point (Q = 1).
    dens = jnp.broadcast_to(densities[None, :, None, None], (S, D, I, L))
    imp = jnp.broadcast_to(importance_vectors[None, None, :, None, :], (S, D, I, L, n))
    lr = jnp.broadcast_to(lrs[None, None, None, :], (S, D, I, L))
    seed_keys = jax.vmap(jax.random.key)(seeds)  # [S]
    if static.rng == "shared":
      R, Q = S, D * I * L
      stream_keys = seed_keys
    else:
      R, Q = S * D * I * L, 1
      imp_label = jnp.broadcast_to(
          jnp.sum(_float_bits(importance_vectors) * (jnp.arange(n, dtype=jnp.uint32) + 1), -1)
          [None, None, :, None], (S, D, I, L))
      fold = jax.vmap(jax.random.fold_in)
      keys = jnp.broadcast_to(seed_keys[:, None, None, None], (S, D, I, L)).reshape(-1)
      keys = fold(keys, _float_bits(dens).reshape(-1))
      keys = fold(keys, imp_label.reshape(-1))
      stream_keys = fold(keys, _float_bits(lr).reshape(-1))
    dens, lr = dens.reshape(R, Q), lr.reshape(R, Q)
    imp = imp.reshape(R, Q, n)

    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(stream_keys)
    data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(stream_keys)
    p0 = jax.vmap(lambda k: init_params(k, static.n, static.m, init=static.init,
                                        instances=static.init_instances))(init_keys)
    params = jax.tree.map(lambda x: jnp.broadcast_to(x[:, None], (R, Q) + x.shape[1:]), p0)
    opt_state = jax.vmap(jax.vmap(_optimizer(1.0, 0.0).init))(params)
    state = tuple((params, opt_state) for _ in acts)
    steppers = [_per_stream(_make_point_step(f), 3) for f in acts]

    def one_step(state, t):
      u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, t), (B, n)))(data_keys)
      new_state, losses = [], []
      for step_fn, (p, o) in zip(steppers, state):
        p, o, loss = step_fn(p, o, u, dens, imp, lr, weight_decay)
        new_state.append((p, o))
        losses.append(loss)
      return tuple(new_state), jnp.stack(losses)  # [A, R, Q]

    def window(state, start, length):
      state, losses = jax.lax.scan(one_step, state, start + jnp.arange(length))
      return state, jnp.mean(losses, axis=0)

    def full_window(state, w):
      return window(state, w * static.log_every, static.log_every)

    state, history = jax.lax.scan(full_window, state, jnp.arange(n_windows))  # [W, A, R, Q]
    if remainder:
      state, last = window(state, n_windows * static.log_every, remainder)
      history = jnp.concatenate([history, last[None]], axis=0)

    # Evaluation on one fixed set shared by every model (fair comparison across seeds).
    u_eval = jax.random.uniform(jax.random.key(EVAL_SEED), (static.eval_size, n))

    def evaluate(act):
      def one(p, density, importance):
        xs = data.thin(u_eval, density)
        return jnp.mean(jax.vmap(lambda x: example_loss(p, x, importance, act))(xs))
      return jax.vmap(jax.vmap(one))

    W = jnp.stack([s[0].W for s in state])  # [A, R, Q, m, n]
    b = jnp.stack([s[0].b for s in state])
    eval_loss = jnp.stack([evaluate(f)(s[0], dens, imp) for f, s in zip(acts, state)])

    per_model = lambda fn: jax.vmap(jax.vmap(jax.vmap(fn)))
    out = {
        "W": W, "b": b,
        "loss_history": jnp.moveaxis(history, 0, -1),
        "final_loss": history[-1],
        "eval_loss": eval_loss,
        "feature_norms": per_model(metrics.feature_norms)(W),
        "superposition": per_model(metrics.superposition)(W),
        "feature_dimensionality": per_model(metrics.feature_dimensionality)(W),
        "dims_per_feature": per_model(metrics.dims_per_feature)(W),
    }
    finite_w = jnp.all(jnp.isfinite(W), axis=(-2, -1)) & jnp.all(jnp.isfinite(b), axis=-1)
    out["diverged"] = ~(finite_w & jnp.all(jnp.isfinite(history), axis=0))
    if static.n == 2:
      out["phase"] = per_model(lambda w: metrics.classify_phase(w, thresholds))(W)

    # [A, R, Q, ...] -> [A, D, I, L, S, ...]
    def to_grid(x):
      x = x.reshape((A, S, D, I, L) + x.shape[3:])
      return jnp.moveaxis(x, 1, 4)

    return {k: to_grid(v) for k, v in out.items()}

  return jax.jit(train_grid)


def program_inputs(spec: SweepSpec) -> tuple[jax.Array, ...]:
  """The swept arrays the compiled program takes, in order."""
  return (jnp.asarray(spec.densities, jnp.float32),
          jnp.asarray(spec.importance_matrix(), jnp.float32),
          jnp.asarray(spec.lrs, jnp.float32),
          jnp.asarray(spec.seeds, jnp.uint32),
          jnp.asarray(spec.weight_decay, jnp.float32))


def compiled_program(spec: SweepSpec):
  """Lowers and compiles the program for `spec`; returns (compiled, compile seconds)."""
  t0 = time.perf_counter()
  compiled = _program(_static(spec)).lower(*program_inputs(spec)).compile()
  return compiled, time.perf_counter() - t0


def environment() -> dict[str, Any]:
  """Versions, backend and devices, for the result file's metadata."""
  import flax
  devices = jax.devices()
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            timeout=5, cwd=__file__.rsplit("/", 2)[0]).stdout.strip() or None
  except (OSError, subprocess.SubprocessError):
    commit = None
  from superpos_jax import __version__
  return {
      "superpos_jax": __version__,
      "git_commit": commit,
      "jax": jax.__version__,
      "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
      "optax": optax.__version__,
      "flax": flax.__version__,
      "chex": chex.__version__,
      "numpy": np.__version__,
      "python": platform.python_version(),
      "platform": platform.platform(),
      "backend": jax.default_backend(),
      "device_count": len(devices),
      "device_kind": devices[0].device_kind,
      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }


def run(spec: SweepSpec) -> results.SweepResult:
  """Trains every model of `spec` in one compiled call and returns its results."""
  compiled, compile_s = compiled_program(spec)
  t0 = time.perf_counter()
  out = compiled(*program_inputs(spec))
  out = jax.tree.map(np.asarray, jax.block_until_ready(out))
  run_s = time.perf_counter() - t0
  coords = {
      "activation": np.asarray(spec.activations),
      "density": np.asarray(spec.densities, np.float64),
      "importance": np.asarray(spec.importances, np.float64),
      "lr": np.asarray(spec.lrs, np.float64),
      "seed": np.asarray(spec.seeds, np.int64),
  }
  meta = {
      "spec": spec.to_dict(),
      "spec_digest": spec.digest(),
      "env": environment(),
      "timings": {"compile_s": compile_s, "run_s": run_s,
                  "model_steps_per_s": spec.num_models * spec.steps / run_s},
  }
  extra = {"importance_vectors": spec.importance_matrix(), "history_steps": spec.history_steps()}
  return results.SweepResult(coords=coords, data=out, extra=extra, meta=meta)
