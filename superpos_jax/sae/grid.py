"""The SAE stage: an SAE grid on every toy model of a result, in ONE compiled call.

    res = sweep.run(SweepSpec(n=10, m=5, densities=(1.0, 0.1, 0.01), seeds=(0, 1, 2)))
    sae_res = run(res, SAESpec(dict_multiples=(1, 2), l1s=(0.03, 0.1), sae_seeds=(0, 1, 2)))
    sae_res.sel(activation="relu", density=0.1)["max_cosine"]   # [I, L, WD, AL, S, K, Λ, R, n]

Every toy model of `res` (any grid; the bottleneck family, where `h = W x`) gets the
whole SAE grid: dictionary multiple × L1 coefficient × SAE seed. The one-SAE pieces of
`sae.make_train` are vmapped over the grid (L1 × seed, sharing the toy model's batch `h`,
computed once per step) and over a chunk of toy models; `lax.map` runs the chunks one
after another and `shard_map` spreads them over the devices, as in `sweep.py`. The
dictionary multiples have different shapes, so each is its own group of the same
program (as activations are in `sweep.py`).

Keys are functions of coordinate values (`sae.data_key`: toy seed and density;
`sae.init_key`: SAE seed and dictionary size), so an SAE trains to the same numbers
alone (`sae.make_train(...).train`) or inside any grid, and every SAE of a toy model,
and toy models of every activation at the same (seed, density), read the same data.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from superpos_jax import results
from superpos_jax.sae import results as sae_results
from superpos_jax.sae import train as sae
from superpos_jax.environment import environment
from superpos_jax.progress import Progress, report, showing
from superpos_jax.sae.results import SAEResult
from superpos_jax.sae.spec import SAESpec
from superpos_jax.spec import SpecError
from superpos_jax.train import draw_uniforms, scan_steps

# Bytes of a chunk's per-step working set that keep it in a core's L2 cache (as
# `plan.CACHE_BYTES`); a chunk holds at least one toy model with its whole SAE grid.
CACHE_BYTES = 2**20
# Intermediates alive per SAE during one step, in units of one [k + m, B] float32 array.
_LIVE_ARRAYS = 8


class ToyModels(NamedTuple):
  """Every toy model of a result, flattened in `spec.AXES` order."""

  W: np.ndarray  # [P, m, n]
  density: np.ndarray  # [P]
  seed: np.ndarray  # [P]
  shape: tuple[int, ...]  # the toy grid


def toy_models(result: results.SweepResult) -> ToyModels:
  """The toy models of `result` and their densities and seeds (bottleneck only: the
  SAE stage reads `h = W x`)."""
  spec = result.spec
  if spec.model != "bottleneck":
    raise SpecError(f"the SAE stage reads h = W x of the bottleneck model; this result's "
                    f"model is {spec.model!r}")
  axes = result.axes
  shape = tuple(len(result.coords[a]) for a in axes)

  def along(axis):
    v = np.asarray(result.coords[axis])
    return np.broadcast_to(v.reshape([-1 if a == axis else 1 for a in axes]), shape).ravel()

  W = np.asarray(result["W"], np.float32).reshape((-1,) + result["W"].shape[len(shape):])
  return ToyModels(W, along("density").astype(np.float32), along("seed").astype(np.uint32), shape)


def choose_chunk_size(spec: SAESpec, toys: int, n: int, m: int, devices: int = 1) -> int:
  """Toy models per chunk: their SAE grids' step working set within `CACHE_BYTES`, at
  least one, and no more than fill every device."""
  K, L, R = spec.grid_shape
  per_toy = 4 * _LIVE_ARRAYS * L * R * (max(spec.dict_multiples) * n + m) * spec.batch_size
  return max(1, min(CACHE_BYTES // per_toy, -(-toys // devices)))


class Layout(NamedTuple):
  """The static layout of a program: hashable, the key of its compiled form."""

  spec: SAESpec
  n: int
  m: int
  family: str
  toys: int
  chunk_size: int
  devices: tuple
  progress: bool

  @property
  def n_chunks(self) -> int:
    """Chunks, padded to a whole number per device."""
    chunks = -(-self.toys // self.chunk_size)
    return -(-chunks // len(self.devices)) * len(self.devices)


def _train_device(layout: Layout, chunk_ids, W, dens, dkeys, l1s, sae_seeds):
  """Trains one device's chunks of toy models, every dictionary size after the other.

  `W [chunks, C, m, n]`, `dens`, `dkeys [chunks, C]`. Returns, per dictionary multiple,
  `(SAEParams, history, SAEMetrics)` shaped `[chunks, C, Q, ...]`, Q = Λ·R (L1 major).
  """
  spec, n, m, B = layout.spec, layout.n, layout.m, layout.spec.batch_size
  L, R = len(spec.l1s), len(spec.sae_seeds)
  l1_q = jnp.repeat(l1s, R)  # [Q]
  outs = []
  for mult in spec.dict_multiples:
    k = mult * n
    trainer = sae.make_train(spec, n, m, k, family=layout.family)
    init_q = jnp.tile(jax.vmap(lambda s: sae.init_key(s, k))(sae_seeds), L)  # [Q]
    step = jax.vmap(jax.vmap(trainer.step, (0, None, 0)), (0, 0, None))  # [C, Q] SAEs
    grid_metrics = jax.vmap(sae.metrics, (0, None, None, 0))  # [Q] SAEs of one toy

    def run(chunk, trainer=trainer, init_q=init_q, step=step, grid_metrics=grid_metrics):
      cid, W_c, d_c, keys_c = chunk
      C = W_c.shape[0]
      states = jax.vmap(trainer.init)(init_q)
      states = jax.tree.map(lambda x: jnp.broadcast_to(x, (C,) + x.shape), states)

      def advance(states, ts):
        u = jax.vmap(draw_uniforms, (0, None, None, None))(keys_c, ts, n, B)  # [C, g, n, B]
        hs = jax.vmap(jax.vmap(sae.hidden, (None, 0, None, None)), (0, 0, 0, None))(
            W_c, u, d_c, layout.family)  # [C, g, m, B]
        return jax.lax.scan(lambda st, h: step(st, h, l1_q), states, jnp.moveaxis(hs, 1, 0))

      tick = (lambda w: jax.debug.callback(report, cid, w)) if layout.progress else None
      states, history = scan_steps(spec, advance, states, step_bytes=4 * n * B * C,
                                       on_window=tick)
      # Toy by toy: the evaluation codes are [Q, k, E] per toy model.
      mets = jax.lax.map(lambda x: grid_metrics(x[0], trainer.eval_features(x[2]), x[1], l1_q),
                         (states.params, W_c, d_c))
      return states.params, jnp.moveaxis(history, 0, -1), mets

    outs.append(jax.lax.map(run, (chunk_ids, W, dens, dkeys)))
  return outs


@functools.lru_cache(maxsize=16)
def _program(layout: Layout):
  """The jitted program of `layout`: `(W [P, m, n], density [P], seed [P], l1s [Λ],
  sae_seeds [R]) -> {name: [P, K, Λ, R, ...]}`."""
  spec, n, m, P = layout.spec, layout.n, layout.m, layout.toys
  C, chunks = layout.chunk_size, layout.n_chunks
  K, L, R = spec.grid_shape
  k_max = max(spec.dict_multiples) * n
  index = np.minimum(np.arange(chunks * C), P - 1).reshape(chunks, C)  # pads repeat the last
  mesh = jax.sharding.Mesh(np.asarray(layout.devices), ("grid",))

  def program(W, dens, seeds, l1s, sae_seeds):
    dkeys = jax.vmap(sae.data_key)(seeds, dens)
    Ps = jax.sharding.PartitionSpec
    outs = jax.shard_map(functools.partial(_train_device, layout), mesh=mesh,
                         in_specs=(Ps("grid"),) * 4 + (Ps(),) * 2, out_specs=Ps("grid"),
                         check_vma=False)(
        jnp.arange(chunks), W[index], dens[index], dkeys[index], l1s, sae_seeds)
    groups = {name: [] for name in sae_results.SCHEMA}
    for mult, (params, history, mets) in zip(spec.dict_multiples, outs):
      # [chunks, C, Q, ...] -> [P, Λ, R, ...], pads dropped
      toy = lambda x: x.reshape((chunks * C, L, R) + x.shape[3:])[:P]
      pad = lambda x: jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, k_max - x.shape[-1])],
                              constant_values=jnp.nan)
      decoder, hist = toy(params.W_d), toy(history)
      groups["decoder"].append(pad(decoder))
      groups["loss_history"].append(hist)
      groups["eval_loss"].append(toy(mets.eval_loss))
      groups["reconstruction_error"].append(toy(mets.reconstruction_error))
      groups["l0"].append(toy(mets.l0))
      groups["frequency"].append(pad(toy(mets.frequency)))
      groups["max_cosine"].append(toy(mets.max_cosine))
      coact = jnp.moveaxis(toy(mets.coactivation), -1, -2)  # [P, Λ, R, n, k]: latents last
      groups["coactivation"].append(jnp.moveaxis(pad(coact), -1, -2))
      for name in ("feature_frequency", "mse", "hidden_variance"):
        groups[name].append(toy(getattr(mets, name)))
      groups["diverged"].append(~(jnp.all(jnp.isfinite(decoder), axis=(-2, -1))
                                  & jnp.all(jnp.isfinite(hist), axis=-1)))
    out = {name: jnp.stack(v, axis=1) for name, v in groups.items()}  # [P, K, Λ, R, ...]
    for name in ("eval_loss", "reconstruction_error", "l0", "mse"):
      out[name] = jnp.where(out["diverged"], jnp.nan, out[name])
    return out

  return jax.jit(program)


def run(result: results.SweepResult, spec: SAESpec, *, progress: bool | None = None,
        chunk_size: int | None = None,
        devices: Sequence[jax.Device] | None = None) -> SAEResult:
  """Trains `spec`'s SAE grid on every toy model of `result` in one compiled call.

  Args:
    result: a trained toy grid of the bottleneck model (any axes).
    spec: the SAE grid and settings.
    progress: print progress to stderr; None = only when stderr is a terminal.
    chunk_size: toy models per chunk (each with its whole SAE grid); None =
      `choose_chunk_size`. Results do not depend on it beyond float rounding.
    devices: devices to shard the chunks over; None = the default backend's.

  Returns:
    An `SAEResult` with axes `result.axes + SAE_AXES`.
  """
  toy_spec = result.spec
  toys = toy_models(result)
  P, m, n = toys.W.shape
  devices = tuple(jax.devices() if devices is None else devices)
  devices = devices[:max(1, min(len(devices), P))]
  if chunk_size is None:
    chunk_size = choose_chunk_size(spec, P, n, m, len(devices))
  if progress is None:
    progress = sys.stderr.isatty()
  layout = Layout(spec, n, m, toy_spec.data, P, chunk_size, devices, progress)
  args = (jnp.asarray(toys.W), jnp.asarray(toys.density), jnp.asarray(toys.seed),
          jnp.asarray(spec.l1s, jnp.float32), jnp.asarray(spec.sae_seeds, jnp.uint32))
  t0 = time.perf_counter()
  compiled = _program(layout).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  windows = spec.steps // spec.log_every
  sae_count = P * int(np.prod(spec.grid_shape))
  display = (Progress(layout.n_chunks * len(spec.dict_multiples) * windows,
                      sae_count * spec.steps) if progress else None)
  with showing(display):
    t0 = time.perf_counter()
    out = jax.tree.map(np.asarray, jax.block_until_ready(compiled(*args)))
    run_s = time.perf_counter() - t0
  grid = toys.shape + spec.grid_shape
  data = {k: v.reshape(grid + v.shape[4:]) for k, v in out.items()}
  coords = {a: np.asarray(result.coords[a]) for a in result.axes}
  coords.update({"dict_multiple": np.asarray(spec.dict_multiples, np.int64),
                 "l1": np.asarray(spec.l1s, np.float64),
                 "sae_seed": np.asarray(spec.sae_seeds, np.int64)})
  toy = {"toy_W": np.asarray(result["W"]), "toy_eval_loss": np.asarray(result["eval_loss"]),
         "toy_diverged": np.asarray(result["diverged"])}
  toy_digest = result.meta.get("spec_digest") or toy_spec.digest()
  meta = {"sae_spec": spec.to_dict(), "toy_spec": toy_spec.to_dict(), "toy_digest": toy_digest,
          "sae_digest": spec.digest(toy_digest), "env": environment(devices),
          "engine": {"chunk_size": chunk_size, "devices": len(devices),
                     "chunks": layout.n_chunks},
          "timings": {"compile_s": compile_s, "run_s": run_s,
                      "sae_steps_per_s": sae_count * spec.steps / run_s}}
  extra = {"history_steps": np.asarray(spec.history_steps(), np.int64)}
  return SAEResult(coords=coords, data=data, toy=toy, extra=extra, meta=meta)


def cache_path(out: str, name: str, backend: str, result: results.SweepResult,
               spec: SAESpec) -> str:
  """`<out>/<name>-<backend>-<digest>.npz`, the digest of `spec` on `result`'s toy spec."""
  toy_digest = result.meta.get("spec_digest") or result.spec.digest()
  return os.path.join(out, f"{name}-{backend}-{spec.digest(toy_digest)}.npz")


