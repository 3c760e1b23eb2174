"""Privileged basis: n=10 -> m=5, h = f(W x), x' = f(Wᵀ h + b), importance 0.7^i.

The study's neuron figure drawn in a model where neurons mean something: with f on the
hidden layer, rotating W changes the loss, so the neuron basis is privileged (TMS,
"Superposition in a privileged basis"). For all 7 activations at the study's densities
1-S in {1, .3, .1, .03, .01, .003, .001}: WᵀW, per-neuron feature weights, and features
per neuron against density (neuron k carries feature i when |W_ki| > 0.5; numbers in
privileged_basis_summary.json).

  python experiments/privileged_basis.py                   # paper preset, CPU
  python experiments/privileged_basis.py --preset quick    # seconds, figures in figures/quick/
"""

import sys

from superpos_jax import cli, launch, summary_beyond

NAME = "privileged_basis"
DENSITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
PRESETS = {
    "paper": dict(n=10, m=5, densities=DENSITIES, importance_kind="geometric",
                  importances=(0.7,), seeds=(0, 1, 2), steps=10_000, model="privileged"),
    "quick": dict(n=10, m=5, densities=DENSITIES, importance_kind="geometric",
                  importances=(0.7,), seeds=(0,), steps=300, log_every=50, batch_size=256,
                  eval_size=2048, model="privileged"),
}
PARSER = cli.experiment_parser(__doc__, PRESETS)


def build_spec(args):
  return cli.spec_from_args(args, PRESETS[args.preset])


def figures(result, args):
  from superpos_jax import plotting
  kw = dict(seed_rule=args.seed_rule)
  return {"gram": plotting.figure_gram(result, **kw),
          "neurons": plotting.figure_neuron_features(result, **kw),
          "per_neuron": plotting.figure_features_per_neuron(result),
          "loss": plotting.figure_loss_curves(result, **kw)}


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  result = launch.train_or_load(NAME, build_spec(args), args)
  if not args.no_plot:
    summarize = lambda folder: summary_beyond.save(
        NAME, summary_beyond.privileged_summary(result), folder)
    launch.save_outputs(args, NAME, result, lambda: figures(result, args), summarize=summarize)


if __name__ == "__main__":
  sys.exit(cli.run(main))
