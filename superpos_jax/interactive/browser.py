"""Headless Chromium for checking explorer pages: open, time, hover, click, screenshot.

Uses the system's Chromium and its matching chromedriver (Debian: `apt-get install
chromium chromium-driver`) through selenium (the `test` extra); never downloads a browser
or driver of its own. Used by tests/test_explore.py and benchmarks/explorer_pages.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Flags that work in a container as root, and keep Chromium from calling home.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def missing() -> str | None:
  """Why no browser can be driven here (None if one can)."""
  try:
    import selenium  # noqa: F401
  except ImportError:
    return "selenium is not installed (pip install -e '.[test]')"
  if not any(shutil.which(b) for b in BROWSERS):
    return f"no Chromium found ({', '.join(BROWSERS)}; Debian: apt-get install chromium)"
  if not shutil.which("chromedriver"):
    return "no chromedriver found (Debian: apt-get install chromium-driver)"
  return None


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator:
  """A selenium driver of headless Chromium with console and network logs, quit on exit."""
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  reason = missing()
  if reason:
    raise RuntimeError(reason)
  options = webdriver.ChromeOptions()
  options.binary_location = next(shutil.which(b) for b in BROWSERS if shutil.which(b))
  profile = tempfile.mkdtemp(prefix="explorer-chromium-")
  for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
    options.add_argument(flag)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
  # With the driver's path given, selenium skips Selenium Manager (which would download one).
  driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
  try:
    driver.get("about:blank")  # past the start page's own requests, then empty the logs
    driver.get_log("browser")
    driver.get_log("performance")
    yield driver
  finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, path: str, timeout: float = 60.0) -> float:
  """Opens the page at `path` and waits until its script has drawn; returns the seconds
  from navigation start to that moment (the page's `performance.now()` then)."""
  from selenium.webdriver.support.ui import WebDriverWait
  driver.get("file://" + os.path.abspath(path))
  WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
      "return window.explorerReady !== undefined || "
      "document.getElementById('status').textContent.startsWith('error')"))
  ready = driver.execute_script("return window.explorerReady")
  if ready is None:
    raise RuntimeError(driver.execute_script("return document.getElementById('status').textContent"))
  return float(ready) / 1000.0


def console_errors(driver) -> list[str]:
  """Console messages of level SEVERE since the last call."""
  return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def requested_urls(driver) -> list[str]:
  """Every URL the page requested since the last call (Chrome's network log)."""
  import json
  urls = []
  for entry in driver.get_log("performance"):
    message = json.loads(entry["message"])["message"]
    if message["method"] == "Network.requestWillBeSent":
      urls.append(message["params"]["request"]["url"])
  return urls


def screenshot(driver, path: str, max_height: int = 4000) -> str:
  """Saves the whole page (up to `max_height` pixels) as a PNG at `path`: the window as it
  is when the page fits it (hover labels included), else captured beyond the window."""
  import base64
  height = min(int(driver.execute_script("return document.documentElement.scrollHeight")),
               max_height)
  if height <= int(driver.execute_script("return window.innerHeight")):
    from PIL import Image  # matplotlib's dependency
    driver.save_screenshot(path)
    with Image.open(path) as image:
      image.crop((0, 0, image.width, height)).save(path)
    return path
  width = int(driver.execute_script("return document.documentElement.scrollWidth"))
  shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
      "format": "png", "captureBeyondViewport": True,
      "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
  with open(path, "wb") as f:
    f.write(base64.b64decode(shot["data"]))
  return path


def point(driver, trace: int, x, y, click: bool = False) -> tuple[float, float]:
  """Moves the mouse onto the data point (x, y) of trace `trace` of the page's main chart,
  as a user would (and clicks there); returns that viewport pixel."""
  from selenium.webdriver.common.actions.action_builder import ActionBuilder
  px, py = driver.execute_script("""
    const gd = document.getElementById('main'), t = gd._fullData[arguments[0]];
    const xa = gd._fullLayout[t.xaxis.replace('x', 'xaxis')], ya = gd._fullLayout[t.yaxis.replace('y', 'yaxis')];
    const r = gd.getBoundingClientRect();
    return [r.left + xa._offset + xa.d2p(arguments[1]), r.top + ya._offset + ya.d2p(arguments[2])];
  """, trace, x, y)
  actions = ActionBuilder(driver)
  actions.pointer_action.move_to_location(int(px), int(py))
  if click:
    actions.pointer_action.click()
  actions.perform()
  return px, py
