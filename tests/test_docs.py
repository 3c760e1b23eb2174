"""README.md and docs/: generated parts up to date, links and images resolve, commands run.

The tooling is docs/build.py (the generated regions) and docs/commands.py (the shell
commands); both run here in fresh processes, as a reader would run them.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name):
  spec = importlib.util.spec_from_file_location(f"docs_{name}", os.path.join(REPO, "docs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


commands = _tool("commands")
build = _tool("build")
FILES = commands.markdown_files()
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _python(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([REPO] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
  return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _read(rel):
  with open(os.path.join(REPO, rel)) as f:
    return f.read()


def slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"`|\*\*?|_(?=\W)|(?<=\W)_", "", heading.strip()).lower()
  return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(rel: str) -> set[str]:
  seen, out = {}, set()
  for line in commands.without_code_blocks(_read(rel)).split("\n"):
    m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
    if m:
      s = slug(m[1])
      n = seen.get(s, 0)
      out.add(s if n == 0 else f"{s}-{n}")
      seen[s] = n + 1
  return out


def links(rel: str):
  """(line, target) of each Markdown link and image outside code."""
  text = commands.without_code_blocks(_read(rel))
  for i, line in enumerate(text.split("\n"), 1):
    for m in LINK.finditer(CODE_SPAN.sub("", line)):
      yield i, m[1]


def test_generated_parts_are_up_to_date():
  """`python docs/build.py --check` (the README's table, docs' tables, api.md)."""
  proc = _python("docs/build.py", "--check")
  assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_names_a_stale_file(tmp_path, monkeypatch, capsys):
  """A hand edit inside a generated region is caught, in one line naming the file."""
  text = _read("README.md")
  stale = text.replace("| the study claims |", "| the study claimed |", 1)
  assert stale != text
  copy = tmp_path / "README.md"
  copy.write_text(stale)
  (tmp_path / "docs").mkdir()
  monkeypatch.setattr(build, "REPO", str(tmp_path))
  monkeypatch.setattr(build, "FIGURES", os.path.join(REPO, "figures"))
  assert build.main(["--check"]) == 1
  assert capsys.readouterr().out == "stale: README.md (run python docs/build.py)\n"
  assert build.main([]) == 0 and copy.read_text() == text


def test_checkpoint_cost_region_without_and_with_its_file(tmp_path, monkeypatch):
  """figures/checkpoints.md is optional: 'not measured yet' until it exists, then pasted."""
  monkeypatch.setattr(build, "REPO", str(tmp_path))
  (tmp_path / "figures").mkdir()
  assert build.GENERATORS["checkpoint-cost"]().startswith("Not measured yet")
  (tmp_path / "figures" / "checkpoints.md").write_text("| way | run s |\n|---|---|\n| one call | 1.0 |\n")
  assert build.GENERATORS["checkpoint-cost"]() == "| way | run s |\n|---|---|\n| one call | 1.0 |"


def test_results_table_cells_come_from_the_summaries():
  """Spot checks of the README table against the summary files it is written from."""
  import json
  with open(os.path.join(REPO, "figures", "phase_diagram_summary.json")) as f:
    pd = json.load(f)
  table = build.results_table()
  relu = pd["superposition_fraction"]
  assert f"{build.pct(relu['best seed']['gelu'][0])} vs ReLU {build.pct(relu['best seed']['relu'][0])}" in table
  assert f"{build.pct(relu['typical seed']['gelu'][0])} vs ReLU" in table
  header = table.split("\n")[0]
  assert all(row.count(" | ") == header.count(" | ") for row in table.split("\n")[2:]
             if row.startswith("| "))


def test_api_page_lists_the_public_names():
  api = _read("docs/api.md")
  for name in ("spec.SweepSpec", "sweep.run", "results.SweepResult", "results.load",
               "train.make_train", "plotting.figure_phase_diagram"):
    assert f"### `superpos_jax.{name}`" in api


def broken_links(rel: str) -> list[str]:
  """Relative links and images of `rel` whose file, or #anchor heading, does not exist."""
  folder = os.path.dirname(os.path.join(REPO, rel))
  bad = []
  for line, target in links(rel):
    if re.match(r"^[a-z]+:", target):   # https:, mailto:
      continue
    path, _, anchor = target.partition("#")
    full = os.path.normpath(os.path.join(folder, path)) if path else os.path.join(REPO, rel)
    if not os.path.exists(full):
      bad.append(f"{rel}:{line}: {target} (no such file)")
    elif anchor and full.endswith(".md") and anchor not in anchors(full):
      bad.append(f"{rel}:{line}: {target} (no such heading)")
  return bad


