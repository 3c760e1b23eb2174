"""n=2 -> m=1 phase diagrams: which feature a single hidden dimension encodes.

x = density 1-S (log, 0.01..1), y = relative importance of feature 2 (log, 0.1..10), one
panel per activation; the closed-form ReLU phases (Wattenberg) are drawn over ReLU. The
whole diagram, every activation and seed, trains in one XLA call.

  python experiments/phase_diagram.py                  # paper preset, CPU
  python experiments/phase_diagram.py --backend gpu
  python experiments/phase_diagram.py --preset quick   # seconds
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from superpos_jax import cli  # noqa: E402  (cli first: it sets XLA_FLAGS before jax loads)

import numpy as np  # noqa: E402

NAME = "phase_diagram"
PRESETS = {
    "paper": dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 40)),
                  importance_kind="relative", importances=tuple(np.geomspace(0.1, 10.0, 40)),
                  seeds=(0, 1, 2), steps=10_000),
    "quick": dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 6)),
                  importance_kind="relative", importances=tuple(np.geomspace(0.1, 10.0, 6)),
                  seeds=(0, 1), steps=300, log_every=50, eval_size=4096),
}


def add_args(parser):
  parser.add_argument("--grid", type=cli.positive_int,
                      help="points per axis of the density x importance grid (default from preset)")


def build_spec(args):
  preset = dict(PRESETS[args.preset])
  if args.grid:
    preset["densities"] = tuple(np.geomspace(0.01, 1.0, args.grid))
    preset["importances"] = tuple(np.geomspace(0.1, 10.0, args.grid))
  return cli.spec_from_args(args, preset)


def figures(result, args):
  from superpos_jax import plotting
  return {"classes": plotting.figure_phase_diagram(result, seed_rule=args.seed_rule),
          "continuous": plotting.figure_phase_continuous(result, seed_rule=args.seed_rule),
          "loss": plotting.figure_loss_curves(result, seed_rule=args.seed_rule)}


main = cli.experiment_main(NAME, __doc__, PRESETS, build_spec, figures, add_args)

if __name__ == "__main__":
  sys.exit(main())
