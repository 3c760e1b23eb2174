"""Minimal reproduction: XLA CPU's YNNPACK dot fusions leak memory on several host devices.

A jitted `shard_map` over N host devices runs a `fori_loop` whose body is two small
matmuls; nothing in it allocates per iteration. Its peak resident memory should not
depend on the iteration count. With two host devices and YNNPACK's dot fusions on (XLA's
default; `-reduce` is what superpos_jax's scripts already switch off, for the same kind of
leak in reductions), it grows by several KB per iteration; with one device, or with
`-individual_dot` in `--xla_cpu_experimental_ynn_fusion_type`, it stays flat.

Each configuration runs in a fresh process (XLA reads its flags when the backend starts)
and reports that process's own peak (VmHWM).

  python benchmarks/xla_ynn_dot_leak.py             # the table (about a minute)
  python benchmarks/xla_ynn_dot_leak.py --iterations 1000,50000
"""

import argparse
import os
import subprocess
import sys

FUSION_FLAGS = {
    "superpos_jax default (-reduce)": "--xla_cpu_experimental_ynn_fusion_type=-reduce",
    "also -individual_dot": "--xla_cpu_experimental_ynn_fusion_type=-reduce,-individual_dot",
}

_CHILD = """
import sys
import jax, jax.numpy as jnp, numpy as np
iters = int(sys.argv[1])
P = jax.sharding.PartitionSpec
mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("d",))

def body(i, w):  # [20, 200] per device: two small matmuls per iteration
  x = jnp.full((200, 1024), 0.5, jnp.float32) * (i % 7).astype(jnp.float32)
  return w - 1e-6 * (w @ x) @ x.T

run = jax.jit(jax.shard_map(lambda w: jax.lax.fori_loop(0, iters, body, w), mesh=mesh,
                            in_specs=P("d"), out_specs=P("d")))
jax.block_until_ready(run(jnp.ones((len(jax.devices()) * 20, 200), jnp.float32)))
with open("/proc/self/status") as f:
  print(next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:")))
"""


def peak_mb(devices: int, flags: str, iterations: int) -> int:
  """Peak RSS (MB) of a fresh process running the loop `iterations` times."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {flags}")
  out = subprocess.run([sys.executable, "-c", _CHILD, str(iterations)], env=env,
                       capture_output=True, text=True, check=True, timeout=600)
  return int(out.stdout.split()[-1])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--iterations", default="1000,20000",
                 help="two comma-separated loop lengths (default 1000,20000)")
  args = p.parse_args(argv)
  short, long = (int(v) for v in args.iterations.split(","))
  print(f"| host devices | YNNPACK fusions | peak MB, {short:,} it. | peak MB, {long:,} it. "
        f"| growth KB / iteration |")
  print("|---|---|---|---|---|")
  for devices in (1, 2):
    for label, flags in FUSION_FLAGS.items():
      a, b = peak_mb(devices, flags, short), peak_mb(devices, flags, long)
      print(f"| {devices} | {label} | {a} | {b} | {1024 * (b - a) / (long - short):.1f} |")


if __name__ == "__main__":
  sys.exit(main())
