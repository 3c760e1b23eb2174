"""The engine's ReLU workloads trained by occhio's `ModelGrid` (PyPI `occhio`, 0.2.3).

occhio ("experiment with Toy Models of Superposition") trains a grid of `ToyModel`s with
`torch.vmap` over their stacked module state and one `torch.optim.AdamW`, sampling each
distinct distribution once per step; it needs one autoencoder kind per grid, so one
activation (its `TiedLinearRelu`: `x' = ReLU(Wᵀ W x + b)`, the engine's ReLU bottleneck).
The grid is built as occhio's own phase-change example builds it: an axis per swept
value (density, relative importance, seed), a `create_model(params)` that returns a
`ToyModel` of `SparseUniform(n, p_active=density)` with a seeded `torch.Generator`
(one per toy seed, so that every model of a (density, seed) shares its samples) and
importances `[1, r]` (n = 2) or the spec's vector. Where its API forces a difference
from the engine's work, `NOTES` says so; the one difference chosen here is the init.

    run = train_grid(spec)            # OcchioRun: setup_s, run_s, W [P, m, n], threads, ...
    check = compare(spec, W_engine, run.W)   # same phases (n = 2) / D* (n > 2)?
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import jax
import numpy as np

from superpos_jax import inits, metrics, theory
from superpos_jax.phases import PHASES
from superpos_jax.spec import SweepSpec

# torch (and occhio) are imported where a grid is trained: `compare` runs without them.

NOTES = {
    "init": "W from the engine's init family (per-model Xavier normal, std sqrt(2/(n+m))), "
            "b = 0, drawn by a generator per model: occhio's own TiedLinearRelu init "
            "(N(0, 1/m), columns scaled to unit norm) is overwritten before fit, and its "
            "examples' one generator per grid (every model the same init) is not used, so "
            "that both start from the same distribution",
    "sampling": "SparseUniform draws two uniforms per feature (mask u < density, value U[0,1)) "
                "where the engine thins one; once per step per distinct (density, seed), "
                "shared by every importance (the engine shares one draw per seed)",
    "loss": "each model's loss is the engine's (batch mean of sum_i I_i (x_i - x'_i)^2), but "
            "fit differentiates the MEAN over the grid's P models, so every gradient is "
            "divided by P; AdamW undoes the scale except against eps = 1e-8",
    "timing": "run s = ModelGrid.fit (stacking the models' state, every step, writing the "
              "weights back; its tqdm bar on a pipe); compile s = building the ModelGrid "
              "(one create_model per point); no evaluation loss; torch threads: the faster "
              "of 1 and one per core on a 5-step trial fit (busy shared cores can make "
              "torch's threads wait on each other many times over)",
}
# Steps of each thread count's trial fit (`choose_threads`).
PROBE_STEPS = 5
# Seeds of the models' init generators: this plus the flat point index (data generators
# are seeded by the toy seed itself).
INIT_STREAM = 1_000_003
# The cross-implementation disagreement may exceed the within-implementation (seed to
# seed) one by this factor plus FLOOR before a check fails (fixed before any run).
NOISE_FACTOR = 1.5
FLOOR = {"phase": 0.02, "dstar": 0.01}


class OcchioRun(NamedTuple):
  """A grid trained by occhio, in the engine's flat point order."""

  setup_s: float  # ModelGrid construction
  run_s: float  # ModelGrid.fit
  W: np.ndarray  # [P, m, n]
  b: np.ndarray  # [P, n]
  threads: int  # torch's intra-op threads of the fit
  probe: dict | None  # {threads: seconds of a PROBE_STEPS-step fit}, when chosen


def _hyperparameters(spec: SweepSpec) -> tuple[float, float, float]:
  import torch_way
  return torch_way.hyperparameters(spec)  # one lr, weight decay, init scale; bottleneck


def _check_spec(spec: SweepSpec) -> None:
  if spec.model != "bottleneck" or spec.data != "independent":
    raise ValueError("occhio's TiedLinearRelu is the bottleneck model on independent features")
  if spec.activations != ("relu",):
    raise ValueError("occhio's ModelGrid trains one autoencoder kind per grid: give the "
                     f"relu workload alone, not {spec.activations}")


