"""Figures of sweep results (Elhage et al. 2022; Lad & Kostolansky 2023).

numpy + matplotlib only: this package reads `results.SweepResult`s and never imports jax,
so figures can be redrawn from saved `.npz` files on any machine. It builds
`matplotlib.figure.Figure` objects directly (no pyplot), which need no GUI backend.

Naming: `plot_*(ax, ...)` draws on one Axes; `figure_*(result, ...) -> Figure` makes a
whole, self-explaining figure (title, settings line, axis labels, legend or colorbar).
Every `figure_*` that takes a `SweepResult` collapses the seed axis with `seed_rule`
("best" or "trimmed_mean", see `SweepResult.reduce_seeds`) and, where the result has
several importances or learning rates, draws the one chosen by `importance=` / `lr=`
(default: the first coordinate value). Activation names and their order come from
`result.coords["activation"]`. Diverged models (NaN/inf weights or loss) are drawn as
grey hatched cells or grey crosses, never as numbers.

    res = results.load("n10.npz")
    save_figure(figure_gram(res), "figures/n10_gram")

Modules: `style` (colours, diverged marks, layout, `save_figure`), `captions` (title
blocks), `panels` (the shown slice and the panel grids), then one module per figure
family: `matrices`, `phase_diagrams`, `basins`, `dims`, `curves`, `inputs`,
`beyond` (the "beyond the study" experiments), `sae` (SAE recovery, from
`sae.results.SAEResult`s). The names below are
the public API; import them from `superpos_jax.plotting`.
"""

from superpos_jax.phases import AMBIGUOUS, BOTH, FEATURE1, FEATURE2, NEITHER, PHASES
from superpos_jax.plotting.basins import figure_phase_basins, plot_fraction
from superpos_jax.plotting.beyond import (figure_computed_features, figure_dstar_variants,
                                          figure_features_per_neuron,
                                          figure_init_scale_overview, figure_pair_cosines,
                                          plot_activation_lines)
from superpos_jax.plotting.curves import figure_loss_curves, plot_loss_curves
from superpos_jax.plotting.dims import (FEATURE_DIM_REFERENCES, figure_dims_per_feature,
                                        figure_feature_dimensionality, plot_dims_per_feature,
                                        plot_feature_dimensionality)
from superpos_jax.plotting.inputs import figure_input_batches, plot_input_batch
from superpos_jax.plotting.matrices import (figure_feature_norms, figure_gram,
                                            figure_neuron_features, plot_bias,
                                            plot_feature_norms, plot_gram, plot_neuron_features)
from superpos_jax.plotting.phase_diagrams import (PHASE_COLORS, figure_phase_continuous,
                                                  figure_phase_diagram, phase_continuous_colors,
                                                  plot_phase, plot_phase_continuous,
                                                  plot_relu_boundaries)
from superpos_jax.plotting.sae import (figure_sae_by_superposition, figure_sae_dictionaries,
                                       figure_sae_one_to_one, figure_sae_recovery)
from superpos_jax.plotting.style import activation_colors, save_figure
# Kept here for callers of the former plotting module; `superpos_jax.theory` owns them.
from superpos_jax.theory import relu_closed_form_losses, relu_closed_form_phase

__all__ = [
    "AMBIGUOUS", "BOTH", "FEATURE1", "FEATURE2", "NEITHER", "PHASES", "PHASE_COLORS",
    "FEATURE_DIM_REFERENCES",
    "activation_colors", "phase_continuous_colors", "save_figure",
    "relu_closed_form_losses", "relu_closed_form_phase",
    "figure_gram", "figure_feature_norms", "figure_neuron_features",
    "figure_phase_diagram", "figure_phase_continuous", "figure_phase_basins",
    "figure_dims_per_feature", "figure_feature_dimensionality",
    "figure_loss_curves", "figure_input_batches",
    "figure_features_per_neuron", "figure_pair_cosines", "figure_computed_features",
    "figure_init_scale_overview", "figure_dstar_variants", "plot_activation_lines",
    "figure_sae_recovery", "figure_sae_by_superposition", "figure_sae_dictionaries",
    "figure_sae_one_to_one",
    "plot_gram", "plot_bias", "plot_feature_norms", "plot_neuron_features",
    "plot_phase", "plot_phase_continuous", "plot_relu_boundaries", "plot_fraction",
    "plot_dims_per_feature", "plot_feature_dimensionality",
    "plot_loss_curves", "plot_input_batch",
]
