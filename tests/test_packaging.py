"""The package installs whole: a wheel built from the checkout holds every module of every
subpackage, and installed into a fresh virtual environment outside the checkout it
imports, trains and draws (the library needs no checkout)."""

import glob
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import os, sys
    import superpos_jax
    assert superpos_jax.__file__.startswith(sys.argv[1]), superpos_jax.__file__
    from superpos_jax import cli, plotting, results, sweep
    from superpos_jax.spec import SweepSpec
    assert cli.CHECKOUT is None and cli.REPO == os.getcwd()
    res = sweep.run(SweepSpec(n=4, m=2, activations=("relu",), densities=(1.0, 0.1), steps=10,
                              log_every=5, batch_size=32, eval_size=64), progress=False)
    assert res.meta["env"]["git_commit"] is None
    path = results.save(res, "r.npz")
    print(plotting.save_figure(plotting.figure_gram(results.load(path)), "gram")[0])
""")


def test_wheel_installs_and_draws_outside_the_checkout(tmp_path):
  build = subprocess.run([sys.executable, "-m", "pip", "wheel", REPO, "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                         capture_output=True, text=True, timeout=600)
  assert build.returncode == 0, build.stderr[-2000:]
  (wheel,) = glob.glob(str(tmp_path / "dist" / "*.whl"))
  shipped = set(zipfile.ZipFile(wheel).namelist())
  package = os.path.join(REPO, "superpos_jax")
  sources = {os.path.relpath(p, REPO) for p in glob.glob(os.path.join(package, "**", "*.py"),
                                                         recursive=True)}
  assert sources and sources <= shipped, sorted(sources - shipped)
  # A fresh environment: its own site-packages, the dependencies seen through a .pth
  # (whose folder's own .pth files, such as this checkout's editable install, are not run).
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
  python = str(venv / "bin" / "python")
  site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        capture_output=True, text=True, check=True).stdout.strip()
  with open(os.path.join(site, "dependencies.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                            "--target", site, wheel], capture_output=True, text=True, timeout=300)
  assert install.returncode == 0, install.stderr[-2000:]
  work = tmp_path / "elsewhere"
  work.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  run = subprocess.run([python, "-c", SCRIPT, site], cwd=work, env=dict(env, MPLBACKEND="Agg"),
                       capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  assert os.path.getsize(work / run.stdout.strip().splitlines()[-1]) > 1000