@pytest.mark.parametrize("rel", FILES)
def test_links_and_images_resolve(rel):
  """Every relative link and image path exists; an #anchor names a heading of its page."""
  bad = broken_links(rel)
  assert not bad, "\n".join(bad)


def test_the_link_check_can_fail(tmp_path):
  page = tmp_path / "page.md"
  page.write_text("# Top\n\n![a](figures/none.png) [b](#top) [c](#nowhere) "
                  "[d](page.md#top) `[e](not-a-link.md)`\n\n```\n[f](in-code.md)\n```\n")
  assert broken_links(str(page)) == [f"{page}:3: figures/none.png (no such file)",
                                     f"{page}:3: #nowhere (no such heading)"]


def test_slug_follows_github():
  assert slug("Checks of the study's claims (`study_checks.py`)") == \
      "checks-of-the-studys-claims-study_checkspy"
  assert slug("How long the reproduction took") == "how-long-the-reproduction-took"


def test_every_page_is_linked_from_the_readme():
  linked = {os.path.normpath(t.partition("#")[0]) for _, t in links("README.md")}
  assert not [rel for rel in FILES[1:] if rel not in linked]


def test_readme_is_short():
  assert len(_read("README.md").split("\n")) <= 220


def test_readme_test_command_is_what_ci_runs():
  ci = _read(".ci/run").strip().split("\n")[-1]
  assert f"```bash\n{ci}\n```" in _read("README.md")


def test_pip_extras_in_the_docs_exist():
  """`pip install -e '.[x]'` in any page names an extra of pyproject.toml."""
  pyproject = _read("pyproject.toml")
  extras = set(re.findall(r"^(\w+) = \[", pyproject.split("[project.optional-dependencies]")[1],
                          re.M))
  named = {x for rel in FILES for x in re.findall(r"pip install -e '\.\[(\w+)\]'", _read(rel))}
  assert named and named <= extras, named - extras


def test_commands_are_marked_and_their_flags_parse():
  """Every script command exists and its own parser accepts the flags shown; every
  fenced one says quick or long (or runs a quick preset)."""
  proc = _python("docs/commands.py")
  assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_command_check_can_fail(tmp_path):
  """An unknown flag, a missing script and an unmarked long command are each reported."""
  page = tmp_path / "page.md"
  page.write_text("```bash\n"
                  "python experiments/phase_diagram.py --no-such-flag  # long: 1 min\n"
                  "python experiments/nope.py                          # quick: 1 s\n"
                  "python experiments/phase_diagram.py --steps 10\n"
                  "```\n"
                  "Inline: `python experiments/phase_diagram.py --steps x`.\n")
  proc = _python("docs/commands.py", str(page))
  assert proc.returncode == 1
  lines = proc.stdout.strip().split("\n")
  assert len(lines) == 4, proc.stdout
  assert "unrecognized arguments: --no-such-flag" in lines[0]
  assert "no such script experiments/nope.py" in lines[1]
  assert "page.md:4" in lines[2] and "neither" in lines[2]
  assert "page.md:6" in lines[3] and "expected a positive integer, got 'x'" in lines[3]


def test_quick_commands_run(tmp_path):
  """The commands marked quick (a few: the CI suite must stay short), outputs in tmp."""
  quick = [c for c in commands.all_commands() if c.mark == "quick"]
  assert 1 <= len(quick) <= 4, [c.where for c in quick]
  proc = _python("docs/commands.py", "--run-quick", str(tmp_path), timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
