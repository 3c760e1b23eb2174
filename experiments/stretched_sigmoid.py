"""The study's own proposal: a sigmoid stretched to (-ε, 1+ε), through its three experiments.

The study's conclusion suggests "tweaking the Sigmoid function to map to the range
(-ε, 1+ε)": a plain sigmoid reaches the data's 0 and 1 only with unbounded
pre-activations, so it never converges in 10,000 steps. The registry's stretched sigmoids
(ε = 0.01, 0.1, 0.3: `activations.STRETCHES`) against the sigmoid and ReLU in the n=10
WᵀW experiment (the feature_matrices grid), the n=2 phase diagram (a 10 x 10 grid with 5
seeds, 5,000 steps) and the n=200 D* at both ends of the study's density range (1-S = 1
and 0.05, 10,000 steps; the stretched sigmoids only: the sigmoid's and ReLU's are
dims_per_feature's, at the same two densities; a CPU budget, not a choice of science). Does reaching 0 and 1 make it converge, does it move its
superposition towards ReLU's? Numbers (each part's standard summary, convergence included)
in stretched_sigmoid_summary.json.

  python experiments/stretched_sigmoid.py                  # paper preset (~6 min on 2 cores)
  python experiments/stretched_sigmoid.py --preset quick   # seconds, figures/quick/
"""

import sys

import numpy as np

from superpos_jax import activations, cli, launch, summary, summary_beyond

NAME = "stretched_sigmoid"
ACTS = ("relu", "sigmoid", *activations.STRETCHES)
PRESETS = {
    "paper": {
        "n10": dict(n=10, m=5, densities=(1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001),
                    importance_kind="geometric", importances=(0.7,), seeds=(0, 1, 2),
                    steps=10_000, activations=ACTS),
        "n2": dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 10)),
                   importance_kind="relative", importances=tuple(np.geomspace(0.1, 10.0, 10)),
                   seeds=tuple(range(5)), steps=5_000, activations=ACTS),
        "n200": dict(n=200, m=20, densities=(1.0, 0.05),
                     importance_kind="uniform", importances=(1.0,), seeds=(0,), steps=10_000,
                     activations=tuple(activations.STRETCHES))},
    "quick": {
        "n10": dict(n=10, m=5, densities=(1.0, 0.1, 0.01), importance_kind="geometric",
                    importances=(0.7,), seeds=(0,), steps=200, log_every=50, eval_size=2048,
                    activations=ACTS),
        "n2": dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 4)),
                   importance_kind="relative", importances=tuple(np.geomspace(0.1, 10.0, 4)),
                   seeds=(0, 1), steps=200, log_every=50, eval_size=2048, activations=ACTS),
        "n200": dict(n=200, m=20, densities=tuple(20.0 ** -np.linspace(0, 1, 3)),
                     importance_kind="uniform", importances=(1.0,), seeds=(0,), steps=30,
                     log_every=10, batch_size=256, eval_size=1024,
                     activations=tuple(activations.STRETCHES))},
}
PARSER = cli.experiment_parser(__doc__, PRESETS)
SUMMARIES = {"n10": "feature_matrices", "n2": "phase_diagram", "n200": "dims_per_feature"}


def figures(runs, args):
  from superpos_jax import plotting
  kw = dict(seed_rule=args.seed_rule)
  return {"gram": plotting.figure_gram(runs["n10"], **kw),
          "norms": plotting.figure_feature_norms(runs["n10"], **kw),
          "phase": plotting.figure_phase_diagram(runs["n2"], **kw),
          "dstar": plotting.figure_dims_per_feature(runs["n200"], **kw),
          "loss_n10": plotting.figure_loss_curves(runs["n10"], **kw)}


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  runs = {part: launch.train_or_load(f"{NAME}-{part}", cli.spec_from_args(args, preset), args)
          for part, preset in PRESETS[args.preset].items()}
  if args.no_plot:
    return
  data = {"experiment": NAME, "stretches (activation: epsilon)": dict(activations.STRETCHES),
          **{part: summary.experiment_summary(SUMMARIES[part], res) for part, res in runs.items()}}
  launch.save_outputs(args, NAME, runs["n10"], lambda: figures(runs, args),
                      summarize=lambda folder: summary_beyond.save(NAME, data, folder))


if __name__ == "__main__":
  sys.exit(cli.run(main))
