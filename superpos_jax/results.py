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
import secrets
from typing import Any, BinaryIO, Callable

import numpy as np

SCHEMA_VERSION = 1

# Grid axes, in the order of every result array's leading dimensions.
AXES = ("activation", "density", "importance", "lr", "seed")

# Per-model arrays: name -> (dims after the grid axes, description).
SCHEMA: dict[str, tuple[tuple[str, ...], str]] = {
    "W": (("m", "n"), "final weights"),
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
# Metrics that reduce_seeds("trimmed_mean") averages (the rest come from the best seed).
AVERAGED = ("eval_loss", "final_loss", "feature_norms", "superposition",
            "feature_dimensionality", "dims_per_feature", "loss_history")
EXTRA = ("importance_vectors", "history_steps")

# Must match superpos_jax.metrics.PHASES (checked by a test); duplicated as plain data so
# this module and the plots need no jax.
PHASES = ("neither", "feature 1 only", "superposition", "feature 2 only", "ambiguous")


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
  def spec(self) -> dict[str, Any]:
    return self.meta["spec"]

  def __getitem__(self, name: str) -> np.ndarray:
    return self.data[name]

  def index(self, axis: str, value: Any) -> int:
    """Position of `value` on `axis` (floats match to relative 1e-6)."""
    values = self.coords[axis]
    if values.dtype.kind in "US":
      hits = np.flatnonzero(values == value)
    else:
      hits = np.flatnonzero(np.isclose(values, value, rtol=1e-6, atol=0.0))
    if hits.size == 0:
      raise KeyError(f"{axis}={value!r} is not in this result; values: {values.tolist()}")
    return int(hits[0])

  def sel(self, **selection: Any) -> "SweepResult":
    """Selects single coordinate values, dropping those axes.

    Example: `res.sel(activation="relu", density=0.1)["W"]` has shape `[I, L, S, m, n]`.
    """
    unknown = set(selection) - set(self.axes)
    if unknown:
      raise KeyError(f"unknown axes {sorted(unknown)}; axes: {self.axes}")
    idx = tuple(self.index(a, selection[a]) if a in selection else slice(None) for a in self.axes)
    data = {k: v[idx] for k, v in self.data.items()}
    coords = {a: v for a, v in self.coords.items() if a not in selection}
    return dataclasses.replace(self, coords=coords, data=data)

  def reduce_seeds(self, rule: str = "best") -> "SweepResult":
    """Collapses the seed axis the way TMS phase diagrams do.

    Args:
      rule: "best" keeps, at every grid point, the seed with the lowest `eval_loss`
        (training sometimes lands in a local minimum). "trimmed_mean" averages the metrics
        over seeds after discarding the worst one; weights come from the best seed
        (averaging weights is meaningless under their symmetries) and the phase is the
        most common one among the kept seeds.
    """
    if "seed" not in self.coords:
      raise ValueError("this result has no seed axis left")
    ax = self.axes.index("seed")
    loss = np.where(np.isfinite(self.data["eval_loss"]), self.data["eval_loss"], np.inf)
    best = np.expand_dims(np.argmin(loss, axis=ax), ax)

    def take(v, which):
      which = which.reshape(which.shape + (1,) * (v.ndim - which.ndim))
      return np.take_along_axis(v, which, axis=ax).squeeze(ax)

    data = {k: take(v, best) for k, v in self.data.items()}
    if rule == "trimmed_mean":
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
    elif rule != "best":
      raise ValueError(f"unknown seed rule {rule!r}; valid: best, trimmed_mean")
    coords = {a: v for a, v in self.coords.items() if a != "seed"}
    return dataclasses.replace(self, coords=coords, data=data)


def write_atomically(path: str, write: Callable[[BinaryIO], None]) -> str:
  """Calls `write(f)` on a temporary file in `path`'s folder, then renames it to `path`.

  A crash or Ctrl-C mid-write leaves no partial file under `path` (the temporary file is
  removed; an existing `path` stays as it was). Returns `path`.
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  # A hand-made temp name (not mkstemp) so the file gets the umask's permissions.
  tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}-{os.path.basename(path)}")
  try:
    with open(tmp, "xb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


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
  """Reads and validates a result file; raises `ResultFileError` with a clear message."""
  path = os.fspath(path)
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
  version = meta.get("schema_version")
  if version != SCHEMA_VERSION:
    raise ResultFileError(
        f"{path}: schema version {version!r} is not supported (this superpos_jax reads "
        f"version {SCHEMA_VERSION}); re-run the experiment to regenerate it")
  coords = {a: arrays.pop(f"coord_{a}") for a in AXES if f"coord_{a}" in arrays}
  missing = [k for k in (*SCHEMA, *EXTRA) if k not in arrays and k not in OPTIONAL]
  missing += [f"coord_{a}" for a in AXES if a not in coords and a in meta.get("axes", AXES)]
  if missing:
    raise ResultFileError(f"{path}: missing entries {missing}")
  axes = tuple(a for a in AXES if a in coords)
  grid_shape = tuple(len(coords[a]) for a in axes)
  data = {k: arrays.pop(k) for k in SCHEMA if k in arrays}
  for k, v in data.items():
    if v.shape[:len(grid_shape)] != grid_shape:
      raise ResultFileError(f"{path}: {k} has shape {v.shape}, expected grid {grid_shape} first")
  extra = {k: arrays.pop(k) for k in EXTRA}
  return SweepResult(coords=coords, data=data, extra=extra, meta=meta)


def summary(result: SweepResult) -> str:
  """One line describing a result, for logs."""
  shape = " x ".join(f"{len(result.coords[a])} {a}" for a in result.axes)
  t = result.meta.get("timings", {})
  env = result.meta.get("env", {})
  return (f"{shape} (n={result.spec['n']}, m={result.spec['m']}, {result.spec['steps']} steps) "
          f"on {env.get('backend', '?')}: compile {t.get('compile_s', float('nan')):.1f}s, "
          f"train {t.get('run_s', float('nan')):.1f}s")
