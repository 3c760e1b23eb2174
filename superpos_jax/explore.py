"""Writes the explorer page of a result file: `python -m superpos_jax.explore RESULT.npz`.

One self-contained HTML page per result (a toy sweep or an SAE stage): hover a grid point
for its numbers, click it for its models. It works offline; plotly.js is written once,
as `plotly.min.js`, beside the page. jax is never imported.

  python -m superpos_jax.explore runs/phase_diagram-cpu-72b9fa3329fe81fc.npz
  python -m superpos_jax.explore RESULT.npz --out figures/mine.html
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m superpos_jax.explore", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("result", help="a result .npz (toy sweep or SAE stage)")
  parser.add_argument("--out", help="the page to write (default: the result's name with .html)")
  args = parser.parse_args(argv)
  from superpos_jax import results
  from superpos_jax.interactive import page
  out = args.out or os.path.splitext(args.result)[0] + ".html"
  if not out.endswith((".html", ".htm")):
    print(f"error: --out must name an .html file, got {out!r}", file=sys.stderr)
    return 2
  try:
    page.write(args.result, out)
  except results.ResultFileError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except OSError as e:
    print(f"error: {e.strerror or e}: {e.filename or out}", file=sys.stderr)
    return 1
  print(f"wrote {out} (plotly.js: {page.PLOTLY_FILE} beside it)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
