"""Size and load time of the explorer pages in headless Chromium, and the docs' screenshots.

  python benchmarks/explorer_pages.py                 # figures/*_explorer.html -> figures/explorer.json
  python benchmarks/explorer_pages.py --shots docs    # also docs/explorer_*.png

Each page is opened `--repeats` times in one headless Chromium (the system's, see
superpos_jax/interactive/browser.py); its load time is the page's own clock
(`performance.now()`, from navigation start) when its first view is drawn and answers
clicks. The file records the machine and its load average, since a shared machine's
timings say so. docs/build.py writes the table of docs/explorer.md from it.
"""

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from superpos_jax import results  # noqa: E402
from superpos_jax.interactive import browser, page  # noqa: E402


def _models(meta: dict) -> int:
  count = 1
  for axis in meta["axes"]:
    count *= len(axis["values"])
  return count


def measure(driver, path: str, repeats: int) -> dict:
  """Load times (s) of `repeats` fresh loads, the page's size and what it holds."""
  times, stages = [], []
  for _ in range(repeats):
    times.append(browser.open_page(driver, path))
    stages.append(driver.execute_script(  # explorer.js's marks: where the time goes
        "return Object.fromEntries(performance.getEntriesByType('mark')"
        ".filter(m => m.name.startsWith('explorer:')).map(m => [m.name.slice(9), m.startTime]))"))
    errors = browser.console_errors(driver)
    if errors:
      raise RuntimeError(f"{path}: console errors {errors}")
    outside = [u for u in browser.requested_urls(driver) if not u.startswith(("file://", "data:"))]
    if outside:
      raise RuntimeError(f"{path}: requests beyond the page's folder: {outside}")
  with open(path, encoding="utf-8") as f:  # (the driver would hand back its keys sorted)
    text = f.read()
  start = text.index('id="explorer-meta">') + len('id="explorer-meta">')
  meta = json.loads(text[start:text.index("</script>", start)])
  return {"page": os.path.basename(path), "result": meta.get("source", ""),
          "bytes": os.path.getsize(path), "models": _models(meta),
          "views": list(meta["presets"]), "load_s": [round(t, 3) for t in times],
          "loss_curves_relative_error": page.curve_precision(meta["arrays"]["model:loss_history"]),
          "load_s_median": round(statistics.median(times), 3), "load_s_max": round(max(times), 3),
          # median ms from navigation start: script start (plotly.js and the page parsed),
          # data inflated, arrays decoded, first view drawn
          "stages_ms": {k: round(statistics.median(st[k] for st in stages)) for k in stages[0]}}


# Which point each screenshot clicks: JavaScript returning [trace, x, y] of the main chart.
TARGETS = {
    # relu's panel (the second), density 0.078, r = 3.36: a superposing cell
    "phase_diagram": "const m = JSON.parse(document.getElementById('explorer-meta').textContent);"
                     "const d = document.getElementById('main').data;"
                     "return [d.findIndex(t => t.type === 'heatmap' && t.xaxis === 'x2'),"
                     " m.axes[1].values[11], m.axes[2].values[15]];",
    # relu's point nearest D* = 1/2 (TMS's sticky antipodal pairs)
    "dims_per_feature": "const d = document.getElementById('main').data;"
                        "const i = d.findIndex(t => t.name === 'relu'), t = d[i];"
                        "const k = t.y.reduce((b, y, j) => Math.abs(y - 0.5) < Math.abs(t.y[b] - 0.5)"
                        " ? j : b, 0);"
                        "return [i, t.x[k], t.y[k]];",
    "feature_matrices": None,  # its page opens with a model's panel
}


def shots(driver, folder: str, out: str) -> list[str]:
  """Screenshots of the study's three pages with a point clicked (its panel open)."""
  written = []
  for name, target in TARGETS.items():
    path = os.path.join(folder, f"{name}_explorer.html")
    if not os.path.exists(path):
      continue
    browser.open_page(driver, path)
    if target:
      trace, x, y = driver.execute_script(target)
      browser.point(driver, trace, x, y)  # hover first, as a reader does
      time.sleep(0.3)
      browser.point(driver, trace, x, y, click=True)
      time.sleep(0.5)
    written.append(browser.screenshot(driver, os.path.join(out, f"explorer_{name}.png")))
  return written


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--pages", nargs="*", help="pages to measure (default: figures/*_explorer.html)")
  p.add_argument("--repeats", type=int, default=5, help="loads per page (default 5)")
  p.add_argument("--out", default=os.path.join(REPO, "figures", "explorer.json"))
  p.add_argument("--shots", help="folder for the docs' screenshots (default: none)")
  args = p.parse_args(argv)
  load_before = os.getloadavg()[0]
  reason = browser.missing()
  if reason:
    print(f"error: {reason}", file=sys.stderr)
    return 2
  pages = args.pages or sorted(glob.glob(os.path.join(REPO, "figures", "*_explorer.html")))
  binary = next(b for b in browser.BROWSERS if shutil.which(b))
  version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
  rows = []
  with browser.chromium(1400, 1500) as driver:  # tall enough for a page with its panel open
    browser.open_page(driver, pages[0])  # warm the browser: its first start is not the page's
    for path in pages:
      rows.append(measure(driver, path, args.repeats))
      print(f"{rows[-1]['page']}: {rows[-1]['bytes'] / 2**20:.2f} MiB, "
            f"load {rows[-1]['load_s_median']:.2f} s (median of {args.repeats})", flush=True)
    written = shots(driver, os.path.dirname(pages[0]), args.shots) if args.shots else []
  plotly_js = os.path.join(os.path.dirname(pages[0]), page.PLOTLY_FILE)
  report = {"pages": rows, "plotly_js_bytes": os.path.getsize(plotly_js),
            "plotly_js_version": page.plotly_js()[1], "browser": version,
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "note": "headless Chromium on a shared machine: load_average_1min (before, after) "
                    "says how busy it was",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  results.write_atomically(args.out, lambda f: f.write(json.dumps(report, indent=1).encode()))
  print(f"wrote {os.path.relpath(args.out)}" + "".join(f", {os.path.relpath(w)}" for w in written))
  return 0


if __name__ == "__main__":
  sys.exit(main())
