"""Which XLA CPU dot library trains the n=200 grid fastest, and on how many devices?

The n = 200 -> m = 20 grid is bound by its matmuls. XLA CPU hands dots to YNNPACK (its
default, and the fastest here) or, with YNNPACK's dot fusions off, to its own emitter;
flags also ask for XNNPACK and oneDNN, but the installed jaxlib may not build them in, so
each configuration records how many calls of each library its compiled program holds
(0: the flag had no effect). With several host devices YNNPACK's dot fusions leak memory
(`xla_ynn_dot_leak.py`), which is why `plan.choose_devices` gives such models one device.
This script trains the benchmark's 7-activation n = 200 grid (`benchmark.N200`) for a few
steps under each configuration, one fresh process each (XLA reads its flags when the
backend starts), and reports the rate and the process's peak memory.

  python benchmarks/cpu_dot_libraries.py                 # about 2 minutes on 2 cores
  python benchmarks/cpu_dot_libraries.py --steps 200 --out figures
"""

import argparse
import json
import os
import subprocess
import sys
import time

MANY = max(os.cpu_count() or 1, 2)  # "several devices": one per core, at least 2
REDUCE_OFF = "--xla_cpu_experimental_ynn_fusion_type=-reduce"  # superpos_jax's default
DOTS_OFF = "--xla_cpu_experimental_ynn_fusion_type=-reduce,-individual_dot"
# name: (devices, XLA flags beyond the device count)
CONFIGS = {
    "YNNPACK dots, 1 device (the engine's choice)": (1, REDUCE_OFF),
    f"YNNPACK dots, {MANY} devices (leaks)": (MANY, REDUCE_OFF),
    "XLA's own dots, 1 device": (1, DOTS_OFF),
    f"XLA's own dots, {MANY} devices": (MANY, DOTS_OFF),
    f"XNNPACK dots asked for, {MANY} devices": (
        MANY, DOTS_OFF + " --xla_cpu_experimental_xnn_fusion_type=dot"),
    f"oneDNN asked for, {MANY} devices": (MANY, DOTS_OFF + " --xla_cpu_use_onednn=true"),
}
TIMEOUT_S = 900
HERE = os.path.dirname(os.path.abspath(__file__))

_CHILD = r"""
import json, re, sys, time
import jax
sys.path.insert(0, sys.argv[3])
from benchmark import COMMON, N200  # the benchmark's n=200 workload
from superpos_jax import activations, plan, sweep
from superpos_jax.spec import STUDY_ACTIVATIONS, SweepSpec
steps, devices = int(sys.argv[1]), int(sys.argv[2])
spec = SweepSpec(**N200, **COMMON, activations=STUDY_ACTIVATIONS, steps=steps,
                 log_every=min(50, steps))
layout = plan.make_plan(spec, devices=jax.devices()[:devices])
compiled, _ = sweep.compile_plan(layout)
text = compiled.as_text()
calls = {lib: len(re.findall(pattern, text)) for lib, pattern in (
    ("ynnpack", r"%ynn_fusion[\w.]* = "), ("xnnpack", r"%xnn_fusion[\w.]* = "),
    ("onednn", r"onednn"))}
inputs = sweep.program_inputs(spec)
t0 = time.perf_counter()
jax.block_until_ready(compiled(*inputs))
run_s = time.perf_counter() - t0
with open("/proc/self/status") as f:
  peak = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
print(json.dumps({"model_steps_per_s": spec.num_models * steps / run_s, "run_s": run_s,
                  "peak_rss_mb": round(peak), "chunk_size": layout.chunk_size,
                  "library_calls_in_program": calls}))
"""


def measure(devices: int, flags: str, steps: int) -> dict:
  """One configuration in a fresh process: its rate, peak RSS and library calls, or why
  it failed."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={MANY} {flags}")
  try:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(steps), str(devices), HERE],
                          env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {TIMEOUT_S} s"}
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
  print("| configuration | devices | model-steps/s | peak RSS MB | library calls |\n"
        "|---|---|---|---|---|")
  for name, (devices, flags) in CONFIGS.items():
    r = rows[name] = dict(measure(devices, flags, args.steps), devices=devices, xla_flags=flags)
    if "error" in r:
      cells = (f"failed: {r['error']}", "-", "-")
    else:
      calls = ", ".join(f"{k} {v}" for k, v in r["library_calls_in_program"].items())
      cells = (f"{r['model_steps_per_s']:,.0f}", str(r["peak_rss_mb"]), calls)
    print(f"| {name} | {devices} | {' | '.join(cells)} |", flush=True)
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
