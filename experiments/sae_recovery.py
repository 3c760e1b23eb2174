"""Are GELU/SiLU toy models' features easier to recover with a sparse autoencoder?

Stage 1 trains the bottleneck toy models (every activation, the study's densities
1-S in {1, .3, .1, .03, .01, .003, .001}, 3 toy seeds): n=10 -> m=5 with importance
0.7^i (the study's models) and n=40 -> m=10 with uniform importance (room for many
features in superposition; batches of 256, not 1024, to fit the time budget). Stage 2
(`superpos_jax/sae/`) trains an SAE grid on the hidden activations h = W x of fresh data
of every toy model's own distribution, all in one compiled program per study, through
the toy grid's engine (layout, checkpoints, cache, several hosts): Bricken et al. 2023's
recipe, dictionary multiple x L1 x 3 SAE seeds. Feature i is recovered when the
max cosine between W_i and a live latent's decoder column exceeds 0.9, counted over
embedded features (||W_i|| > 0.5). Numbers in sae_recovery_summary.json.

  python experiments/sae_recovery.py                  # paper preset, CPU (README: run time)
  python experiments/sae_recovery.py --preset quick   # about a minute, figures in figures/quick/
  python experiments/sae_recovery.py --l1s 0.1,0.3 --sae-seeds 5
"""

import os
import sys

from superpos_jax import cli, launch

NAME = "sae_recovery"
DENSITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
# The setting the figures draw and the README quotes (every setting is in the summary).
HEADLINE = (1, 0.1)
TOY = {"n10": dict(n=10, m=5, importance_kind="geometric", importances=(0.7,)),
       "n40": dict(n=40, m=10, importance_kind="uniform", importances=(1.0,), batch_size=256)}
PRESETS = {
    "paper": dict(toy=dict(densities=DENSITIES, seeds=(0, 1, 2), steps=10_000),
                  sae={"n10": dict(dict_multiples=(1, 2), l1s=(0.03, 0.1, 0.3)),
                       "n40": dict(dict_multiples=(1,), l1s=(0.1, 0.3))},
                  sae_common=dict(sae_seeds=(0, 1, 2), steps=1_500, batch_size=256, lr=3e-3,
                                  eval_size=16_384)),
    "quick": dict(toy=dict(densities=(1.0, 0.1, 0.01), seeds=(0, 1), steps=300, log_every=50,
                           batch_size=256, eval_size=2048),
                  sae={"n10": dict(dict_multiples=(1, 2), l1s=(0.1, 0.3)),
                       "n40": dict(dict_multiples=(1,), l1s=(0.1,))},
                  sae_common=dict(sae_seeds=(0, 1), steps=200, log_every=50, batch_size=128,
                                  lr=3e-3, eval_size=2048)),
}
PARSER = cli.experiment_parser(__doc__, PRESETS)
PARSER.add_argument("--l1s", type=cli.float_list, help="comma-separated SAE L1 coefficients")
PARSER.add_argument("--dict-multiples", type=cli.int_list,
                    help="comma-separated dictionary sizes as multiples of n (integers)")
PARSER.add_argument("--sae-seeds", type=cli.axis_length, help="SAE seeds per toy model")
PARSER.add_argument("--sae-steps", type=cli.positive_int, help="SAE training steps")


def build_specs(args):
  """`{study: (toy SweepSpec, SAESpec)}` of the preset, overridden by the flags."""
  from superpos_jax.sae.spec import SAESpec
  preset = PRESETS[args.preset]
  if args.model not in (None, "bottleneck"):
    raise cli.UserError("the SAE stage reads h = W x of the bottleneck model; drop --model")
  specs = {}
  for study, toy in TOY.items():
    toy_spec = cli.spec_from_args(args, dict(preset["toy"], **toy))
    fields = dict(preset["sae_common"], **preset["sae"][study])
    if args.l1s:
      fields["l1s"] = args.l1s
    if args.dict_multiples:
      fields["dict_multiples"] = args.dict_multiples
    if args.sae_seeds:
      fields["sae_seeds"] = tuple(range(args.sae_seeds))
    if args.sae_steps:
      fields["steps"] = args.sae_steps
      fields["log_every"] = min(fields.get("log_every", 100), args.sae_steps)
    specs[study] = (toy_spec, SAESpec(**fields))
  return specs


def headline(studies):
  """`HEADLINE` where every study has it, else each study's first setting."""
  mult, l1 = HEADLINE
  if all(mult in r.coords["dict_multiple"] and l1 in r.coords["l1"] for r in studies.values()):
    return HEADLINE
  first = next(iter(studies.values()))
  return int(first.coords["dict_multiple"][0]), float(first.coords["l1"][0])


def dictionary_points(result):
  """A few (activation, density) rows: ReLU, GELU, SiLU at the density nearest 0.03."""
  import numpy as np
  dens = result.coords["density"]
  d = float(dens[np.argmin(np.abs(np.log(dens / 0.03)))])
  acts = [a for a in ("relu", "gelu", "silu") if a in result.coords["activation"]]
  return [(a, d) for a in acts or [str(result.coords["activation"][0])]]


def figures(studies, setting):
  from superpos_jax.plotting import sae as plot_sae
  runs = list(studies.values())
  out = {"recovery": plot_sae.figure_sae_recovery(runs, *setting),
         "by_superposition": plot_sae.figure_sae_by_superposition(runs, *setting),
         "one_to_one": plot_sae.figure_sae_one_to_one(runs, *setting)}
  for study, res in studies.items():
    out[f"dictionaries_{study}"] = plot_sae.figure_sae_dictionaries(
        res, dictionary_points(res), *setting)
  return out


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  from superpos_jax.sae import stage
  studies, toys = {}, {}
  for study, (toy_spec, sae_spec) in build_specs(args).items():
    toys[study] = launch.train_or_load(f"{NAME}-{study}", toy_spec, args)
    studies[study] = stage.train_or_load(f"{NAME}-{study}-sae", toys[study], sae_spec, args)
  if not args.no_plot:
    from superpos_jax import summary_beyond
    from superpos_jax.sae import summary as summary_sae
    setting = headline(studies)
    summarize = lambda folder: summary_beyond.save(NAME, summary_sae.sae_summary(
        studies, setting, {k: r.meta.get("timings", {}) for k, r in toys.items()}), folder)
    launch.save_outputs(args, NAME, toys["n10"], lambda: figures(studies, setting),
                        summarize=summarize)
    if args.explore:  # the SAE stages' pages too (the generic view)
      from superpos_jax.interactive import page
      folder = cli.figures_dir(args)
      for study, res in studies.items():
        path = page.write(res, os.path.join(folder, f"{NAME}-{study}-sae_explorer.html"))
        cli.log(args, f"[{NAME}] wrote {os.path.relpath(path)}")


if __name__ == "__main__":
  sys.exit(cli.run(main))
