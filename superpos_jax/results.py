"""Sweep results: the schema, `.npz` save/load, and selection by coordinates.

The only module that reads or writes result files. numpy + json only (no jax), so the
plotting layer can read results in a process that never imports jax.

One `.npz` holds:
  - `coord_<axis>`: the coordinate values of each grid axis (`AXES`);
  - the arrays of `SCHEMA`, each shaped `grid_shape + per-model shape`;
  - `importance_vectors [I, n]` and `history_steps [T]`;
  - `meta`: a JSON string with the schema version, the spec, the environment (versions,
    backend, devices, git commit) and the timings.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from superpos_jax.atomic import (STALE_AFTER_S, TMP_PREFIX, remove_stale_temp_files,  # noqa: F401
                                 write_atomically)
from superpos_jax.phases import PHASES
from superpos_jax.spec import AXES, SpecError, SweepSpec

SCHEMA_VERSION = 1

# Per-model arrays: name -> (dims after the grid axes, description).
SCHEMA: dict[str, tuple[tuple[str, ...], str]] = {
    "W": (("m", "n"), "final weights (W₁, the encoder, of the untied `abs` model)"),
    "b": (("n",), "final bias"),
    "loss_history": (("history",), "mean training loss over each logging window"),
    "final_loss": ((), "mean training loss over the last logging window"),
    "eval_loss": ((), "loss on a fixed evaluation set shared by every model"),
    "diverged": ((), "True where loss or weights became NaN/inf"),
    "feature_norms": (("n",), "‖W_i‖"),
    "superposition": (("n",), "Σ_{j≠i} (Ŵ_i·W_j)²"),
    "feature_dimensionality": (("n",), "D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²"),
    "dims_per_feature": ((), "D* = m / ‖W‖_F²"),
    "phase": ((), "n=2 phase index into PHASES (only when n=2)"),
}
OPTIONAL = frozenset({"phase"})
# A model family's params other than W and b (the `abs` model's decoder W2, a Flax
# family's LayerNorm scale, ...) are stored as "param_<name>", dims
# `<key>_0, <key>_1, ...` (the name as `model.named_params` gives it).
PARAM_PREFIX = "param_"


def param_key(name: str) -> str:
  """The result array of a model family's parameter `name` (other than W and b): the
  name with the prefix, so that a parameter named like a metric (`eval_loss`, `phase`)
  can never replace it."""
  return PARAM_PREFIX + name


def named_params(result: "SweepResult") -> dict[str, np.ndarray]:
  """Every final parameter of the result's models by the family's own names (`W`, `b`
  and the `param_` arrays without their prefix), each with the grid's leading axes:
  what `model.params_from_named` rebuilds a family's params from."""
  out = {"W": result["W"], "b": result["b"]}
  out.update({k[len(PARAM_PREFIX):]: v for k, v in result.data.items()
              if k.startswith(PARAM_PREFIX)})
  return out


# Metrics that reduce_seeds("trimmed_mean") averages.
AVERAGED = ("eval_loss", "final_loss", "feature_norms", "superposition",
            "feature_dimensionality", "dims_per_feature", "loss_history")
# A model's parameters: a "trimmed_mean" reduction holds none (averaging weights is
# meaningless under their symmetries, and one seed's W would not be the W whose norms
# `feature_norms` averages).
PARAMETERS = ("W", "b")
EXTRA = ("importance_vectors", "history_steps")

# How figures and summaries collapse the seed axis (see `SweepResult.reduce_seeds`).
SEED_RULES = ("best", "trimmed_mean")


class ResultFileError(ValueError):
  """A file that is not a readable superpos_jax result of a known schema version."""


