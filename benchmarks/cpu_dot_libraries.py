"""Which XLA CPU dot library trains the n=200 grid fastest, and on how many devices?

The n = 200 -> m = 20 grid is bound by its matmuls. XLA CPU can hand dots to YNNPACK
(its default, and the fastest here), to its own emitter, to XNNPACK or to oneDNN; with
several host devices YNNPACK's dot fusions leak memory (`xla_ynn_dot_leak.py`), which is
why `plan.choose_devices` gives such models one device. This script trains the
benchmark's 7-activation n = 200 grid for a few steps under each configuration, one fresh
process each (XLA reads its flags when the backend starts), and reports the rate and the
process's peak memory. A configuration the installed XLA rejects is reported as failed.

  python benchmarks/cpu_dot_libraries.py                 # about 2 minutes on 2 cores
  python benchmarks/cpu_dot_libraries.py --steps 200 --out figures
"""

import argparse
import json
import os
import subprocess
import sys
import time

REDUCE_OFF = "--xla_cpu_experimental_ynn_fusion_type=-reduce"  # superpos_jax's default
DOTS_OFF = "--xla_cpu_experimental_ynn_fusion_type=-reduce,-individual_dot"
# name: (devices, XLA flags beyond the device count)
CONFIGS = {
    "YNNPACK dots, 1 device (the engine's choice)": (1, REDUCE_OFF),
    "YNNPACK dots, 2 devices (leaks)": (2, REDUCE_OFF),
    "XLA's own dots, 2 devices": (2, DOTS_OFF),
    "XNNPACK dots, 2 devices": (2, DOTS_OFF + " --xla_cpu_experimental_xnn_fusion_type=dot"),
    "oneDNN, 2 devices": (2, DOTS_OFF + " --xla_cpu_use_onednn=true"),
}

_CHILD = r"""
import json, sys
import numpy as np, jax
from superpos_jax import activations, sweep
from superpos_jax.spec import SweepSpec
steps, devices = int(sys.argv[1]), int(sys.argv[2])
spec = SweepSpec(n=200, m=20, activations=activations.STUDY,
                 densities=tuple(20.0 ** -np.linspace(0, 1, 20)), importance_kind="uniform",
                 importances=(1.0,), seeds=(0,), steps=steps, log_every=min(50, steps),
                 batch_size=1024, eval_size=1024, lrs=(1e-3,))
res = sweep.run(spec, devices=jax.devices()[:devices], progress=False)
with open("/proc/self/status") as f:
  peak = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
print(json.dumps({"model_steps_per_s": res.meta["timings"]["model_steps_per_s"],
                  "run_s": res.meta["timings"]["run_s"], "peak_rss_mb": round(peak),
                  "chunk_size": res.meta["engine"]["chunk_size"]}))
"""


def measure(devices: int, flags: str, steps: int) -> dict:
  """One configuration in a fresh process: its rate and peak RSS, or the error."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {flags}")
  proc = subprocess.run([sys.executable, "-c", _CHILD, str(steps), str(devices)], env=env,
                        capture_output=True, text=True, timeout=900)
  if proc.returncode != 0:
    return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--steps", type=int, default=100, help="training steps per run (default 100)")
  p.add_argument("--out", help="folder to write cpu_dot_libraries.json into (default: none)")
  args = p.parse_args(argv)
  if args.steps < 1:
    p.error("--steps must be a positive integer")
  rows = {}
  print("| configuration | devices | model-steps/s | peak RSS MB |\n|---|---|---|---|")
  for name, (devices, flags) in CONFIGS.items():
    r = rows[name] = dict(measure(devices, flags, args.steps), devices=devices, xla_flags=flags)
    cells = ((f"{r['model_steps_per_s']:,.0f}", str(r["peak_rss_mb"])) if "error" not in r
             else (f"failed: {r['error']}", "-"))
    print(f"| {name} | {devices} | {cells[0]} | {cells[1]} |", flush=True)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "cpu_dot_libraries.json")
    with open(path + ".tmp", "w") as f:
      json.dump({"steps": args.steps, "cpu_count": os.cpu_count(),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "configurations": rows}, f,
                indent=1)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")


if __name__ == "__main__":
  sys.exit(main())
