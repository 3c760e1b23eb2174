"""n=200 -> m=20, uniform importance: dimensions per feature D* against 1/(1-S).

Densities 20^-linspace(0, 1, 20) as in the TMS notebook; one curve per activation, and
per-feature dimensionalities D_i with TMS's reference lines.

  python experiments/dims_per_feature.py               # paper preset, CPU
  python experiments/dims_per_feature.py --preset quick
"""

import sys

import numpy as np

from superpos_jax import cli, launch

NAME = "dims_per_feature"
PRESETS = {
    "paper": dict(n=200, m=20, densities=tuple(20.0 ** -np.linspace(0, 1, 20)),
                  importance_kind="uniform", importances=(1.0,), seeds=(0,), steps=10_000),
    "quick": dict(n=200, m=20, densities=tuple(20.0 ** -np.linspace(0, 1, 5)),
                  importance_kind="uniform", importances=(1.0,), seeds=(0,), steps=50,
                  log_every=25, batch_size=256, eval_size=1024),
}
PARSER = cli.experiment_parser(__doc__, PRESETS)


def figures(result, args):
  from superpos_jax import plotting
  kw = dict(seed_rule=args.seed_rule)
  return {"dstar": plotting.figure_dims_per_feature(result, **kw),
          "feature_dims": plotting.figure_feature_dimensionality(result, **kw),
          "loss": plotting.figure_loss_curves(result, **kw)}


def build_spec(args):
  return cli.spec_from_args(args, PRESETS[args.preset])


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  result = launch.train_or_load(NAME, build_spec(args), args)
  if not args.no_plot:
    launch.save_outputs(args, NAME, result, lambda: figures(result, args))


if __name__ == "__main__":
  sys.exit(cli.run(main))