def make_grid(spec: SweepSpec):
  """A function that builds a fresh `occhio.ModelGrid` of the ReLU grid `spec`."""
  import torch
  from occhio import ModelGrid, ToyModel
  from occhio.autoencoder import TiedLinearRelu
  from occhio.distributions.sparse import SparseUniform
  from occhio.model_grid import Axis

  _check_spec(spec)
  _, _, scale = _hyperparameters(spec)
  n, m = spec.n, spec.m
  std = scale * inits.init_std(n, m, spec.init, spec.init_instances)
  importance = dict(zip(spec.importances, spec.importance_matrix().astype(np.float32)))

  point = {(d, r, s): k for k, (d, r, s) in enumerate(
      (d, r, s) for d in spec.densities for r in spec.importances for s in spec.seeds)}

  def create_model(params: dict[str, Any]) -> ToyModel:
    d, r, s = params["Density"], params["Importance"], int(params["Seed"])
    # Data: one generator per seed, so that sampling is shared by every model of a
    # (density, seed) as in occhio's examples; init: one per model (NOTES["init"]).
    data = torch.Generator().manual_seed(s)
    init = torch.Generator().manual_seed(INIT_STREAM + point[d, r, s])
    ae = TiedLinearRelu(n, m, generator=init)
    with torch.no_grad():
      ae.W.copy_(torch.randn((m, n), generator=init) * std)
    return ToyModel(distribution=SparseUniform(n, p_active=d, generator=data), ae=ae,
                    importances=torch.from_numpy(importance[r]))

  axes = [Axis("Density", torch.tensor(spec.densities, dtype=torch.float64)),
          Axis("Importance", torch.tensor(spec.importances, dtype=torch.float64)),
          Axis("Seed", torch.tensor(spec.seeds, dtype=torch.float64))]
  # Axis values come back as 0-d tensors: key the points by Python floats.
  return lambda: ModelGrid(
      lambda params: create_model({k: v.item() for k, v in params.items()}), axes=axes)


def _fit(grid, spec: SweepSpec, steps: int) -> float:
  """Seconds of `grid.fit` for `steps` steps with the spec's batch, lr and weight decay."""
  lr, weight_decay, _ = _hyperparameters(spec)
  t0 = time.perf_counter()
  grid.fit(n_epochs=steps, batch_size=spec.batch_size, learning_rate=lr,
           weight_decay=weight_decay)
  return time.perf_counter() - t0


def choose_threads(spec: SweepSpec, build, steps: int = PROBE_STEPS) -> tuple[int, dict]:
  """The faster of 1 thread and one per core on a `steps`-step fit of a fresh grid.

  Busy shared cores make torch's OpenMP threads wait on each other: in one trial on
  this benchmark's loaded 2-core machine, 2 threads ran an n = 2 grid 14x slower than
  1. Returns `(threads, {threads: probe seconds})`.
  """
  import torch
  probe = {}
  for t in sorted({1, os.cpu_count() or 1}):
    torch.set_num_threads(t)
    probe[t] = _fit(build(), spec, steps)
  return min(probe, key=probe.get), probe


def train_grid(spec: SweepSpec, *, threads: int | None = None) -> OcchioRun:
  """Trains every point of the ReLU grid `spec` with one `occhio.ModelGrid.fit` call.

  Args:
    spec: activations ("relu",); densities x importances x seeds, one lr, weight
      decay and init scale.
    threads: torch's intra-op threads; None = `choose_threads`.

  Returns:
    An `OcchioRun`; points in the engine's (density, importance, seed) order.
  """
  import torch
  build = make_grid(spec)
  # torch imports its compiler stack on the first optimiser (10 s here): an import, kept
  # out of the timings as importing jax is kept out of the engine's.
  torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
  probe = None
  if threads is None:
    threads, probe = choose_threads(spec, build)
  torch.set_num_threads(threads)
  t0 = time.perf_counter()
  grid = build()
  setup_s = time.perf_counter() - t0
  run_s = _fit(grid, spec, spec.steps)
  models = grid.models.ravel()
  W = np.stack([mdl.ae.W.detach().numpy() for mdl in models])
  b = np.stack([mdl.ae.b.detach().numpy() for mdl in models])
  return OcchioRun(setup_s, run_s, W, b, threads, probe)