@dataclasses.dataclass
class SweepResult:
  """Arrays of a trained grid, indexable by axis names and coordinate values.

  Attributes:
    coords: axis name -> coordinate values; `coords["activation"]` are names.
    data: array name (see `SCHEMA`) -> array of shape `grid_shape + per-model shape`.
    extra: `importance_vectors [I, n]`, `history_steps [T]`.
    meta: JSON-able dict: `spec`, `env`, `timings`, `schema_version`.
  """

  coords: dict[str, np.ndarray]
  data: dict[str, np.ndarray]
  extra: dict[str, np.ndarray]
  meta: dict[str, Any]

  @property
  def axes(self) -> tuple[str, ...]:
    return tuple(a for a in AXES if a in self.coords)

  @property
  def spec(self) -> SweepSpec:
    """The typed spec the result was trained from."""
    return SweepSpec.from_dict(self.meta["spec"])

  def __getitem__(self, name: str) -> np.ndarray:
    if name not in self.data and (name in PARAMETERS or name.startswith(PARAM_PREFIX)) \
        and self.meta.get("seed_rule") == "trimmed_mean":
      raise KeyError(f"{name!r}: a trimmed_mean reduction averages metrics and holds no "
                     f"weights; reduce_seeds('best') gives the best seed's {name}")
    return self.data[name]

  def index(self, axis: str, value: Any) -> int:
    """Position of `value` on `axis`: the value itself, or else the one value within
    relative 1e-6 of it (a float written with fewer digits); a KeyError where there is
    none, or several (say more digits)."""
    values = self.coords[axis]
    if values.dtype.kind in "US":
      hits = np.flatnonzero(values == value)
    else:
      try:
        value = float(value)
      except (TypeError, ValueError):
        raise KeyError(f"{axis}={value!r} is not a number; values: {values.tolist()}") from None
      hits = np.flatnonzero(values == value)
      if hits.size == 0:
        hits = np.flatnonzero(np.isclose(values, value, rtol=1e-6, atol=0.0))
        if hits.size > 1:
          raise KeyError(f"{axis}={value!r} is within 1e-6 of several values "
                         f"({values[hits].tolist()}): give it exactly")
    if hits.size == 0:
      raise KeyError(f"{axis}={value!r} is not in this result; values: {values.tolist()}")
    return int(hits[0])

  def sel(self, **selection: Any) -> "SweepResult":
    """Selects coordinate values: a single value drops its axis, a list keeps the axis
    with those values, in the list's order.

    Example (a result of `SweepSpec(n=10, m=5, densities=(1.0, 0.1, 0.01), seeds=(0, 1, 2))`,
    whose axes are `spec.AXES`: activation, density, importance, lr, weight_decay,
    init_scale, seed):

      res.sel(activation="relu", density=0.1)["W"]          # [I, L, WD, AL, S, m, n]
      res.sel(activation=["relu", "tanh"], seed=0)["W"]      # [2, D, I, L, WD, AL, m, n]
      res.sel(activation="relu", density=0.1).squeeze()["W"]  # [S, m, n] (I = L = WD = AL = 1)
    """
    unknown = set(selection) - set(self.axes)
    if unknown:
      raise KeyError(f"unknown axes {sorted(unknown)}; axes: {self.axes}")

    def pick(axis):
      value = selection[axis]
      if isinstance(value, (list, tuple, np.ndarray)):
        return np.asarray([self.index(axis, v) for v in value], np.int64)
      return self.index(axis, value)

    data = self.data
    # One axis at a time (numpy would pair up several index lists instead).
    for pos in reversed(range(len(self.axes))):
      a = self.axes[pos]
      if a in selection:
        i = pick(a)
        data = {k: np.take(v, i, axis=pos) for k, v in data.items()}
    coords = {a: (v[pick(a)] if a in selection else v) for a, v in self.coords.items()
              if a not in selection or np.ndim(pick(a)) == 1}
    return dataclasses.replace(self, coords=coords, data=data)

  def squeeze(self) -> "SweepResult":
    """Drops every grid axis of length 1 (its value stays in `meta["spec"]`)."""
    return self.sel(**{a: self.coords[a][0] for a in self.axes if len(self.coords[a]) == 1})

  def to_xarray(self):
    """The result as an `xarray.Dataset` (needs the `xarray` extra).

    Every array of `SCHEMA` becomes a variable whose dims are the grid axes left in this
    result followed by its per-model dims (`m`, `n`, `history`); the grid axes are
    coordinates (`activation` names, `density`, ...), `history` is labelled with the step
    count at the end of each window, and `importance_vector [importance, n]` holds the
    importance vectors. `attrs` hold the spec, environment and timings as JSON strings,
    so `.sel`, `.groupby`, `.plot` and `to_netcdf` / `to_zarr` work directly:

        ds = result.to_xarray()
        ds.eval_loss.sel(activation="relu").min("seed")
    """
    try:
      import xarray as xr
    except ImportError:
      raise ImportError("SweepResult.to_xarray needs xarray: pip install 'superpos_jax[xarray]' "
                        "(or pip install xarray)") from None
    axes = self.axes
    variables = {}
    for k, v in self.data.items():
      if k in SCHEMA:
        dims, description = SCHEMA[k]
      else:
        dims = tuple(f"{k}_{i}" for i in range(np.ndim(v) - len(axes)))
        description = f"final parameter {k[len(PARAM_PREFIX):]} of the model family"
      attrs = {"description": description}
      if k == "phase":
        attrs["labels"] = json.dumps(list(PHASES))
      variables[k] = (axes + dims, np.asarray(v), attrs)
    coords = {a: np.asarray(self.coords[a]) for a in axes}
    coords["history"] = ("history", np.asarray(self.extra["history_steps"]),
                         {"description": "step count at the end of each logging window"})
    vectors = np.asarray(self.extra["importance_vectors"])
    if "importance" in coords and vectors.shape[0] == len(coords["importance"]):
      variables["importance_vector"] = (("importance", "n"), vectors,
                                        {"description": "importance of every feature"})
    meta = self.meta
    attrs = {k: json.dumps(meta[k], sort_keys=True) for k in ("spec", "env", "timings", "engine")
             if k in meta}
    if "spec_digest" in meta:
      attrs["spec_digest"] = str(meta["spec_digest"])
    attrs["schema_version"] = SCHEMA_VERSION
    return xr.Dataset(variables, coords=coords, attrs=attrs)

  def best_seed(self) -> np.ndarray:
    """Position on the seed axis of the lowest finite `eval_loss` at every grid point.

    The seed `reduce_seeds("best")` keeps; an explorer page marks it with this index.

    Returns:
      int `[grid shape less the seed axis]`.
    """
    if "seed" not in self.coords:
      raise ValueError("this result has no seed axis left")
    loss = np.where(np.isfinite(self.data["eval_loss"]), self.data["eval_loss"], np.inf)
    return np.argmin(loss, axis=self.axes.index("seed"))

  def reduce_seeds(self, rule: str = "best") -> "SweepResult":
    """Collapses the seed axis the way TMS phase diagrams do.

    Args:
      rule: "best" keeps, at every grid point, every array of the seed with the lowest
        `eval_loss` (training sometimes lands in a local minimum): one model, whose
        metrics are those of its W. "trimmed_mean" discards the worst seed and, over the
        kept healthy ones, gives: the mean of each `AVERAGED` metric (`feature_norms` is
        the mean of the seeds' `‖W_i‖`, not the norm of any one W), `phase` the most
        common phase (ties: the best seed's), `diverged` True only where every kept seed
        diverged; it holds no `W`, `b` or `param_` arrays (asking for them raises a
        KeyError). The rule is recorded as `meta["seed_rule"]`.
    """
    if rule not in SEED_RULES:
      raise ValueError(f"unknown seed rule {rule!r}; valid: {', '.join(SEED_RULES)}")
    best = self.best_seed()  # raises where no seed axis is left
    ax = self.axes.index("seed")
    best = np.expand_dims(best, ax)
    loss = np.where(np.isfinite(self.data["eval_loss"]), self.data["eval_loss"], np.inf)

    def take(v, which):
      which = which.reshape(which.shape + (1,) * (v.ndim - which.ndim))
      return np.take_along_axis(v, which, axis=ax).squeeze(ax)

    data = {k: take(v, best) for k, v in self.data.items()}
    if rule == "trimmed_mean":
      for k in [k for k in data if k in PARAMETERS or k.startswith(PARAM_PREFIX)]:
        data.pop(k)
      n_seeds = loss.shape[ax]
      order = np.argsort(loss, axis=ax)
      kept = np.take(order, np.arange(max(n_seeds - 1, 1)), axis=ax)  # drop the worst
      kept_seeds = [np.take(kept, [i], axis=ax) for i in range(kept.shape[ax])]
      ok = np.stack([~take(self.data["diverged"], s) for s in kept_seeds])  # [K, ...grid]
      # Average only healthy seeds; a point is diverged only if every kept seed is.
      data["diverged"] = ~ok.any(0)
      for k in AVERAGED:
        stacked = np.stack([take(self.data[k], s) for s in kept_seeds])
        mask = ok.reshape(ok.shape + (1,) * (stacked.ndim - ok.ndim))
        total = np.where(mask, stacked, 0.0).sum(0)
        count = np.broadcast_to(mask, stacked.shape).sum(0)
        data[k] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
      if "phase" in self.data:
        phases = np.stack([take(self.data["phase"], s) for s in kept_seeds])
        counts = np.stack([((phases == p) & ok).sum(0) for p in range(len(PHASES))])
        # Most common phase; ties go to the best seed's phase.
        best_phase = data["phase"]
        best_count = np.take_along_axis(counts, best_phase[None].astype(np.int64), 0)[0]
        data["phase"] = np.where(counts.max(0) > best_count, counts.argmax(0), best_phase)
    coords = {a: v for a, v in self.coords.items() if a != "seed"}
    return dataclasses.replace(self, coords=coords, data=data, meta=dict(self.meta, seed_rule=rule))


