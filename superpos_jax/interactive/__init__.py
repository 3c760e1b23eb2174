"""Interactive views of sweep results: explorer pages and notebook figures (plotly).

numpy + plotly only (the plotting layer never imports jax). `write_page` turns a result
(a `SweepResult`, an `SAEResult` or the path of either's file) into one self-contained
HTML page: every grid point one hover away, its models one click away, offline
(plotly.js is written once beside the pages). `figure_view` and `figure_models` give the
same views as `plotly.graph_objects.Figure`s, which render inline in Jupyter.

    from superpos_jax import interactive
    interactive.write_page("runs/phase_diagram-cpu-....npz", "figures/phase_diagram.html")
    interactive.figure_view(result)                      # the page's first view
    interactive.figure_models(result, activation="relu", density=0.1, importance=2.0)

Modules: `cube` (the data model: axes, metrics, each model's arrays), `views` (the one
generic view, its presets, the look shared with the static figures), `page` (the HTML
file and its compact data block; `explorer.js` draws it), `figures` (the notebook
figures).
"""

from superpos_jax.interactive.cube import Cube, build, load
from superpos_jax.interactive.figures import figure_models, figure_view
from superpos_jax.interactive.page import write as write_page
from superpos_jax.interactive.views import presets

__all__ = ["Cube", "build", "load", "presets", "write_page", "figure_view", "figure_models"]