def load_cached(path: str, result: results.SweepResult,
                spec: SAESpec) -> tuple[SAEResult | None, str | None]:
  """The cached SAE result at `path`, or `(None, why not)` (as `cache.load`): its stored
  digest must be that of `spec` on `result`'s toy spec."""
  if not os.path.exists(path):
    return None, None
  try:
    res = sae_results.load(path)
  except results.ResultFileError as e:
    return None, str(e)
  toy_digest = result.meta.get("spec_digest") or result.spec.digest()
  if res.meta.get("sae_digest") != spec.digest(toy_digest):
    return None, f"{path} holds an SAE result of another spec or engine; training again"
  return res, None


def train_or_load(name: str, result: results.SweepResult, spec: SAESpec,
                  args: argparse.Namespace) -> SAEResult:
  """Reuses the cached SAE stage of `result` in `--out` (unless --force), else trains
  and saves it (the SAE sibling of `launch.train_or_load`)."""
  from superpos_jax.cli import log
  path = cache_path(args.out, name, args.backend, result, spec)
  if not args.force:
    res, why = load_cached(path, result, spec)
    if res is not None:
      log(args, f"[{name}] reusing {os.path.relpath(path)} (same specs and SAE code; --force to re-train)")
      return res
    if why:
      print(f"warning: {why}", file=sys.stderr)
  K, L, R = spec.grid_shape
  toys = int(np.prod([len(result.coords[a]) for a in result.axes]))
  log(args, f"[{name}] training {toys * K * L * R:,} SAEs ({toys} toy models x {K} sizes x "
            f"{L} L1 x {R} seeds) x {spec.steps:,} steps")
  res = run(result, spec, devices=jax.devices(args.backend),
            progress=None if not args.quiet else False)
  if jax.process_index() == 0:
    sae_results.save(res, path)
    log(args, f"[{name}] {sae_results.summary(res)}; wrote {os.path.relpath(path)}")
  return res

