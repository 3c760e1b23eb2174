"""Liu, Liu & Gore's published numbers, read off their heatmaps (a one-off digitisation).

Their analysis code is not public; their repository (liuyz0/SuperpositionScaling, commit
35b08b0) holds the figures. Two heatmaps carry the numbers this project compares with,
both over weight decay γ ∈ linspace(-1, 1, 10) (columns) and data exponent a ∈ {0,
0.125, ..., 2} (17 rows; `p_i ∝ i^-a`, their code's `1 + alpha`, exp-10 and exp-10-3):
Fig. 4b, the fitted model exponent (viridis), and Fig. 3b, the represented fraction
φ_1/2 (Purples). Each cell's value is the colour bar position of its pixels' nearest
colour (RGB distance), mapped to a value through the colour bar's tick marks, the median
over the cell's interior (the rounded boxes drawn over Fig. 4b cross some cells and are
outvoted). The pixel boxes below were measured on those PNGs (frames and tick marks are
the black pixels); the script checks them before reading.

  python experiments/scaling_law_published.py PATH/TO/SuperpositionScaling/figures
  # writes figures/scaling_law_published.json
"""

import json
import os
import sys

import numpy as np

from superpos_jax import cli
from superpos_jax.atomic import write_atomically

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHT_DECAYS = np.linspace(-1.0, 1.0, 10)
EXPONENTS = np.linspace(0.0, 2.0, 17)
# name: (file, heatmap inner box x0, x1, y0, y1, colour bar inner x0, x1, {tick y: value})
FIGURES = {
    "model_exponent": ("Fig-4-3.png", (643, 927, 43, 305), (944, 955),
                       {88.0: 2.0, 142.5: 1.5, 197.0: 1.0, 251.5: 0.5, 306.5: 0.0}),
    "represented_fraction": ("Fig-3-2.png", (663, 948, 51, 305), (965, 975),
                             {49.5: 1.0, 100.5: 0.8, 152.0: 0.6, 203.5: 0.4, 255.0: 0.2,
                              306.5: 0.0}),
}


def read_heatmap(image: np.ndarray, box, bar, ticks) -> tuple[np.ndarray, np.ndarray]:
  """`(values [17, 10], spread [17, 10])`: each cell's median value (rows: exponent a
  ascending; columns: weight decay ascending) and the interquartile range of its pixels."""
  x0, x1, y0, y1 = box
  strip = np.median(image[y0:y1 + 1, bar[0] + 2:bar[1] - 1], axis=1)  # [rows, 3]
  ys = np.arange(y0, y1 + 1)
  tick_y, tick_v = np.array(list(ticks)), np.array(list(ticks.values()))
  slope, intercept = np.polyfit(tick_y, tick_v, 1)
  values, spread = np.zeros((17, 10)), np.zeros((17, 10))
  xs, rows = np.linspace(x0, x1 + 1, 11), np.linspace(y1 + 1, y0, 18)  # row 0 at the bottom
  for k in range(17):
    for j in range(10):
      cell = image[int(rows[k + 1]) + 2:int(rows[k]) - 2, int(xs[j]) + 2:int(xs[j + 1]) - 2]
      dist = np.linalg.norm(cell.reshape(-1, 1, 3) - strip[None], axis=-1)  # [pixels, rows]
      best = dist.argmin(axis=1)
      near = dist[np.arange(best.size), best] < 0.08
      v = slope * ys[best[near]] + intercept
      values[k, j] = np.median(v)
      spread[k, j] = np.subtract(*np.percentile(v, [75, 25]))
  return values, spread


def check_frame(image: np.ndarray, box) -> None:
  """The heatmap's frame is black just outside the box (the measured geometry holds)."""
  x0, x1, y0, y1 = box
  black = image.max(axis=-1) < 0.2
  for name, line in (("left", black[y0 + 20:y1 - 20, x0 - 2]), ("right", black[y0 + 20:y1 - 20, x1 + 1]),
                     ("top", black[y0 - 1, x0 + 20:x1 - 20]), ("bottom", black[y1 + 2, x0 + 20:x1 - 20])):
    if line.mean() < 0.9:
      raise cli.UserError(f"the {name} frame is not where it was measured: another image?")


PARSER = cli.ArgumentParser(description=__doc__)
PARSER.add_argument("folder", help="their repository's figures/ folder")
PARSER.add_argument("--out", default=os.path.join(REPO, "figures", "scaling_law_published.json"))


def main(argv=None) -> int:
  import matplotlib.image as mpimg
  args = PARSER.parse_args(argv)
  missing = [f for f, *_ in FIGURES.values() if not os.path.isfile(os.path.join(args.folder, f))]
  if missing:
    raise cli.UserError(f"{args.folder} lacks {', '.join(missing)}: give their repository's figures/ folder")
  out = {"source": "Liu, Liu & Gore 2025, github.com/liuyz0/SuperpositionScaling@35b08b0, figures/",
         "how": __doc__.split("\n\n")[1].replace("\n", " "),
         "weight_decays": WEIGHT_DECAYS.round(4).tolist(), "data_exponents": EXPONENTS.tolist()}
  for name, (file, box, bar, ticks) in FIGURES.items():
    image = mpimg.imread(os.path.join(args.folder, file))[..., :3]
    check_frame(image, box)
    values, spread = read_heatmap(image, box, bar, ticks)
    out[name] = {"figure": file, "values [a, weight decay]": values.round(3).tolist(),
                 "pixel interquartile range [a, weight decay]": spread.round(3).tolist()}
  write_atomically(args.out, lambda f: f.write(json.dumps(out, indent=1).encode()))
  print(f"wrote {os.path.relpath(args.out)}")
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
