"""Reuse of finished runs: where a spec's result lives in an output folder, and whether a
file there really is that spec's result."""

from __future__ import annotations

import os

from superpos_jax import results
from superpos_jax.spec import SweepSpec


def path_for(out: str, name: str, backend: str, spec: SweepSpec) -> str:
  """`<out>/<name>-<backend>-<spec digest>.npz`."""
  return os.path.join(out, f"{name}-{backend}-{spec.digest()}.npz")


def load(path: str, spec: SweepSpec) -> tuple[results.SweepResult | None, str | None]:
  """The cached result of `spec` at `path`, or `(None, why not)`.

  The file's stored digest must equal `spec.digest()`: a file copied or renamed under the
  cached name is not trusted. `why` is None when there simply is no file.
  """
  if not os.path.exists(path):
    return None, None
  try:
    res = results.load(path)
  except results.ResultFileError as e:
    return None, str(e)
  stored = res.meta.get("spec_digest")
  if stored != spec.digest():
    return None, (f"{path} holds a result of another spec or engine (digest {stored}, "
                  f"wanted {spec.digest()})")
  return res, None
