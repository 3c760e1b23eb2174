"""Reuse of finished runs: where a spec's result lives in an output folder, and whether a
file there really is that spec's result (any grid spec, `gridspec.GridSpec`: the toy
grid's `SweepSpec`, the SAE stage's `SAEGrid`; any result type with a `meta`)."""

from __future__ import annotations

import os
from typing import Any, Callable

from superpos_jax import provenance, results
from superpos_jax.gridspec import GridSpec


def path_for(out: str, name: str, backend: str, spec: GridSpec,
             precision: str = "float32") -> str:
  """`<out>/<name>-<backend>-<spec digest>.npz` (`-<precision>` before `.npz` for matmul
  precisions other than float32: they give other numbers)."""
  tail = "" if precision == "float32" else f"-{precision}"
  return os.path.join(out, f"{name}-{backend}-{spec.digest()}{tail}.npz")


def load(path: str, spec: GridSpec, precision: str = "float32",
         read: Callable[[str], Any] = results.load) -> tuple[Any | None, str | None]:
  """The cached result of `spec` at `path`, trained at `precision`, or `(None, why not)`.

  The file (read by `read`: `results.load`, `sae.results.load`) must record `spec`'s
  identity digest and `precision`: a file copied or renamed under the cached name is not
  trusted. `why` is None when there simply is no file.
  """
  if not os.path.exists(path):
    return None, None
  try:
    res = read(path)
  except results.ResultFileError as e:
    return None, str(e)
  wanted = spec.identity()
  if res.meta.get("spec_digest") != provenance.digest(wanted):
    why = provenance.mismatch(res.meta.get("identity"), wanted) or "its digest differs"
    return None, f"{path} is not this run's result: {why}"
  # Files of engine code before the precision was recorded have other digests anyway.
  stored = res.meta.get("engine", {}).get("precision", "float32")
  if stored != precision:
    return None, f"{path} was trained with {stored} matmuls, wanted {precision}"
  return res, None
