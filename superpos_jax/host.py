"""The host: XLA flags, backends and devices, the multi-host runtime (coordinator,
agreement between processes) and the memory budget. What a run needs from the machine
before its plan is made, in one place.

Scripts call `configure_host(backend)` first, before anything touches a JAX device.
"""

from __future__ import annotations

import functools
import importlib.util
import mmap
import os
import socket
import sys
import time
from importlib import metadata

import numpy as np

from superpos_jax.errors import UserError

BACKENDS = ("cpu", "gpu", "tpu")


def _jaxlib_version() -> tuple[int, ...]:
  try:
    return tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return (0,)


@functools.lru_cache(maxsize=None)
def xla_knows(flag: str) -> bool:
  """Whether the installed jaxlib's XLA defines `flag`: its name is in one of jaxlib's
  shared libraries (XLA aborts at start-up on a flag it does not know, so a flag is set
  only where this holds)."""
  try:
    folder = os.path.dirname(importlib.util.find_spec("jaxlib").origin)
  except (AttributeError, ImportError, TypeError, ValueError):
    return False
  needle = flag.encode()
  for root, _, files in os.walk(folder):
    for name in files:
      if ".so" not in name:
        continue
      try:
        with open(os.path.join(root, name), "rb") as f, \
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
          if data.find(needle) >= 0:
            return True
      except (OSError, ValueError):  # an empty or unreadable file
        continue
  return False


def xla_defaults(backend: str = "cpu") -> dict[str, str]:
  """XLA flags the scripts set for `backend` unless the user already did: CPU flags only,
  and each only where the running jaxlib knows it (`xla_knows`); none for GPU or TPU.

  One XLA CPU device per core, so the sweep's `shard_map` keeps every core busy (measured
  ~1.5-3x on the 2-core CPU); and XLA CPU's YNNPACK library kept off reductions: with
  several host devices those leaked memory on every execution (a 33,600-model,
  10,000-step phase diagram grew to 24 GB and was killed; with the flag, flat). Dots stay
  on YNNPACK, and `loss.family_loss` writes its sums as dots.
  """
  if backend != "cpu":
    return {}
  flags = {"xla_force_host_platform_device_count": str(os.cpu_count() or 1)}
  if _jaxlib_version() >= (0, 10):  # where it was measured; older XLA may not know the flag
    flags["xla_cpu_experimental_ynn_fusion_type"] = "-reduce"
  return {flag: value for flag, value in flags.items() if xla_knows(flag)}


def configure_host(backend: str = "cpu", compile_cache: bool = True) -> None:
  """Sets the XLA flags of `xla_defaults(backend)` (a flag already in XLA_FLAGS is left
  as set): host device splitting and YNNPACK settings for CPU runs, nothing otherwise;
  and turns on JAX's persistent compilation cache (`enable_compile_cache`).

  Call it first, before anything touches a JAX device: XLA reads its flags when the
  backend starts, and ignores later changes (then the run simply uses the devices it has).
  """
  for flag, value in xla_defaults(backend).items():
    if flag not in os.environ.get("XLA_FLAGS", ""):
      os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{flag}={value}".strip()
  if compile_cache:
    enable_compile_cache()


# The persistent compilation cache's size at most (JAX evicts the least recently used).
COMPILE_CACHE_BYTES = 2 * 2**30


def compile_cache_dir() -> str | None:
  """Where compiled programs are kept between processes: `$SUPERPOS_JAX_COMPILE_CACHE`
  (`off` or `0`: nowhere), else `compiled/` in the user cache folder
  (`$SUPERPOS_JAX_CACHE`, default ~/.cache/superpos_jax)."""
  given = os.environ.get("SUPERPOS_JAX_COMPILE_CACHE")
  if given is not None:
    return None if given.strip().lower() in ("", "0", "off", "no", "false") else given
  base = os.environ.get("SUPERPOS_JAX_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "superpos_jax")
  return os.path.join(base, "compiled")


def enable_compile_cache(folder: str | None = None) -> str | None:
  """Turns on JAX's persistent compilation cache in `folder` (default
  `compile_cache_dir()`), so a rerun, a test's child process or a restarted notebook loads
  the compiled program instead of compiling it again. Keyed as JAX keys it: the
  program's own text (callbacks' addresses included, so programs with a progress
  callback are not shared between processes), the devices, XLA's flags and jax's
  version, so a changed program never meets another's executable. Returns the folder
  (None: the cache stays off). A folder that cannot be made leaves it off."""
  folder = folder or compile_cache_dir()
  if not folder:
    return None
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError:
    return None
  import jax
  from jax.experimental.compilation_cache import compilation_cache
  if jax.config.jax_compilation_cache_dir != folder:
    jax.config.update("jax_compilation_cache_dir", folder)
    compilation_cache.reset_cache()  # opened again, in the new folder, at the next compile
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  jax.config.update("jax_compilation_cache_max_size", COMPILE_CACHE_BYTES)
  return folder


# How long a non-zero process tries to reach the coordinator before giving up: process 0
# needs a few seconds to start JAX and listen.
COORDINATOR_TIMEOUT_S = 10.0


# How to install JAX for each accelerator backend (the extras of pyproject.toml).
INSTALL_HINTS = {"gpu": "pip install 'superpos_jax[cuda]' (NVIDIA GPU, CUDA 12)",
                 "tpu": "pip install 'superpos_jax[tpu]'"}


def select_devices(backend: str) -> list:
  """Devices of `backend`, or a one-line UserError naming the available backends."""
  import jax
  try:
    return jax.devices(backend)
  except RuntimeError:
    available = []
    for b in BACKENDS:
      try:
        jax.devices(b)
        available.append(b)
      except RuntimeError:
        pass
    hint = f"; to install JAX for it: {INSTALL_HINTS[backend]}" if backend in INSTALL_HINTS else ""
    raise UserError(f"JAX has no {backend!r} backend on this machine "
                    f"(available: {', '.join(available) or 'none'}){hint}") from None


def probe_coordinator(address: str, process_id: int, timeout: float | None = None) -> None:
  """Fails in seconds, with one line, where `jax.distributed.initialize` would hang for
  minutes and then abort: process 0 must be able to listen on the port, every other
  process must reach it within `timeout` seconds (default `COORDINATOR_TIMEOUT_S`)."""
  timeout = COORDINATOR_TIMEOUT_S if timeout is None else timeout
  host, _, port = address.rpartition(":")
  host, port = host.strip("[]"), int(port)
  try:
    socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
  except OSError as e:
    raise UserError(f"--coordinator {address}: cannot resolve {host!r} ({e.strerror or e})") from None
  if process_id == 0:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
      s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      try:
        s.bind(("", port))
      except OSError as e:
        raise UserError(f"--coordinator {address}: process 0 cannot listen on port {port} "
                        f"({e.strerror or e})") from None
    return
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, port), timeout=max(0.1, min(2.0, timeout))):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise UserError(f"--coordinator {address}: not reachable within {timeout:g} s "
                        f"({e.strerror or e}); start process 0 first, or check the "
                        f"address and firewall") from None
      time.sleep(0.25)


