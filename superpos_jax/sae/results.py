"""SAE stage results: the schema, atomic `.npz` save/load, selection by coordinates.

The sibling of `results.py` for the second stage of a sweep (`sae_sweep.py`): a
`SweepResult` has one model per grid point, an `SAEResult` has an SAE grid (dictionary
multiple × L1 × SAE seed) under every toy model, and dictionaries of several sizes.
numpy + json only, so plots and summaries read it without jax.

One `.npz` holds:
  - `coord_<axis>` of every axis: the toy model's (`spec.AXES`), then `SAE_AXES`;
  - the arrays of `SCHEMA`, each shaped `toy grid + SAE grid + per-SAE shape`; latent
    axes are padded with NaN to the largest dictionary, `k_max = max multiple · n`;
  - the toy models the SAEs read (`TOY`), shaped `toy grid + ...`, and `history_steps`;
  - `meta`: a JSON string with the SAE spec, the toy spec and its digest, the environment
    and the timings.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from superpos_jax.results import ResultFileError, SweepResult, write_atomically
from superpos_jax.sae.spec import SAE_AXES, SAESpec
from superpos_jax.spec import AXES, SweepSpec

# 2: co-activation, feature frequency, MSE and variance (SAELens's metrics, `sae_metrics`).
SCHEMA_VERSION = 2
ALL_AXES = AXES + SAE_AXES

# Per-SAE arrays: name -> (dims after the grid axes, description).
SCHEMA: dict[str, tuple[tuple[str, ...], str]] = {
    "decoder": (("m", "k_max"), "dictionary W_d (unit columns; NaN beyond the SAE's k)"),
    "loss_history": (("history",), "mean training loss over each logging window"),
    "eval_loss": ((), "‖h − ĥ‖² + λ‖c‖₁ on the SAE evaluation set"),
    "reconstruction_error": ((), "Σ‖h − ĥ‖² / Σ‖h‖² on the evaluation set"),
    "l0": ((), "mean active latents per evaluation example"),
    "frequency": (("k_max",), "fraction of evaluation examples where a latent is active "
                              "(0: dead; NaN beyond the SAE's k)"),
    "max_cosine": (("n",), "max over live latents j of cos(W_i, d_j), per true feature i"),
    "coactivation": (("k_max", "n"), "fraction of evaluation examples where latent j is "
                                     "active and feature i present (NaN beyond the SAE's k)"),
    "feature_frequency": (("n",), "fraction of evaluation examples where feature i is present"),
    "mse": ((), "mean ‖h − ĥ‖² per evaluation example"),
    "hidden_variance": ((), "mean ‖h − mean h‖² per evaluation example (the toy model's)"),
    "diverged": ((), "True where the loss or the dictionary became NaN/inf"),
}
# Per-toy-model arrays copied from the toy result: name -> dims after the toy grid axes.
TOY = {"toy_W": ("m", "n"), "toy_eval_loss": (), "toy_diverged": ()}
EXTRA = ("history_steps",)


@dataclasses.dataclass
class SAEResult:
  """Arrays of an SAE stage, indexable by axis names and coordinate values.

  Attributes:
    coords: axis name -> coordinate values (toy axes, then `SAE_AXES`).
    data: `SCHEMA` name -> array `[*toy grid, *SAE grid, ...]`.
    toy: `TOY` name -> array `[*toy grid, ...]`.
    extra: `history_steps [T]`.
    meta: JSON-able dict: `sae_spec`, `toy_spec`, `toy_digest`, `env`, `timings`.
  """

  coords: dict[str, np.ndarray]
  data: dict[str, np.ndarray]
  toy: dict[str, np.ndarray]
  extra: dict[str, np.ndarray]
  meta: dict[str, Any]

  @property
  def axes(self) -> tuple[str, ...]:
    return tuple(a for a in ALL_AXES if a in self.coords)

  @property
  def toy_axes(self) -> tuple[str, ...]:
    return tuple(a for a in AXES if a in self.coords)

  @property
  def sae_spec(self) -> SAESpec:
    return SAESpec.from_dict(self.meta["sae_spec"])

  @property
  def toy_spec(self) -> SweepSpec:
    return SweepSpec.from_dict(self.meta["toy_spec"])

  def __getitem__(self, name: str) -> np.ndarray:
    return self.data[name]

  # Position of `value` on `axis` (floats match to relative 1e-6): reads only `coords`.
  index = SweepResult.index

  def sel(self, **selection: Any) -> "SAEResult":
    """Selects single coordinate values, dropping those axes (toy arrays follow the toy
    axes selected)."""
    unknown = set(selection) - set(self.axes)
    if unknown:
      raise KeyError(f"unknown axes {sorted(unknown)}; axes: {self.axes}")
    pick = lambda axes: tuple(self.index(a, selection[a]) if a in selection else slice(None)
                              for a in axes)
    data = {k: v[pick(self.axes)] for k, v in self.data.items()}
    toy = {k: v[pick(self.toy_axes)] for k, v in self.toy.items()}
    coords = {a: v for a, v in self.coords.items() if a not in selection}
    return dataclasses.replace(self, coords=coords, data=data, toy=toy)


def save(result: SAEResult, path: str | os.PathLike) -> str:
  """Writes `result` to `path` atomically (`results.write_atomically`); returns the path."""
  path = os.fspath(path)
  if not path.endswith(".npz"):
    path += ".npz"
  arrays = {f"coord_{a}": np.asarray(v) for a, v in result.coords.items()}
  for group in (result.data, result.toy, result.extra):
    arrays.update({k: np.asarray(v) for k, v in group.items()})
  meta = dict(result.meta, schema_version=SCHEMA_VERSION, kind="sae", axes=list(result.axes))
  arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
  return write_atomically(path, lambda f: np.savez_compressed(f, **arrays))


def load(path: str | os.PathLike) -> SAEResult:
  """Reads and validates an SAE result file; raises `ResultFileError` with a clear message."""
  path = os.fspath(path)
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except FileNotFoundError:
    raise ResultFileError(f"{path}: no such file") from None
  except Exception as e:  # zipfile/np errors for foreign or truncated files
    raise ResultFileError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
  try:
    meta = json.loads(str(arrays.pop("meta")))
  except (KeyError, json.JSONDecodeError):
    raise ResultFileError(f"{path}: not a superpos_jax SAE result (no readable 'meta')") from None
  if not isinstance(meta, dict) or meta.get("kind") != "sae":
    raise ResultFileError(f"{path}: not an SAE result (a toy result? read it with results.load)")
  if meta.get("schema_version") != SCHEMA_VERSION:
    raise ResultFileError(f"{path}: SAE schema version {meta.get('schema_version')!r} is not "
                          f"supported (this code reads {SCHEMA_VERSION}); re-run the experiment")
  axes = [a for a in meta.get("axes", ALL_AXES)]
  missing = [f"coord_{a}" for a in axes if f"coord_{a}" not in arrays]
  missing += [k for k in (*SCHEMA, *TOY, *EXTRA) if k not in arrays]
  if missing:
    raise ResultFileError(f"{path}: missing entries {missing}")
  coords = {a: arrays[f"coord_{a}"] for a in ALL_AXES if a in axes}
  shape = tuple(len(coords[a]) for a in ALL_AXES if a in coords)
  toy_shape = tuple(len(coords[a]) for a in AXES if a in coords)
  data = {k: arrays[k] for k in SCHEMA}
  toy = {k: arrays[k] for k in TOY}
  for k, v in data.items():
    if v.shape[:len(shape)] != shape:
      raise ResultFileError(f"{path}: {k} has shape {v.shape}, expected grid {shape} first")
  for k, v in toy.items():
    if v.shape[:len(toy_shape)] != toy_shape:
      raise ResultFileError(f"{path}: {k} has shape {v.shape}, expected toy grid {toy_shape} first")
  try:
    SAESpec.from_dict(meta["sae_spec"])
    SweepSpec.from_dict(meta["toy_spec"])
  except (KeyError, TypeError, ValueError) as e:
    raise ResultFileError(f"{path}: invalid stored spec ({e})") from None
  return SAEResult(coords=coords, data=data, toy=toy, extra={k: arrays[k] for k in EXTRA}, meta=meta)


def summary(result: SAEResult) -> str:
  """One line describing a result, for logs."""
  shape = " x ".join(f"{len(result.coords[a])} {a}" for a in result.axes)
  t = result.meta.get("timings", {})
  return (f"{shape} ({result.sae_spec.steps} SAE steps): compile "
          f"{t.get('compile_s', float('nan')):.1f}s, train {t.get('run_s', float('nan')):.1f}s")
