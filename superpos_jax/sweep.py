"""The sweep engine: a whole grid of toy models trained in ONE compiled XLA program.

    spec = SweepSpec(n=10, m=5, densities=(1.0, 0.1, 0.01), seeds=(0, 1, 2))
    result = run(spec)                      # results.SweepResult
    result.sel(activation="relu", density=0.1)["W"]   # [I, L, S, m, n]

The grid is activation × density × importance × lr × seed. Inside the program the points
are grouped by activation (a `lax.switch` over activations under `vmap` would evaluate
every branch at every point), cut into chunks of models that train together in one
`lax.scan` over steps (`lax.map` over chunks keeps a chunk's working set in cache and
bounds memory, `choose_chunk_size`), and the chunks are sharded over all devices with
`shard_map`. Chunking and sharding change nothing but float rounding (tests check it).

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
import hashlib
import json
import math
import operator
import os
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
from superpos_jax.loss import batch_loss
from superpos_jax.model import INITS, init_params

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
    for f in ("n", "m", "steps", "batch_size", "log_every", "eval_size", "init_instances"):
      v = getattr(self, f)
      if isinstance(v, np.integer):  # keep the spec JSON-able
        object.__setattr__(self, f, int(v))
    # Accept lists from callers, store tuples so the spec stays hashable.
    for f, cast in (("activations", str), ("densities", float), ("importances", float),
                    ("lrs", float), ("seeds", operator.index)):
      try:
        object.__setattr__(self, f, tuple(cast(v) for v in getattr(self, f)))
      except (TypeError, ValueError):
        raise SpecError(f"{f} must be a sequence of {getattr(cast, '__name__', cast)}, got {getattr(self, f)!r}") from None
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
      need(isinstance(d, (int, float)) and 0.0 < d <= 1.0 and math.isfinite(d)
           and np.float32(d) > 0, f"every density must be in (0, 1], got {d!r}")
    for f in ("densities", "importances", "lrs", "seeds"):
      need(len(set(getattr(self, f))) == len(getattr(self, f)), f"{f} must be distinct")
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
      need(v > 0 and np.isfinite(np.float32(v)) and np.float32(v) > 0,
           f"every importance must be > 0 and finite in float32, got {v}")
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
    """Short hash of the spec and the engine's source code, to key cached results."""
    text = json.dumps({"spec": self.to_dict(), "code": _engine_source_hash()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _engine_source_hash() -> str:
  """Hash of the modules whose code decides the numbers (not plots, not the CLI)."""
  folder = os.path.dirname(os.path.abspath(__file__))
  h = hashlib.sha256()
  for name in ("activations", "data", "model", "loss", "metrics", "sweep"):
    with open(os.path.join(folder, f"{name}.py"), "rb") as f:
      h.update(f.read())
  return h.hexdigest()


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
  chunk_size: int  # models trained together in one scan (see `choose_chunk_size`)
  draw_block_bytes: int  # most bytes of uniforms drawn at once (see DRAW_BLOCK_BYTES)
  devices: tuple  # the grid's chunks are sharded over these
  progress: bool  # report progress through a host callback once per log window


def _static(spec: SweepSpec, chunk_size: int, devices: Sequence[jax.Device],
            progress: bool) -> _Static:
  return _Static(spec.n, spec.m, spec.activations, spec.grid_shape, spec.steps,
                 spec.batch_size, spec.init, spec.init_instances, spec.log_every,
                 spec.eval_size, spec.rng, spec.phase_encoded, spec.phase_not_encoded,
                 chunk_size, DRAW_BLOCK_BYTES, tuple(devices), progress)


def _float_bits(x: jax.Array) -> jax.Array:
  return jax.lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.uint32)


def _optimizer(lr: jax.Array, weight_decay: jax.Array) -> optax.GradientTransformation:
  # PyTorch AdamW defaults (betas 0.9/0.999, eps 1e-8); decay applies to W and b alike,
  # as torch.optim.AdamW does when given all parameters.
  return optax.adamw(learning_rate=lr, weight_decay=weight_decay)


def _make_point_step(act: activations.Activation):
  """One AdamW step of one model on the batch `thin(u, density)`, `u: [n, B]`."""

  def point_step(params, opt_state, u, density, importance, lr, weight_decay):
    x = data.thin(u, density)  # [n, B]: batch minor, see batch_loss
    loss, grads = jax.value_and_grad(batch_loss)(params, x, importance, act.fn,
                                                 per_example=act.per_example)
    updates, opt_state = _optimizer(lr, weight_decay).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return point_step


# Bytes of per-chunk working set that keep a training step inside a core's L2 cache:
# measured on the 2-core CPU, n=2 models ran 2x faster in chunks of ~128 than all at once,
# n=10 best in chunks of 16.
CACHE_BYTES = 2**20
# Large models (n=200) overflow the cache even alone; there 2-4 models per chunk still pay,
# because the batched matmuls amortise their per-call overhead (measured at n=200, m=20:
# 1 model per chunk 961 model-steps/s, 2: 1,764, 4: 1,739, 8: 1,598).
MIN_CHUNK = 4
# Intermediates alive per model during one step, in units of one [n, B] float32 array.
_LIVE_ARRAYS = 12


def model_step_bytes(spec: SweepSpec) -> int:
  """Approximate working-set bytes of one model during one training step."""
  return 4 * _LIVE_ARRAYS * (spec.n + spec.m) * spec.batch_size + 4 * spec.n * spec.eval_size


def estimate_memory(spec: SweepSpec, chunk_size: int) -> int:
  """Approximate peak bytes of a run: chunk working set + every model's state and outputs."""
  per_model_state = 4 * (4 * (spec.m * spec.n + spec.n) + len(spec.history_steps()) + 3 * spec.n + 8)
  return (chunk_size * model_step_bytes(spec) + 2 * spec.num_models * per_model_state
          + DRAW_BLOCK_BYTES)


def choose_chunk_size(spec: SweepSpec, max_memory: int | None = None, devices: int = 1) -> int:
  """Models per chunk: cache-sized for speed, shrunk to fit `max_memory` bytes, and cut so
  that the chunks fill every device with as little padding as possible.

  Padding matters: the grid's chunks are padded to a whole number per device, and a pad
  chunk costs as much as a real one (n=200, 20 models, 2 devices: chunks of 7 gave 3
  chunks padded to 4, 29% wasted; chunks of 2 waste nothing and ran 1.45x faster).

  Raises:
    SpecError: if even one model per chunk would exceed `max_memory`.
  """
  A, S = len(spec.activations), len(spec.seeds)
  # Shared-RNG chunks never span seeds: each seed's q points are cut separately.
  groups, q = (S, spec.num_models // (A * S)) if spec.rng == "shared" else (1, spec.num_models // A)
  target = max(CACHE_BYTES // (4 * (spec.n + spec.m) * spec.batch_size), MIN_CHUNK)
  target = min(target, q, -(-groups * q // devices))  # every device gets work
  if max_memory is not None:
    while target > 1 and estimate_memory(spec, target) > max_memory:
      target //= 2
    if estimate_memory(spec, target) > max_memory:
      raise SpecError(
          f"the grid needs about {estimate_memory(spec, 1) / 2**30:.2f} GiB even one model "
          f"at a time, over the {max_memory / 2**30:.2f} GiB budget: shrink the grid or batch")
  # k chunks per group, chunks at most halved from the target: fewest padded slots.
  k0 = -(-q // target)

  def slots(k):
    return -(-groups * k // devices) * devices * -(-q // k)

  best = min(range(k0, min(2 * k0, q) + 1), key=lambda k: (slots(k), k))
  return -(-q // best)


# Uniforms drawn at once for a block of steps, at most: threefry on CPU costs ~26 ns per
# number in a [2, 1024] draw and ~5 ns in a [100, 2, 1024] one (measured, 2-core CPU).
DRAW_BLOCK_BYTES = 2**21


def _draw_block_steps(length: int, step_bytes: int, block_bytes: int) -> int:
  """Steps per random draw: the largest divisor of `length` within `block_bytes`."""
  most = max(1, block_bytes // step_bytes)
  return max(g for g in range(1, min(length, most) + 1) if length % g == 0)


_TRACES: dict[_Static, int] = {}
_progress_sink: list[Callable[[int, int], None]] = []


def _report_progress(chunk, window):
  if _progress_sink:
    _progress_sink[-1](int(chunk), int(window))


@functools.lru_cache(maxsize=32)
def _program(static: _Static) -> Callable:
  """Builds the jitted whole-grid training program for one static configuration.

  Layout: points are ordered (seed, density, importance, lr) and cut into chunks of
  `chunk_size` models (in shared-RNG mode a chunk never spans two seeds, so it draws one
  `[n, B]` batch of uniforms per step for all its models). Each activation group maps a
  full `lax.scan` over steps across its chunks (`lax.map`), so one chunk's working set
  stays in cache for the whole run; chunks are sharded over `devices` with `shard_map`.
  """
  _TRACES[static] = 0  # a fresh build (also after lru_cache eviction) may trace once
  A, D, I, L, S = static.grid_shape
  n, m, B, C = static.n, static.m, static.batch_size, static.chunk_size
  Q = D * I * L
  shared = static.rng == "shared"
  acts = [activations.get(a) for a in static.activations]
  n_windows, remainder = divmod(static.steps, static.log_every)
  draw_bytes = 4 * n * B * (1 if shared else C)  # one step's uniforms
  thresholds = metrics.PhaseThresholds(static.phase_encoded, static.phase_not_encoded)
  mesh = jax.sharding.Mesh(np.asarray(static.devices), ("grid",))
  # Chunk grid: shared mode cuts each seed's Q points separately.
  per_seed_chunks = -(-Q // C)
  n_chunks = _n_chunks(static)

  def chunk_index() -> np.ndarray:
    """`[n_chunks, C]` flat point index (into S*Q) of every chunk slot; pads repeat."""
    if shared:
      q = np.minimum(np.arange(per_seed_chunks * C), Q - 1).reshape(per_seed_chunks, C)
      idx = (np.arange(S)[:, None, None] * Q + q[None]).reshape(-1, C)
    else:
      idx = np.minimum(np.arange(-(-(S * Q) // C) * C), S * Q - 1).reshape(-1, C)
    pad = np.repeat(idx[-1:], n_chunks - idx.shape[0], axis=0)
    return np.concatenate([idx, pad])

  index = chunk_index()

  def train_chunk(act, chunk_id, keys, dens, imp, lr, weight_decay):
    """Trains C models (one chunk) for all steps; everything stays chunk-sized."""
    point_step = jax.vmap(_make_point_step(act),
                          in_axes=(0, 0, None if shared else 0, 0, 0, 0, None))
    params = jax.vmap(lambda k: init_params(jax.random.fold_in(k, 0), n, m, init=static.init,
                                            instances=static.init_instances))(keys)
    opt_state = jax.vmap(_optimizer(1.0, 0.0).init)(params)
    data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)

    def draw(t):
      """Step `t`'s uniforms: `[n, B]` shared by the chunk, or `[C, n, B]` per point."""
      one = lambda k: jax.random.uniform(jax.random.fold_in(k, t), (n, B))
      return one(data_keys[0]) if shared else jax.vmap(one)(data_keys)

    def one_step(state, u):
      p, o, loss = point_step(*state, u, dens, imp, lr, weight_decay)
      return (p, o), loss

    def block(state, ts):
      # The uniforms of a block of steps in one draw (same numbers as step by step:
      # vmap over t of a counter-based PRNG); a big draw costs ~5x less per number.
      return jax.lax.scan(one_step, state, jax.vmap(draw)(ts))

    def window(state, start, length):
      g = _draw_block_steps(length, draw_bytes, static.draw_block_bytes)
      ts = (start + jnp.arange(length)).reshape(length // g, g)
      state, losses = jax.lax.scan(block, state, ts)  # [length // g, g, C]
      return state, jnp.mean(losses.reshape(length, -1), axis=0)

    def full_window(state, w):
      state, loss = window(state, w * static.log_every, static.log_every)
      if static.progress:
        jax.debug.callback(_report_progress, chunk_id, w)
      return state, loss

    state = (params, opt_state)
    state, history = jax.lax.scan(full_window, state, jnp.arange(n_windows))  # [W, C]
    if remainder:
      state, last = window(state, n_windows * static.log_every, remainder)
      history = jnp.concatenate([history, last[None]], axis=0)
    params = state[0]

    # One fixed evaluation set for every model (fair comparison across seeds).
    u_eval = jax.random.uniform(jax.random.key(EVAL_SEED), (n, static.eval_size))

    def evaluate(p, density, importance):
      return batch_loss(p, data.thin(u_eval, density), importance, act.fn,
                        per_example=act.per_example)

    eval_loss = jax.vmap(evaluate)(params, dens, imp)
    return params.W, params.b, history.T, eval_loss

  def train_grid(densities, importance_vectors, lrs, seeds, weight_decay):
    _TRACES[static] = _TRACES.get(static, 0) + 1
    if _TRACES[static] > 1:  # a retrace would mean a silent recompilation per call
      raise AssertionError(f"sweep program traced {_TRACES[static]} times for one spec")
    dens = jnp.broadcast_to(densities[None, :, None, None], (S, D, I, L)).reshape(-1)
    imp = jnp.broadcast_to(importance_vectors[None, None, :, None, :], (S, D, I, L, n))
    imp = imp.reshape(-1, n)
    lr = jnp.broadcast_to(lrs[None, None, None, :], (S, D, I, L)).reshape(-1)
    keys = jnp.broadcast_to(jax.vmap(jax.random.key)(seeds)[:, None], (S, Q)).reshape(-1)
    if not shared:
      weights = (jnp.arange(n, dtype=jnp.uint32) + 1)[None, :]
      imp_label = jnp.sum(_float_bits(importance_vectors) * weights, axis=-1)
      imp_label = jnp.broadcast_to(imp_label[None, None, :, None], (S, D, I, L)).reshape(-1)
      fold = jax.vmap(jax.random.fold_in)
      keys = fold(fold(fold(keys, _float_bits(dens)), imp_label), _float_bits(lr))
    chunked = [x[index] for x in (keys, dens, imp, lr)]  # [n_chunks, C, ...]
    chunk_ids = jnp.arange(n_chunks)

    def per_device(chunk_ids, keys, dens, imp, lr, weight_decay):
      outs = []
      for act in acts:
        run_chunk = functools.partial(train_chunk, act, weight_decay=weight_decay)
        outs.append(jax.lax.map(lambda a: run_chunk(*a), (chunk_ids, keys, dens, imp, lr)))
      return tuple(jnp.stack(o) for o in zip(*outs))  # each [A, chunks, C, ...]

    spec_grid = jax.sharding.PartitionSpec("grid")
    spec_out = jax.sharding.PartitionSpec(None, "grid")
    W, b, history, eval_loss = jax.shard_map(
        per_device, mesh=mesh,
        in_specs=(spec_grid,) * 5 + (jax.sharding.PartitionSpec(),),
        out_specs=(spec_out,) * 4, check_vma=False)(chunk_ids, *chunked, weight_decay)

    # Scatter chunk slots back to points (pads dropped): [A, S*Q, ...].
    first = np.unique(index.ravel(), return_index=True)[1]  # first slot of each point

    def to_points(x):
      return x.reshape((A, -1) + x.shape[3:])[:, first]

    W, b, history, eval_loss = map(to_points, (W, b, history, eval_loss))
    per_model = lambda fn: jax.vmap(jax.vmap(fn))
    out = {
        "W": W, "b": b,
        "loss_history": history,
        "final_loss": history[..., -1],
        "eval_loss": eval_loss,
        "feature_norms": per_model(metrics.feature_norms)(W),
        "superposition": per_model(metrics.superposition)(W),
        "feature_dimensionality": per_model(metrics.feature_dimensionality)(W),
        "dims_per_feature": per_model(metrics.dims_per_feature)(W),
    }
    finite_w = jnp.all(jnp.isfinite(W), axis=(-2, -1)) & jnp.all(jnp.isfinite(b), axis=-1)
    out["diverged"] = ~(finite_w & jnp.all(jnp.isfinite(history), axis=-1))
    # A NaN model can still score a finite loss (relu(NaN) may come out as 0): never let
    # it look like a good seed.
    out["eval_loss"] = jnp.where(out["diverged"], jnp.nan, out["eval_loss"])
    out["final_loss"] = jnp.where(out["diverged"], jnp.nan, out["final_loss"])
    if n == 2:
      out["phase"] = per_model(lambda w: metrics.classify_phase(w, thresholds))(W)

    def to_grid(x):  # [A, S*Q, ...] -> [A, D, I, L, S, ...]
      x = x.reshape((A, S, D, I, L) + x.shape[2:])
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


def compiled_program(spec: SweepSpec, *, chunk_size: int | None = None,
                     devices: Sequence[jax.Device] | None = None, progress: bool = False,
                     max_memory: int | None = None):
  """Lowers and compiles the program for `spec`.

  Returns:
    (compiled executable, compile seconds, the `_Static` it was built for).
  """
  devices = tuple(devices or jax.devices())
  if chunk_size is None:
    chunk_size = choose_chunk_size(spec, max_memory, len(devices))
  elif not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
    raise SpecError(f"chunk_size must be a positive integer, got {chunk_size!r}")
  elif max_memory is not None and estimate_memory(spec, chunk_size) > max_memory:
    raise SpecError(f"chunk_size={chunk_size} needs about "
                    f"{estimate_memory(spec, chunk_size) / 2**30:.2f} GiB, over the "
                    f"{max_memory / 2**30:.2f} GiB budget")
  static = _static(spec, chunk_size, devices, progress)
  t0 = time.perf_counter()
  compiled = _program(static).lower(*program_inputs(spec)).compile()
  return compiled, time.perf_counter() - t0, static


def environment(devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Versions, backend and devices, for the result file's metadata."""
  import flax
  devices = list(devices or jax.devices())
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
      "backend": devices[0].platform,
      "device_count": len(devices),
      "device_kind": devices[0].device_kind,
      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }


class _Progress:
  """Prints `done%, model-steps/s, ETA` on one stderr line, from the program's callbacks."""

  def __init__(self, spec: SweepSpec, static: _Static, stream=None):
    import sys
    self.stream = stream or sys.stderr
    n_windows = spec.steps // spec.log_every  # full windows: one callback each
    self.total = max(1, len(spec.activations) * _n_chunks(static) * n_windows)
    self.models_steps_per_tick = spec.num_models * spec.steps / self.total
    self.count = 0
    self.t0 = time.perf_counter()
    self.last = 0.0

  def __call__(self, chunk: int, window: int) -> None:
    self.count += 1
    now = time.perf_counter()
    if now - self.last < 0.5 and self.count < self.total:
      return
    self.last = now
    frac = self.count / self.total
    rate = self.count * self.models_steps_per_tick / max(now - self.t0, 1e-9)
    eta = (now - self.t0) * (1 - frac) / max(frac, 1e-9)
    self.stream.write(f"\r  training {100 * frac:5.1f}% | {rate:,.0f} model-steps/s | "
                      f"ETA {eta:6.0f}s ")
    if self.count >= self.total:
      self.stream.write("\n")
    self.stream.flush()


def _n_chunks(static: _Static) -> int:
  """Chunks the program trains per activation, padded to a whole number per device."""
  A, D, I, L, S = static.grid_shape
  Q = D * I * L
  chunks = S * -(-Q // static.chunk_size) if static.rng == "shared" else -(-(S * Q) // static.chunk_size)
  return -(-chunks // len(static.devices)) * len(static.devices)


def run(spec: SweepSpec, *, progress: bool | None = None, chunk_size: int | None = None,
        max_memory: int | None = None,
        devices: Sequence[jax.Device] | None = None) -> results.SweepResult:
  """Trains every model of `spec` in one compiled call and returns its results.

  Args:
    spec: the grid and settings.
    progress: print progress to stderr; None = only when stderr is a terminal.
    chunk_size: models trained together per scan; None = cache-sized, and small enough
      for `max_memory`. Results do not depend on it beyond float rounding.
    max_memory: byte budget for the run (see `estimate_memory`); None = no limit.
    devices: devices to shard the grid over; None = all of the default backend's.
  """
  import sys
  if progress is None:
    progress = sys.stderr.isatty()
  compiled, compile_s, static = compiled_program(
      spec, chunk_size=chunk_size, devices=devices, progress=progress, max_memory=max_memory)
  if progress:
    _progress_sink.append(_Progress(spec, static))
  try:
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*program_inputs(spec)))
    if len({d.process_index for d in static.devices}) > 1:  # multi-host: all get the grid
      from jax.experimental import multihost_utils
      out = multihost_utils.process_allgather(out, tiled=True)
    out = jax.tree.map(np.asarray, out)
    run_s = time.perf_counter() - t0
  finally:
    if progress:
      _progress_sink.pop()
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
      "env": environment(static.devices),
      "engine": {"chunk_size": static.chunk_size, "devices": len(static.devices),
                 "estimated_bytes": estimate_memory(spec, static.chunk_size)},
      "timings": {"compile_s": compile_s, "run_s": run_s,
                  "model_steps_per_s": spec.num_models * spec.steps / run_s},
  }
  extra = {"importance_vectors": spec.importance_matrix(), "history_steps": spec.history_steps()}
  return results.SweepResult(coords=coords, data=out, extra=extra, meta=meta)