# The multi-host runtime this process joined: (coordinator, processes, process id).
_joined: tuple | None = None


def init_distributed(coordinator: str | None, num_processes: int | None,
                     process_id: int | None, heartbeat_timeout: int | None = None,
                     say=print) -> None:
  """Joins JAX's multi-host runtime (one process per host) when `coordinator` is given,
  ONCE per process: an experiment that trains several specs calls this before each, and
  every call after the first only checks that it asks for the same runtime."""
  global _joined
  if not coordinator:
    return
  wanted = (coordinator, num_processes, process_id)
  import jax
  if _joined is not None or jax.distributed.is_initialized():
    if _joined is not None and _joined != wanted:
      raise UserError(f"this process already joined {_joined[0]} as process {_joined[2]} of "
                      f"{_joined[1]}; it cannot join {coordinator} as {process_id} of {num_processes}")
    return
  probe_coordinator(coordinator, process_id)  # flags: checked by cli.check_flags
  if process_id == 0:
    say(f"waiting for {num_processes - 1} more process(es) to join at {coordinator}")
  extra = {}
  if heartbeat_timeout:
    extra["heartbeat_timeout_seconds"] = heartbeat_timeout
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id, **extra)
  _joined = wanted


def _host_memory_budget() -> int:
  try:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
  except (ValueError, OSError, AttributeError):
    return 8 * 2**30


def default_memory_budget(devices: list) -> int | None:
  """Bytes a run may use: on an accelerator one device's own limit, the smallest of
  `Device.memory_stats()["bytes_limit"]` (what XLA's allocator may hand out; the plan
  compares one device's share with it); on CPU half the host's RAM. An accelerator that
  reports no limit gets no budget (None, with a warning) rather than a guess from the
  host's RAM, which says nothing about the device's memory."""
  accelerators = [d for d in devices if d.platform != "cpu"]
  if not accelerators:
    return _host_memory_budget()
  limits = []
  for d in accelerators:
    try:
      stats = d.memory_stats() or {}
    except Exception:  # not implemented on every backend and version
      stats = {}
    if stats.get("bytes_limit"):
      limits.append(int(stats["bytes_limit"]))
  if len(limits) < len(accelerators):
    print(f"warning: {accelerators[0].platform} devices report no memory limit: the grid is "
          f"laid out without a budget (give one with --max-memory GiB)", file=sys.stderr)
    return None
  return min(limits)


def agreed(value: int, how: str, unit: int = 1) -> int:
  """`value` agreed by every process of a multi-host run: the smallest ("min"), the
  largest ("max") or whether all are true ("all"); as is in a single process. Values are
  exchanged in multiples of `unit` (JAX's collectives carry int32: a byte count goes in
  KiB)."""
  import jax
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils
  mine = np.asarray([min(int(value) // unit, 2**31 - 1)], np.int32)
  values = np.asarray(multihost_utils.process_allgather(mine)).astype(np.int64)
  if how == "all":
    return int(values.all())
  return int(values.min() if how == "min" else values.max()) * unit


def broadcast(values: list[int]) -> list[int]:
  """Process 0's integers on every process (as they are in a single process): for
  decisions every process must take alike (when to checkpoint, which layout to resume)."""
  import jax
  if jax.process_count() == 1:
    return [int(v) for v in values]
  from jax.experimental import multihost_utils
  return [int(v) for v in multihost_utils.broadcast_one_to_all(np.asarray(values, np.int32))]
