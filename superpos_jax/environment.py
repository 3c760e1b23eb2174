"""What a result file records about where it was made: versions, backend, devices."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from typing import Any, Sequence

import jax

_PACKAGES = ("jax", "jaxlib", "optax", "numpy", "matplotlib")


def _version(package: str) -> str | None:
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def _git_commit() -> str | None:
  """The checkout's commit, read from `.git` (None for an installed package or outside
  a git checkout)."""
  top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if not os.path.exists(os.path.join(top, "pyproject.toml")):
    return None
  git = common = os.path.join(top, ".git")
  try:
    if os.path.isfile(git):  # a worktree: `.git` names its own folder, refs are shared
      with open(git) as f:
        git = os.path.join(top, f.read().strip().removeprefix("gitdir: "))
      with open(os.path.join(git, "commondir")) as f:
        common = os.path.join(git, f.read().strip())
    with open(os.path.join(git, "HEAD")) as f:
      head = f.read().strip()
    if not head.startswith("ref: "):
      return head or None
    ref = head[5:]
    if os.path.exists(os.path.join(common, ref)):
      with open(os.path.join(common, ref)) as f:
        return f.read().strip() or None
    with open(os.path.join(common, "packed-refs")) as f:
      for line in f:
        if line.rstrip().endswith(" " + ref):
          return line.split()[0]
  except OSError:
    pass
  return None


def environment(devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Versions, backend and devices, for the result file's metadata."""
  from superpos_jax import __version__
  devices = list(devices or jax.devices())
  return {
      "superpos_jax": __version__,
      "git_commit": _git_commit(),
      **{p: _version(p) for p in _PACKAGES},
      "python": platform.python_version(),
      "platform": platform.platform(),
      "backend": devices[0].platform,
      "device_count": len(devices),
      "device_kind": devices[0].device_kind,
      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }
