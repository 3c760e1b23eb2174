"""Computation in superposition: the |x| model, features computed per activation.

x_i = 0 with probability S, else U[-1, 1]; target |x|; h = f(W₁ x), y = ReLU(W₂ h + b),
untied W₁ [m, n], W₂ [n, m] (TMS, "Computation in superposition"). n=20 -> m=10 with
importance 0.8^i. Why: dense, |x_i| = ReLU(x_i) + ReLU(-x_i) needs two ReLU neurons per
feature, so 10 neurons compute m/2 = 5 features; sparse, TMS finds more computed in
superposition. n/m = 2 and 0.8^i (TMS's n=100, m=40 uses the same decay) leave room to
see that, and n=20 keeps the paper preset to a few minutes on 2 CPU cores (TMS's size is
~20x the compute). Feature i counts as computed when, with only x_i present, output i
explains more than half the variance of |x_i| over x_i in [-1, 1] (R² > 0.5; ReLU(x_i)
alone, half the job, scores -1); numbers, R² per feature and eval losses in
computation_summary.json.

  python experiments/computation.py                   # paper preset, CPU
  python experiments/computation.py --preset quick    # seconds
"""

import sys

import numpy as np

from superpos_jax import cli, launch, probes, summary_beyond

NAME = "computation"
PRESETS = {
    "paper": dict(n=20, m=10, densities=(1.0, 0.5, 0.3, 0.1, 0.05, 0.03, 0.01),
                  importance_kind="geometric", importances=(0.8,), seeds=(0, 1, 2),
                  steps=10_000, model="abs"),
    "quick": dict(n=20, m=10, densities=(1.0, 0.3, 0.1, 0.03), importance_kind="geometric",
                  importances=(0.8,), seeds=(0,), steps=300, log_every=50, batch_size=256,
                  eval_size=2048, model="abs"),
}
PARSER = cli.experiment_parser(__doc__, PRESETS)


def figures(result, counts, args):
  from superpos_jax import plotting
  return {"computed": plotting.figure_computed_features(result, counts),
          "loss": plotting.figure_loss_curves(result, seed_rule=args.seed_rule)}


def run(args, name=NAME, presets=PRESETS):
  """Trains (or loads) `presets[args.preset]` as experiment `name`, then its figures and
  summary (computation_tms.py runs this at TMS's size)."""
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  result = launch.train_or_load(name, cli.spec_from_args(args, presets[args.preset]), args)
  if not args.no_plot:
    data = summary_beyond.computation_summary(result, probes.best_seed_outputs(result))
    data["experiment"] = name
    counts = [data["computed features"][a] for a in result.coords["activation"]]
    summarize = lambda folder: summary_beyond.save(name, data, folder)
    launch.save_outputs(args, name, result, lambda: figures(result, np.array(counts), args),
                        summarize=summarize)


def main(argv=None):
  run(PARSER.parse_args(argv))


if __name__ == "__main__":
  sys.exit(cli.run(main))
