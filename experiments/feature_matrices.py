"""n=10 -> m=5 with importance r^i: WᵀW, feature norms and per-neuron feature weights.

One row per activation, one column per density 1-S in {1, .3, .1, .03, .01, .003, .001}.

  python experiments/feature_matrices.py               # paper preset, CPU
  python experiments/feature_matrices.py --r 0.75      # TMS's neuron variant
  python experiments/feature_matrices.py --preset quick
"""

import sys

from superpos_jax import cli, launch

NAME = "feature_matrices"
DENSITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
PRESETS = {
    "paper": dict(n=10, m=5, densities=DENSITIES, importance_kind="geometric",
                  importances=(0.7,), seeds=(0, 1, 2), steps=10_000),
    "quick": dict(n=10, m=5, densities=DENSITIES, importance_kind="geometric",
                  importances=(0.7,), seeds=(0,), steps=300, log_every=50, eval_size=4096),
}
PARSER = cli.experiment_parser(__doc__, PRESETS)
PARSER.add_argument("--r", type=float, help="importance decay I_i = r^i (default 0.7)")


def build_spec(args):
  preset = dict(PRESETS[args.preset])
  if args.r is not None:
    preset["importances"] = (args.r,)
  return cli.spec_from_args(args, preset)


def figures(result, args):
  from superpos_jax import plotting
  kw = dict(seed_rule=args.seed_rule)
  return {"gram": plotting.figure_gram(result, **kw),
          "norms": plotting.figure_feature_norms(result, **kw),
          "neurons": plotting.figure_neuron_features(result, **kw),
          "loss": plotting.figure_loss_curves(result, **kw)}


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  result = launch.train_or_load(NAME, build_spec(args), args)
  if not args.no_plot:
    launch.save_outputs(args, NAME, result, lambda: figures(result, args))


if __name__ == "__main__":
  sys.exit(cli.run(main))