def version() -> str:
  from importlib.metadata import version as installed
  return installed("occhio")


def notes() -> list[str]:
  """The report's notes on what occhio's rows do differently (`NOTES`)."""
  return [f"occhio ({version()}, ModelGrid.fit, ReLU workloads only: one autoencoder kind "
          "per grid) vs the engine on the same grid, steps, batch, lr and weight decay, "
          "between two runs of the engine (its row: their mean). " +
          "; ".join(f"{k}: {v}" for k, v in NOTES.items()) + "."]


def _disagreement(values: np.ndarray, distance) -> dict[str, float]:
  """Mean distance between seeds of one implementation and across the two.

  `values [2, S, X]`: implementation (engine, occhio), seed, grid point.
  """
  S = values.shape[1]
  within = [distance(values[k, s], values[k, t]) for k in range(2)
            for s in range(S) for t in range(s + 1, S)]
  cross = [distance(values[0, s], values[1, t]) for s in range(S) for t in range(S)]
  return {"within": float(np.mean(within)) if within else float("nan"),
          "cross": float(np.mean(cross))}


def compare(spec: SweepSpec, W_engine: np.ndarray, W_occhio: np.ndarray) -> dict[str, Any]:
  """Do occhio's models land where the engine's do, within seed noise?

  n = 2: the phase of every (density, importance, seed) model (`metrics.classify_phase`,
  the project's rule); n > 2: D* = m / ‖W‖_F² per model. Disagreement between two seeds
  of one implementation (within) against two seeds of different implementations
  (cross): the fraction of points whose phase differs, or the mean |ΔD*|. The check
  holds when cross <= NOISE_FACTOR * within + FLOOR.

  Args:
    spec: the ReLU workload (at least 2 seeds for a within-implementation baseline).
    W_engine, W_occhio: `[P, m, n]` in the engine's flat order.

  Returns:
    A JSON-ready dict: quantity, within, cross, holds, rule, and per implementation
    the closed-form agreement (n = 2) or D* per density (seed mean).
  """
  _check_spec(spec)
  D, I, S = len(spec.densities), len(spec.importances), len(spec.seeds)
  W = np.stack([W_engine, W_occhio]).reshape(2, D, I, S, spec.m, spec.n)
  if spec.n == 2:
    phase = np.asarray(jax.vmap(metrics.classify_phase)(W.reshape(-1, spec.m, 2)))
    phase = phase.reshape(2, D, I, S)
    values, quantity = np.moveaxis(phase, 3, 1).reshape(2, S, D * I), "phase"
    out = _disagreement(values, lambda a, b: float(np.mean(a != b)))
    dens, r = np.meshgrid(np.asarray(spec.densities), np.asarray(spec.importances), indexing="ij")
    closed = theory.relu_closed_form_phase(dens, r)[..., None]  # [D, I, 1]
    out["closed-form agreement"] = {way: float(np.mean(phase[k] == closed))
                                    for k, way in enumerate(("engine", "occhio"))}
    out["phase shares"] = {way: {PHASES[p]: float(np.mean(phase[k] == p))
                                 for p in range(len(PHASES))}
                           for k, way in enumerate(("engine", "occhio"))}
  else:
    dstar = np.asarray(jax.vmap(metrics.dims_per_feature)(W.reshape(-1, spec.m, spec.n)))
    dstar = dstar.reshape(2, D, I, S)
    values, quantity = np.moveaxis(dstar, 3, 1).reshape(2, S, D * I), "dstar"
    out = _disagreement(values, lambda a, b: float(np.mean(np.abs(a - b))))
    out["dstar by density (seed mean)"] = {
        way: dstar[k].mean(axis=(1, 2)).tolist() for k, way in enumerate(("engine", "occhio"))}
  out["holds"] = bool(out["cross"] <= NOISE_FACTOR * out["within"] + FLOOR[quantity])
  out["quantity"] = quantity
  out["rule"] = (f"cross <= {NOISE_FACTOR} x within + {FLOOR[quantity]}: "
                 + ("share of (point, seed pair) phases that differ" if quantity == "phase"
                    else "mean |D*(a) - D*(b)| over densities and seed pairs"))
  return out
