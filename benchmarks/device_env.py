"""What a device check records about the machine: versions of JAX, its CUDA plugin, the
driver and CUDA runtime, the device, its memory, and the settings that change timings.

    env = device_env.record(jax.devices("gpu"))

Every field that cannot be read here is None, never a guess. Where read from:
- `cuda_plugin`: the versions of the installed jax-cuda12/13 plugin and PJRT packages
  (package metadata);
- `platform_version`: `Device.client.platform_version`, the PJRT client's own string
  (on CUDA it names the CUDA version it runs);
- `cuda`: the CUDA runtime, driver, cuDNN and cuBLAS versions as JAX's CUDA plugin reads
  them when it starts (`jax_plugins.cuda.cuda_versions`, the module JAX uses to check them;
  not a public API, so read defensively), and the compute capability per device;
- `nvidia_smi`: `nvidia-smi --query-gpu=name,driver_version,memory.total` where present.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from importlib import metadata
from typing import Any, Sequence

PLUGIN_PACKAGES = ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin",
                   "jax-cuda13-pjrt", "jax-rocm7-plugin", "libtpu", "nvidia-cuda-runtime-cu12",
                   "nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime",
                   "nvidia-cudnn-cu13", "nvidia-cublas")
# Environment variables that change what a GPU run allocates or compiles.
SETTINGS = ("XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
            "XLA_PYTHON_CLIENT_ALLOCATOR", "JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES",
            "TF_CPP_MIN_LOG_LEVEL")
_CUDA_CALLS = {"runtime": "cuda_runtime_get_version", "runtime_build": "cuda_runtime_build_version",
               "driver": "cuda_driver_get_version", "cudnn": "cudnn_get_version",
               "cublas": "cublas_get_version"}


def packages() -> dict[str, str]:
  """Installed accelerator packages (plugin, PJRT, NVIDIA libraries) and their versions."""
  found = {}
  for name in PLUGIN_PACKAGES:
    try:
      found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return found


def cuda_versions(devices: Sequence) -> dict[str, Any] | None:
  """CUDA component versions as JAX's CUDA plugin reads them (None off CUDA)."""
  if not devices or devices[0].platform != "gpu":
    return None
  try:
    versions = importlib.import_module("jax_plugins.cuda").cuda_versions
  except Exception:  # noqa: BLE001 (no plugin, or another layout of it)
    versions = None
  if versions is None:
    return {"note": "jax_plugins.cuda.cuda_versions not found"}
  out: dict[str, Any] = {}
  for key, call in _CUDA_CALLS.items():
    try:
      out[key] = getattr(versions, call)()
    except Exception:  # noqa: BLE001 (missing in some versions)
      out[key] = None
  try:
    out["compute_capability"] = [versions.cuda_compute_capability(d.local_hardware_id)
                                 for d in devices]
  except Exception:  # noqa: BLE001
    out["compute_capability"] = None
  return out


def nvidia_smi() -> list[dict] | None:
  """Name, driver and memory of every GPU per `nvidia-smi` (None where it is absent)."""
  exe = shutil.which("nvidia-smi")
  if exe is None:
    return None
  fields = ("name", "driver_version", "memory.total")
  try:
    proc = subprocess.run([exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=20)
  except (OSError, subprocess.TimeoutExpired) as e:
    return [{"error": str(e)}]
  rows = [line.split(", ") for line in proc.stdout.strip().splitlines() if line.strip()]
  return [dict(zip(fields, r)) for r in rows] or [{"error": proc.stderr.strip()[-300:]}]


def _first_memory_stats(devices: Sequence) -> dict | None:
  try:
    stats = devices[0].memory_stats()
  except Exception:  # noqa: BLE001
    return None
  return {k: stats[k] for k in ("bytes_limit", "bytes_in_use", "bytes_reservable_limit")
          if k in stats} if stats else None


def record(devices: Sequence) -> dict[str, Any]:
  """Versions, device and settings of this check (see the module docstring)."""
  import harness
  from superpos_jax.environment import environment
  env = environment(devices)
  machine = harness.machine_info(devices[0].platform)
  try:
    platform_version = devices[0].client.platform_version
  except Exception:  # noqa: BLE001
    platform_version = None
  env.update({k: machine[k] for k in ("cpu", "cores", "load_average_1_5_15min")},
             platform_version=platform_version, cuda_plugin=packages(),
             cuda=cuda_versions(devices), nvidia_smi=nvidia_smi() if devices[0].platform == "gpu" else None,
             memory_stats=_first_memory_stats(devices),
             settings={k: os.environ[k] for k in SETTINGS if k in os.environ})
  return env

