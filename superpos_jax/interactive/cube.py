"""What an explorer shows of a result: its axes, its metrics and each model's arrays.

A `Cube` is the one data model behind both the browser page (`page`) and the notebook
figures (`figures`). Every number in it is an array of the result file, or a
reduction the summaries and static figures already make (`SweepResult.reduce_seeds`,
`summary_sae.reduce`), or a count with a summary's own threshold: nothing is fitted or
smoothed. numpy only (no jax).

Grid positions: a *model* is one full index over `axes` (seed axes included); a *point*
is an index over the axes that are not seed axes. `best[point]` is the flat position,
over the seed axes, of the model the "best seed" rule keeps there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from superpos_jax import results, summary
from superpos_jax.sae import results as sae_results
from superpos_jax.sae import summary as summary_sae
from superpos_jax.phases import PHASES
from superpos_jax.plotting.phase_diagrams import PHASE_COLORS
from superpos_jax.plotting.style import DIVERGED_FACE

AXIS_LABELS = {"activation": "activation", "density": "density 1-S", "lr": "learning rate",
               "weight_decay": "weight decay", "init_scale": "init scale α", "seed": "seed",
               "dict_multiple": "dictionary size / n", "l1": "L1 coefficient λ",
               "sae_seed": "SAE seed"}
IMPORTANCE_LABELS = {"relative": "relative importance r of feature 2",
                     "geometric": "importance decay r (I<sub>i</sub> = r<sup>i</sup>)"}
SEED_AXES = ("seed", "sae_seed")
SUBSCRIPTS = "₀₁₂₃₄₅₆₇₈₉"


@dataclasses.dataclass
class Axis:
  """One grid axis: its name, label, coordinate values and whether plots use a log scale."""

  name: str
  label: str
  values: list  # floats, or names for "activation"
  log: bool


@dataclasses.dataclass
class Metric:
  """One number per model, plus its typical-seed reduction per point.

  Attributes:
    label: the text of hovers and colour bars (plotly HTML allowed: <sub>, <sup>).
    values: `[*grid]` one value per model.
    typical: `[*points]` the typical-seed value per point (None without seed axes).
    categories: names of integer values (phases), else None.
    colors: one colour per category.
    log: colour a heatmap by log10 of the value.
  """

  label: str
  values: np.ndarray
  typical: np.ndarray | None = None
  categories: tuple[str, ...] | None = None
  colors: tuple[str, ...] | None = None
  log: bool = False


@dataclasses.dataclass
class Cube:
  """A result as an explorer reads it (see the module docstring for models and points).

  Attributes:
    kind: "sweep" (a `SweepResult`) or "sae" (an `SAEResult`).
    result: the result (the notebook figures read captions from it).
    axes: every grid axis, seed axes included, in the result's order.
    metrics: name -> `Metric`.
    model: name -> per-model array `[*grid, ...]` (weights, loss history, ...).
    best: int `[*points]`: flat index over the seed axes of each point's best model.
    typical_label: what the typical-seed reduction is.
    history_steps: `[T]` step count at the end of each loss-history window.
    n, m: features and hidden dimensions of the toy models.
  """

  kind: str
  result: Any
  axes: list[Axis]
  metrics: dict[str, Metric]
  model: dict[str, np.ndarray]
  best: np.ndarray
  typical_label: str
  history_steps: np.ndarray
  n: int
  m: int

  @property
  def seed_axes(self) -> list[str]:
    return [a.name for a in self.axes if a.name in SEED_AXES]

  def axis(self, name: str) -> Axis:
    return next(a for a in self.axes if a.name == name)

  @property
  def point_axes(self) -> list[Axis]:
    return [a for a in self.axes if a.name not in SEED_AXES]

  @property
  def n_seeds(self) -> int:
    return int(np.prod([len(self.axis(a).values) for a in self.seed_axes], dtype=np.int64))

  def model_index(self, point: dict[str, int], k: int) -> tuple[int, ...]:
    """The full grid index of seed `k` (flat over the seed axes) at `point`."""
    shape = [len(self.axis(a).values) for a in self.seed_axes]
    seeds = dict(zip(self.seed_axes, np.unravel_index(k, shape))) if shape else {}
    return tuple(int(seeds[a.name]) if a.name in seeds else point[a.name] for a in self.axes)

  def seed_of(self, point: dict[str, int], mode: str) -> int:
    """The flat seed index a view's `seeds` mode ("best" or "<k>") shows at `point`."""
    if mode != "best":
      return int(mode)
    return int(self.best[tuple(point[a.name] for a in self.point_axes)])

  def value(self, name: str, point: dict[str, int], mode: str) -> float:
    """Metric `name` at `point` under the seeds mode "best", "typical" or "<k>"."""
    m = self.metrics[name]
    if mode == "typical":
      where = tuple(point[a.name] for a in self.point_axes)
      return np.nan if m.typical is None else m.typical[where]
    return m.values[self.model_index(point, self.seed_of(point, mode))]


