"""The package's structure, checked: imports run one way (no cycle, lazy imports included),
files stay under 400 lines and functions under 60, unless a reason is written next to
them (`# long file:` in the file, `# long:` on the line above the def)."""

import ast
import glob
import os

from superpos_jax import provenance

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(glob.glob(os.path.join(REPO, "superpos_jax", "**", "*.py"), recursive=True))


def test_no_import_cycle():
  graph = provenance.module_graph()
  assert "superpos_jax.sweep" in graph and graph["superpos_jax.sweep"]
  state, cycles = {}, []

  def visit(m, path):
    state[m] = "open"
    for d in sorted(graph[m]):
      if state.get(d) == "open":
        cycles.append(path[path.index(d):] + [d])
      elif d not in state:
        visit(d, path + [d])
    state[m] = "done"
  for m in sorted(graph):
    if m not in state:
      visit(m, [m])
  assert not cycles, [" -> ".join(c) for c in cycles]


def test_plotting_never_imports_jax():
  for path in glob.glob(os.path.join(REPO, "superpos_jax", "plotting", "*.py")):
    for node in ast.walk(ast.parse(open(path).read())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      assert not any(n.split(".")[0] in ("jax", "jaxlib", "optax", "flax") for n in names), path


def test_files_and_functions_stay_short_or_say_why():
  long_files, long_functions = [], []
  for path in FILES:
    text = open(path).read()
    lines = text.split("\n")
    rel = os.path.relpath(path, REPO)
    if len(lines) > 400 and "# long file:" not in text:
      long_files.append(f"{rel}: {len(lines)} lines")
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        size = node.end_lineno - node.lineno + 1
        if size > 60 and "# long:" not in lines[first - 2]:
          long_functions.append(f"{rel}:{node.lineno} {node.name}: {size} lines")
  assert not long_files and not long_functions, long_files + long_functions