def save(result: SweepResult, path: str | os.PathLike) -> str:
  """Writes `result` to `path` atomically (temp file in the same folder, then rename).

  A crash or Ctrl-C mid-write leaves at most a stray temp file, never a half-written
  result under the final name. Returns the path written.
  """
  path = os.fspath(path)
  if not path.endswith(".npz"):
    path += ".npz"
  arrays = {f"coord_{a}": np.asarray(v) for a, v in result.coords.items()}
  arrays.update({k: np.asarray(v) for k, v in result.data.items()})
  arrays.update({k: np.asarray(v) for k, v in result.extra.items()})
  meta = dict(result.meta, schema_version=SCHEMA_VERSION, axes=list(result.axes))
  arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
  return write_atomically(path, lambda f: np.savez_compressed(f, **arrays))


def load(path: str | os.PathLike) -> SweepResult:
  """Reads and validates a result file; raises `ResultFileError` with a clear message,
  whatever is wrong with the file (never another exception for a damaged one)."""
  path = os.fspath(path)
  try:
    return _load(path)
  except ResultFileError:
    raise
  except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as e:
    raise ResultFileError(f"{path}: malformed result file ({type(e).__name__}: "
                          f"{(str(e).splitlines() or [''])[0][:200]})") from None


def _load(path: str) -> SweepResult:
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except FileNotFoundError:
    raise ResultFileError(f"{path}: no such file") from None
  except Exception as e:  # zipfile/np errors for foreign or truncated files
    raise ResultFileError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
  if "meta" not in arrays:
    raise ResultFileError(f"{path}: not a superpos_jax result (no 'meta' entry)")
  try:
    meta = json.loads(str(arrays.pop("meta")))
  except json.JSONDecodeError as e:
    raise ResultFileError(f"{path}: corrupted metadata ({e})") from None
  if not isinstance(meta, dict):
    raise ResultFileError(f"{path}: corrupted metadata (a JSON {type(meta).__name__}, "
                          f"expected an object)")
  version = meta.get("schema_version")
  if version != SCHEMA_VERSION:
    raise ResultFileError(
        f"{path}: schema version {version!r} is not supported (this superpos_jax reads "
        f"version {SCHEMA_VERSION}); re-run the experiment to regenerate it")
  if "W2" in arrays:  # written before every family parameter but W and b was "param_"
    arrays[param_key("W2")] = arrays.pop("W2")
  coords = {a: arrays.pop(f"coord_{a}") for a in AXES if f"coord_{a}" in arrays}
  optional = OPTIONAL | (set(PARAMETERS) if meta.get("seed_rule") == "trimmed_mean" else set())
  missing = [k for k in (*SCHEMA, *EXTRA) if k not in arrays and k not in optional]
  missing += [f"coord_{a}" for a in AXES if a not in coords and a in meta.get("axes", AXES)]
  if missing:
    raise ResultFileError(f"{path}: missing entries {missing}")
  axes = tuple(a for a in AXES if a in coords)
  for a in axes:
    if coords[a].ndim != 1 or (a == "activation") != (coords[a].dtype.kind in "US"):
      raise ResultFileError(f"{path}: coord_{a} has shape {coords[a].shape} and dtype "
                            f"{coords[a].dtype}, expected a list of "
                            f"{'names' if a == 'activation' else 'numbers'}")
  grid_shape = tuple(len(coords[a]) for a in axes)
  data = {k: arrays.pop(k) for k in (*SCHEMA, *sorted(arrays))
          if k in arrays and (k in SCHEMA or k.startswith(PARAM_PREFIX))}
  for k, v in data.items():
    if v.shape[:len(grid_shape)] != grid_shape:
      raise ResultFileError(f"{path}: {k} has shape {v.shape}, expected grid {grid_shape} first")
  extra = {k: arrays.pop(k) for k in EXTRA}
  if extra["history_steps"].ndim != 1 or extra["importance_vectors"].ndim != 2:
    raise ResultFileError(f"{path}: history_steps must be 1-D and importance_vectors 2-D, got "
                          f"{extra['history_steps'].shape}, {extra['importance_vectors'].shape}")
  if "loss_history" in data and data["loss_history"].shape[-1:] != extra["history_steps"].shape:
    raise ResultFileError(f"{path}: loss_history has {data['loss_history'].shape[-1]} windows, "
                          f"history_steps {extra['history_steps'].shape[0]}")
  if not isinstance(meta.get("spec"), dict):
    raise ResultFileError(f"{path}: no spec in the metadata")
  try:
    SweepSpec.from_dict(meta["spec"])
  except (SpecError, TypeError, ValueError) as e:
    raise ResultFileError(f"{path}: invalid stored spec ({e})") from None
  return SweepResult(coords=coords, data=data, extra=extra, meta=meta)


def summary(result: SweepResult) -> str:
  """One line describing a result, for logs."""
  shape = " x ".join(f"{len(result.coords[a])} {a}" for a in result.axes)
  t = result.meta.get("timings")
  env = result.meta.get("env")
  t, env = (t if isinstance(t, dict) else {}), (env if isinstance(env, dict) else {})
  seconds = lambda k: t[k] if isinstance(t.get(k), (int, float)) else float("nan")
  spec = result.spec
  return (f"{shape} (n={spec.n}, m={spec.m}, {spec.steps} steps) "
          f"on {env.get('backend', '?')}: compile {seconds('compile_s'):.1f}s, "
          f"train {seconds('run_s'):.1f}s")