def _axis(name: str, values: np.ndarray, importance_kind: str = "") -> Axis:
  if values.dtype.kind in "US":
    return Axis(name, AXIS_LABELS.get(name, name), [str(v) for v in values], False)
  values = np.asarray(values, np.float64)
  label = (IMPORTANCE_LABELS.get(importance_kind, "importance") if name == "importance"
           else AXIS_LABELS.get(name, name))
  positive = values.size > 1 and np.all(values > 0)
  log = bool(positive and name not in SEED_AXES and values.max() / values.min() >= 3)
  return Axis(name, label, [float(v) for v in values], log)


def _agreeing(phase: np.ndarray, healthy: np.ndarray, ax: int,
              shown: np.ndarray | None = None) -> np.ndarray:
  """Healthy seeds (along axis `ax`) in the phase `shown [*points]`, or, without `shown`,
  in each seed's own phase (`[*grid]`: what the "best" and "seed k" views show)."""
  P, H = np.moveaxis(phase, ax, -1), np.moveaxis(healthy, ax, -1)  # [..., S]
  if shown is not None:
    return ((P == shown[..., None]) & H).sum(-1)
  same = (P[..., :, None] == P[..., None, :]) & H[..., None, :]  # [..., S, S]
  return np.moveaxis(same.sum(-1), -1, ax)


def _sweep_metrics(res: results.SweepResult, typical: results.SweepResult | None
                   ) -> dict[str, Metric]:
  """The metrics of a sweep: its scalar arrays, ‖W_i‖ of small n, and the summaries' counts."""
  n = res.spec.n

  def metric(label, get, **kw):
    return Metric(label, np.asarray(get(res)),
                  None if typical is None else np.asarray(get(typical)), **kw)

  out = {"eval_loss": metric("eval loss", lambda r: r["eval_loss"], log=True),
         "final_loss": metric("final training loss", lambda r: r["final_loss"], log=True)}
  if "phase" in res.data:
    out["phase"] = metric("phase", lambda r: r["phase"], categories=PHASES,
                          colors=tuple(PHASE_COLORS[i] for i in range(len(PHASES))))
  for i in range(n if n <= 3 else 0):
    out[f"norm_{i}"] = metric(f"‖W{SUBSCRIPTS[i + 1]}‖", lambda r, i=i: r["feature_norms"][..., i])
  out["dims_per_feature"] = metric("D* = m / ‖W‖<sub>F</sub><sup>2</sup>",
                                   lambda r: r["dims_per_feature"])
  out["frobenius_sq"] = Metric("‖W‖<sub>F</sub><sup>2</sup>",
                               np.sum(np.square(res["W"]), axis=(-2, -1)),
                               None if typical is None else np.full(typical["eval_loss"].shape,
                                                                    np.nan))
  if n > 3:
    out["embedded_norm"] = metric(f"features with ‖W<sub>i</sub>‖ > {summary.EMBEDDED_NORM:g}",
                                  lambda r: (r["feature_norms"] > summary.EMBEDDED_NORM).sum(-1))
    out["embedded_dims"] = metric(
        f"features with D<sub>i</sub> > {summary.EMBEDDED_DIMENSIONALITY:g}",
        lambda r: (r["feature_dimensionality"] > summary.EMBEDDED_DIMENSIONALITY).sum(-1))
  out["diverged"] = metric("diverged", lambda r: r["diverged"], categories=("no", "yes"),
                           colors=("#ffffff", DIVERGED_FACE))
  return out


