"""The explorer page: one HTML file per result that works offline.

The page holds the cube (`cube.Cube`) as one compressed binary block: every array
little-endian in byte planes, concatenated, deflated (zlib) and base64-encoded, with a
JSON index of names, types and shapes; the browser inflates it with its own
`DecompressionStream`.
Numbers are float32 as in the result file, integers in the smallest type that holds
them, except the loss histories (the only bulk of an n = 2 sweep: T windows per model),
stored as 16-bit steps of log10(loss) (delta-coded) over the page's range of losses: to
within half a step, a relative error of `10^(decades / 131068) - 1` (9e-5 over 5
decades; `curve_precision`). The curves are drawn from them; every number a table or
hover prints is float32.

plotly.js is not embedded: `write` puts one copy, `plotly.min.js`, beside the pages
(plotly's own `include_plotlyjs="directory"` convention), shared by every page of the
folder. Never a CDN: the page makes no network request.
"""

from __future__ import annotations

import base64
import html
import json
import os
import zlib
from importlib import resources
from typing import Any

import numpy as np

from superpos_jax import results
from superpos_jax.interactive import cube as cube_mod
from superpos_jax.interactive import views

PLOTLY_FILE = "plotly.min.js"
LOG16_MAX = 65534  # 65535 marks NaN / non-positive


class _Blob:
  """Arrays packed one after the other (8-byte aligned), with their JSON index."""

  def __init__(self):
    self.parts: list[bytes] = []
    self.size = 0
    self.index: dict[str, dict[str, Any]] = {}

  def add(self, name: str, array: np.ndarray, encoding: str = "") -> str:
    array = np.asarray(array)
    entry: dict[str, Any] = {"shape": list(array.shape)}
    if encoding == "log16":
      packed, entry["lo"], entry["hi"] = _log16(array)
    else:
      packed = _narrow(array)
    entry.update(dtype=packed.dtype.name, offset=self.size, count=int(packed.size),
                 encoding=encoding)
    little = packed.astype(packed.dtype.newbyteorder("<"), copy=False)
    # Byte planes (all first bytes, then all second bytes, ...): exponents and high bytes
    # vary little, so deflate packs them far better than interleaved.
    raw = little.reshape(-1).view(np.uint8).reshape(-1, little.itemsize).T.tobytes()
    pad = -len(raw) % 8
    self.parts.append(raw + b"\0" * pad)
    self.size += len(raw) + pad
    self.index[name] = entry
    return name

  def encoded(self) -> str:
    return base64.b64encode(zlib.compress(b"".join(self.parts), 9)).decode("ascii")


def _narrow(array: np.ndarray) -> np.ndarray:
  """float -> float32 (the result files' precision); bool/int -> the smallest that fits."""
  if array.dtype.kind == "f":
    return array.astype(np.float32)
  if array.dtype.kind == "b":
    return array.astype(np.uint8)
  lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
  for dtype in (np.uint8, np.uint16, np.int32):
    info = np.iinfo(dtype)
    if info.min <= lo and hi <= info.max:
      return array.astype(dtype)
  raise ValueError(f"integers out of int32 range: {lo}..{hi}")


def _log16(array: np.ndarray) -> tuple[np.ndarray, float, float]:
  """Positive values as uint16 steps of log10 between their min and max (NaN -> 65535),
  each step stored as its difference from the previous one along the last axis, modulo
  2^16 (a curve's neighbours are close: small differences deflate well)."""
  a = np.asarray(array, np.float64)
  ok = np.isfinite(a) & (a > 0)
  logs = np.log10(np.where(ok, a, 1.0))
  lo, hi = (float(logs[ok].min()), float(logs[ok].max())) if ok.any() else (0.0, 1.0)
  span = hi - lo if hi > lo else 1.0
  q = np.where(ok, np.round((logs - lo) / span * LOG16_MAX), LOG16_MAX + 1).astype(np.int64)
  return (np.diff(q, axis=-1, prepend=0) % 2**16).astype(np.uint16), lo, lo + span


def curve_precision(entry: dict[str, Any]) -> float:
  """The largest relative error of a "log16" array of the page's index (half a step)."""
  return float(10 ** ((entry["hi"] - entry["lo"]) / (2 * LOG16_MAX)) - 1)


