"""Should the built-in model families be Flax modules? The bottleneck both ways, measured.

`model.bottleneck` (plain functions, the engine's hot path) and the same forward written
as a `flax.linen.Module` (same ops: the bias in the decoder matmul) are registered side by
side and trained on the benchmark's workloads (`benchmark.N2`, `benchmark.N10`, all seven
activations, a few hundred steps). For each: are the result arrays bit-identical, are the
compiled programs' instructions identical (source locations stripped; where they are
not, how many lines differ), and what do tracing + compiling and training cost (best of
`--repeats` runs, interleaved)?

  python benchmarks/flax_vs_plain.py                       # about 2 minutes on 2 cores
  python benchmarks/flax_vs_plain.py --out figures         # the committed summary
"""

import argparse
import difflib
import json
import os
import re
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import benchmark as bm
from superpos_jax import program
from superpos_jax import activations, cli, model, plan, sweep
from superpos_jax.spec import STUDY_ACTIVATIONS, SweepSpec


class FlaxBottleneck(nn.Module):
  """`model.bottleneck` as a Flax module: `x' = f(Wᵀ W x + b)` of columns `xs: [n, B]`."""

  m: int

  @nn.compact
  def __call__(self, xs, act):
    n = xs.shape[0]
    W = self.param("W", nn.initializers.zeros, (self.m, n))
    b = self.param("b", nn.initializers.zeros, (n,))
    decoder = jnp.concatenate([W.T, b[:, None]], axis=1)
    h = jnp.concatenate([W @ xs, jnp.ones((1, xs.shape[1]), xs.dtype)], axis=0)
    return act(decoder @ h)


def instructions(spec: SweepSpec) -> list[str]:
  """The compiled grid program's instructions, without source locations and names."""
  layout = plan.make_plan(spec, devices=plan.choose_devices(spec, jax.devices()))
  text = program.grid_program(layout).lower(*sweep.program_inputs(spec)).compile().as_text()
  text = re.sub(r", metadata=\{[^}]*\}|stack_frame_id=\d+|op_name=\"[^\"]*\"", "", text)
  return [l for l in text.splitlines() if " = " in l or l.lstrip().startswith(("ROOT", "ENTRY"))]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--out", default=os.path.join(cli.REPO, "runs"))
  args = p.parse_args(argv)
  cli.configure_host("cpu", compile_cache=False)  # compile times are measured, not loaded
  model.register_model("bottleneck_flax", FlaxBottleneck, "the bottleneck as a Flax module",
                       overwrite=True)
  summary = {"steps": args.steps, "repeats": args.repeats, "workloads": {}}
  for name, workload in (("n2", bm.N2), ("n10", bm.N10)):
    specs = {m: SweepSpec(**dict(workload, **bm.COMMON, activations=STUDY_ACTIVATIONS,
                                 steps=args.steps, log_every=min(100, args.steps), model=m))
             for m in ("bottleneck", "bottleneck_flax")}
    rows = {m: {"compile_s": None, "model_steps_per_s": []} for m in specs}
    outs = {}
    for r in range(args.repeats):
      for m, spec in specs.items():  # interleaved: load on a shared machine hits both
        res = sweep.run(spec, progress=False)
        t = res.meta["timings"]
        if r == 0:
          rows[m]["compile_s"] = t["compile_s"]
          outs[m] = res.data
        rows[m]["model_steps_per_s"].append(t["model_steps_per_s"])
    for m in rows:
      rows[m]["best_model_steps_per_s"] = max(rows[m]["model_steps_per_s"])
    a, b = outs["bottleneck"], outs["bottleneck_flax"]
    summary["workloads"][name] = {
        "models": specs["bottleneck"].num_models, **rows,
        "arrays_bit_identical": sorted(a) == sorted(b) and all(
            np.array_equal(a[k], b[k], equal_nan=True) for k in a),
    }
    plain, flax = instructions(specs["bottleneck"]), instructions(specs["bottleneck_flax"])
    summary["workloads"][name]["compiled_instructions"] = {
        "plain": len(plain), "flax": len(flax), "identical": plain == flax,
        "lines_differing": sum(1 for l in difflib.unified_diff(plain, flax, lineterm="", n=0)
                               if l[:1] in "+-" and l[:3] not in ("+++", "---"))}
    print(name, json.dumps(summary["workloads"][name]), flush=True)
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "flax_vs_plain.json")
  with open(path, "w") as f:
    json.dump(summary, f, indent=1)
  print(path)


if __name__ == "__main__":
  sys.exit(main())
