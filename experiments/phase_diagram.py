"""n=2 -> m=1 phase diagrams: which feature a single hidden dimension encodes.

x = density 1-S (log, 0.01..1), y = relative importance of feature 2 (log, 0.1..10), one
panel per activation; the closed-form ReLU phases (Wattenberg) are drawn over ReLU. The
whole diagram, every activation and seed, trains in one XLA call.

  python experiments/phase_diagram.py                  # paper preset, CPU
  python experiments/phase_diagram.py --backend gpu
  python experiments/phase_diagram.py --preset quick   # seconds, figures in figures/quick/
"""

import sys

import numpy as np

from superpos_jax import cli, launch

NAME = "phase_diagram"
PRESETS = {
    # Ten independently initialised seeds per point (as public TMS replications use), so
    # that basin statistics mean something; a 20 x 20 grid (a cell is 0.1 decade) and
    # 5,000 steps keep the whole reproduction near its time goal. README: the diagrams
    # and their summary numbers at 10,000 steps, for comparison.
    "paper": dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 20)),
                  importance_kind="relative", importances=tuple(np.geomspace(0.1, 10.0, 20)),
                  seeds=tuple(range(10)), steps=5_000),
    "quick": dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 6)),
                  importance_kind="relative", importances=tuple(np.geomspace(0.1, 10.0, 6)),
                  seeds=(0, 1), steps=300, log_every=50, eval_size=4096),
}
PARSER = cli.experiment_parser(__doc__, PRESETS)
PARSER.add_argument("--grid", type=cli.positive_int,
                    help="points per axis of the density x importance grid (default from preset)")
PARSER.add_argument("--importances", type=cli.float_list,
                    help="comma-separated relative importances of feature 2 (default from preset)")


def build_spec(args):
  preset = dict(PRESETS[args.preset])
  if args.grid:
    if args.grid > cli.MAX_AXIS_LENGTH:
      raise cli.UserError(f"--grid must be at most {cli.MAX_AXIS_LENGTH:,}, got {args.grid:,}")
    if args.densities is not None:
      raise cli.UserError("--grid and --densities both set the densities: give one")
    preset["densities"] = tuple(np.geomspace(0.01, 1.0, args.grid))
    if args.importances is not None:
      raise cli.UserError("--grid and --importances both set the importances: give one")
    preset["importances"] = tuple(np.geomspace(0.1, 10.0, args.grid))
  if args.importances is not None:
    preset["importances"] = args.importances
  return cli.spec_from_args(args, preset)


def figures(result, args):
  from superpos_jax import plotting
  out = {"classes": plotting.figure_phase_diagram(result, seed_rule=args.seed_rule),
         "continuous": plotting.figure_phase_continuous(result, seed_rule=args.seed_rule),
         "loss": plotting.figure_loss_curves(result, seed_rule=args.seed_rule)}
  if len(result.coords["seed"]) > 1:
    out["basins"] = plotting.figure_phase_basins(result)
  return out


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  result = launch.train_or_load(NAME, build_spec(args), args)
  if not args.no_plot:
    launch.save_outputs(args, NAME, result, lambda: figures(result, args))


if __name__ == "__main__":
  sys.exit(cli.run(main))