def pack(cube: cube_mod.Cube) -> tuple[dict[str, Any], str]:
  """The page's JSON index and its base64 data block.

  Returns:
    (meta, data): `meta` names every array of `data` and holds the axes, metrics,
    presets and look (`views.look`); `data` is the deflated, base64-encoded block.
  """
  blob = _Blob()
  metrics = {}
  for name, m in cube.metrics.items():
    metrics[name] = {"label": m.label, "categories": m.categories, "colors": m.colors,
                     "log": m.log, "values": blob.add(f"metric:{name}", m.values),
                     "typical": None if m.typical is None else blob.add(f"typical:{name}",
                                                                          m.typical)}
  model = {}
  offered = views.presets(cube)
  for name, array in cube.model.items():
    if not any(name in views.PANEL_ARRAYS.get(part, (part[5:],)) for state in offered.values()
               for part in state["panel"]):
      continue  # no panel of this page draws it
    grid = len(cube.axes)
    model[name] = {"dims": list(array.shape[grid:]),
                   "ref": blob.add(f"model:{name}", array,
                                   "log16" if name == "loss_history" else "")}
  meta = {"kind": cube.kind, "axes": [vars(a) for a in cube.axes], "seed_axes": cube.seed_axes,
          "metrics": metrics, "model": model, "best": blob.add("best", cube.best),
          "history_steps": np.asarray(cube.history_steps).tolist(),
          "presets": offered, "look": views.look(cube), "arrays": blob.index}
  return meta, blob.encoded()


def _script_json(data: Any) -> str:
  """JSON safe inside a <script> element."""
  return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _clean(data: Any) -> Any:
  """NaN -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
  if isinstance(data, dict):
    return {k: _clean(v) for k, v in data.items()}
  if isinstance(data, (list, tuple)):
    return [_clean(v) for v in data]
  if isinstance(data, (float, np.floating)):
    return float(data) if np.isfinite(data) else None
  if isinstance(data, np.integer):
    return int(data)
  return data


def _asset(name: str) -> str:
  return resources.files("superpos_jax.interactive").joinpath(name).read_text(encoding="utf-8")


def render(cube: cube_mod.Cube, source: str = "", plotly_src: str = PLOTLY_FILE) -> str:
  """The page's HTML: `plotly_src` is the script's path relative to the page."""
  meta, data = pack(cube)
  meta["source"] = source
  title = html.escape(meta["look"]["title"])
  return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          f"<title>{title} · explorer</title>\n<style>{_asset('explorer.css')}</style>\n"
          f"<script src=\"{html.escape(plotly_src)}\"></script>\n</head><body>\n"
          f"{_asset('explorer.html')}\n"
          f"<script type=\"application/json\" id=\"explorer-meta\">{_script_json(_clean(meta))}"
          f"</script>\n<script type=\"text/plain\" id=\"explorer-data\">{data}</script>\n"
          f"<script>{_asset('explorer.js')}</script>\n</body></html>\n")


def plotly_js() -> tuple[str, str]:
  """(plotly.js bundle, its version), from the installed plotly package."""
  from plotly import offline
  return offline.get_plotlyjs(), offline.get_plotlyjs_version()


def write(result: Any, path: str) -> str:
  """Writes the explorer page of `result` (a result object or a `.npz` path) to `path`,
  and `plotly.min.js` beside it unless the same copy is there; returns `path`.

  Args:
    result: a `SweepResult`, an `SAEResult`, or the path of either's file.
    path: the page's file name (`.html`).
  """
  source = ""
  if isinstance(result, (str, os.PathLike)):
    source = os.path.basename(os.fspath(result))
    result = cube_mod.load(os.fspath(result))
  text = render(cube_mod.build(result), source)
  folder = os.path.dirname(os.path.abspath(path))
  bundle, _ = plotly_js()
  js_path = os.path.join(folder, PLOTLY_FILE)
  os.makedirs(folder, exist_ok=True)
  if not os.path.exists(js_path) or open(js_path, encoding="utf-8").read() != bundle:
    results.write_atomically(js_path, lambda f: f.write(bundle.encode("utf-8")))
  return results.write_atomically(path, lambda f: f.write(text.encode("utf-8")))