def sweep_cube(result: results.SweepResult) -> Cube:
  """The cube of a `SweepResult`: typical seed = `reduce_seeds("trimmed_mean")`."""
  spec = result.spec
  axes = [_axis(a, result.coords[a], spec.importance_kind) for a in result.axes]
  seeded = "seed" in result.coords
  typical = result.reduce_seeds("trimmed_mean") if seeded else None
  metrics = _sweep_metrics(result, typical)
  if "phase" in result.data and seeded:
    ax, healthy = result.axes.index("seed"), ~result["diverged"]
    metrics["agree"] = Metric(f"seeds (of {len(result.coords['seed'])}) in the shown phase",
                              _agreeing(result["phase"], healthy, ax),
                              _agreeing(result["phase"], healthy, ax, typical["phase"]))
  model = {k: result.data[k] for k in ("W", "W2", "b", "loss_history", "feature_norms",
                                       "superposition", "feature_dimensionality")
           if k in result.data}
  best = result.best_seed() if seeded else np.zeros(result["eval_loss"].shape, np.int32)
  return Cube("sweep", result, axes, metrics, model, np.asarray(best, np.int32),
              "typical seed: mean of the seeds without the worst (majority phase)",
              np.asarray(result.extra["history_steps"]), spec.n, spec.m)


def sae_cube(result: sae_results.SAEResult) -> Cube:
  """The cube of an `SAEResult` at the summaries' setting (`summary_sae.first_setting`):
  axes (activation, density, seed, dict_multiple, l1, sae_seed); best = the best toy seed
  and its best SAE seed, typical = the median over toy and SAE seeds (`summary_sae.reduce`)."""
  res = summary_sae.first_setting(result)
  axes = [_axis(a, res.coords[a]) for a in res.axes]
  values = summary_sae.sae_values(res)
  shape = res["eval_loss"].shape
  named = {"mmcs": "MMCS over embedded features", "recovered": "features recovered",
           "fraction recovered": "fraction of embedded features recovered",
           "dead latents": "fraction of dead latents", "dense latents": "fraction of dense latents",
           "reconstruction_error": "relative reconstruction error", "l0": "L0 (active latents)"}
  metrics = {}
  for key, label in named.items():
    v = np.asarray(values[key], np.float64)
    typical = summary_sae.reduce(v, res, summary_sae.TYPICAL)
    metrics[key.replace(" ", "_")] = Metric(label, v, typical)
  loss = np.where(res["diverged"], np.nan, res["eval_loss"])
  metrics["eval_loss"] = Metric("SAE eval loss", loss,
                                summary_sae.reduce(loss, res, summary_sae.TYPICAL), log=True)
  bad = res["diverged"] | res.toy["toy_diverged"][..., None, None, None]
  metrics["diverged"] = Metric("diverged", bad, ~np.isfinite(metrics["eval_loss"].typical),
                               categories=("no", "yes"), colors=("#ffffff", DIVERGED_FACE))
  for key in ("embedded", "superposed"):
    v = np.broadcast_to(values[key][:, :, :, None, None, None], shape).astype(np.float64)
    metrics[key] = Metric(f"toy features {key}", v, summary_sae.reduce(v, res, summary_sae.TYPICAL))
  toy, sae_seed = summary_sae.best_seed_index(res)  # [A, D], [A, D, S, K, Λ]
  R = shape[-1]
  best = toy[:, :, None, None] * R + summary_sae.pick_toy(sae_seed, toy)
  model = {"loss_history": res["loss_history"], "max_cosine": res["max_cosine"],
           "frequency": res["frequency"]}
  spec = res.toy_spec
  return Cube("sae", res, axes, metrics, model, np.asarray(best, np.int32),
              "typical seed: median over toy and SAE seeds",
              np.asarray(res.extra["history_steps"]), spec.n, spec.m)


def build(result: Any) -> Cube:
  """The cube of a `SweepResult` or `SAEResult`."""
  if isinstance(result, sae_results.SAEResult):
    return sae_cube(result)
  return sweep_cube(result)


def load(path: str) -> Any:
  """Reads a toy sweep or SAE result file, whichever it is (`ResultFileError` otherwise)."""
  try:
    return results.load(path)
  except results.ResultFileError as toy_error:
    try:
      return sae_results.load(path)
    except results.ResultFileError:
      raise toy_error from None
