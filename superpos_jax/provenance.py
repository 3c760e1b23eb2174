"""One identity: what decides a run's numbers, and the digest that keys caches, compiled
programs and checkpoints (pure Python; jax only where its settings are read).

A run's identity has five parts, each a JSON-able value:

  spec         every field of the `SweepSpec`
  code         the engine's source: every module that `sweep.py` imports, directly or
               through others (found by reading the imports, so a new module or a move
               needs no list kept by hand)
  definitions  the digest of every registered definition the spec names (activations,
               model and data families, optimiser): its code, closed-over values, the
               helpers it calls (also through a module), a Flax module's fields and their
               defaults, library closures such as `nn.initializers.normal(0.5)`, and an
               explicit `version=` given at registration for what cannot be hashed
  versions     the libraries whose code computes: jax, jaxlib, optax, flax
  jax          JAX's global settings that change numbers (PRNG implementation,
               partitionable threefry, x64, default matmul precision, dtype promotion)

`digest(identity)` is their hash; `mismatch(stored, wanted)` says which part differs,
so that a message can name the real cause.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import json
import os
import types
from importlib import metadata
from typing import Any

PACKAGE = "superpos_jax"
# The module whose import closure is the engine (what computes a result's numbers).
ENGINE_ROOT = "sweep"
# Libraries whose code computes the numbers: their versions are part of the identity.
NUMERIC_PACKAGES = ("jax", "jaxlib", "optax", "flax")
# JAX settings that change the numbers a program computes.
JAX_SETTINGS = ("jax_default_prng_impl", "jax_threefry_partitionable", "jax_enable_x64",
                "jax_default_matmul_precision", "jax_numpy_dtype_promotion")
# Top-level packages whose objects count by qualified name (their code is versioned).
_LIBRARIES = ("jax", "jaxlib", "numpy", "optax", "flax", "builtins", "functools", "math",
              "operator", "typing", "collections", "chex", "scipy")
PARTS = ("spec", "code", "definitions", "versions", "jax")


def _folder() -> str:
  return os.path.dirname(os.path.abspath(__file__))


def _imports(path: str) -> set[str]:
  """Modules of this package that the file at `path` imports, anywhere in it."""
  with open(path, "rb") as f:
    tree = ast.parse(f.read(), path)
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
        node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
      for a in node.names:  # `from superpos_jax.x import y`: the module y, or a name of x
        sub = f"{node.module}.{a.name}"
        out.add(sub if _module_path(sub) else node.module)
    elif isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith(PACKAGE + ".")}
  return out


def _module_path(module: str) -> str | None:
  """The source file of `superpos_jax.x.y` (a module or a package), None if none."""
  parts = module.split(".")[1:]
  base = os.path.join(_folder(), *parts)
  for path in (base + ".py", os.path.join(base, "__init__.py")):
    if os.path.isfile(path):
      return path
  return None


def module_graph() -> dict[str, set[str]]:
  """Every module of the package (`superpos_jax.x`, subpackages included) -> the modules
  of the package it imports, anywhere in it (imports inside functions too)."""
  graph = {}
  for root, _, files in os.walk(_folder()):
    for name in sorted(files):
      if not name.endswith(".py"):
        continue
      rel = os.path.relpath(os.path.join(root, name), _folder())[:-3].replace(os.sep, ".")
      module = PACKAGE if rel == "__init__" else f"{PACKAGE}.{rel.removesuffix('.__init__')}"
      graph[module] = {m for m in _imports(os.path.join(root, name)) if _module_path(m)}
      graph[module].discard(module)
  return graph


def engine_modules(root: str = ENGINE_ROOT) -> tuple[str, ...]:
  """The modules of the engine: `root` and everything it imports from this package,
  transitively (imports inside functions included), as relative file paths."""
  todo, seen = [f"{PACKAGE}.{root}"], {}
  while todo:
    module = todo.pop()
    path = _module_path(module)
    if path is None or module in seen:
      continue
    seen[module] = os.path.relpath(path, _folder())
    todo += sorted(_imports(path) - set(seen))
  return tuple(sorted(seen.values()))


@functools.lru_cache(maxsize=None)
def engine_code(root: str = ENGINE_ROOT) -> str:
  """Hash of the engine's source files (`engine_modules(root)`)."""
  h = hashlib.sha256()
  for rel in engine_modules(root):
    h.update(rel.encode())
    with open(os.path.join(_folder(), rel), "rb") as f:
      h.update(f.read())
  return h.hexdigest()[:16]


def version(package: str) -> str | None:
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


@functools.lru_cache(maxsize=1)
def numeric_versions() -> dict[str, str | None]:
  """Versions of the libraries whose code computes the numbers (`NUMERIC_PACKAGES`)."""
  return {p: version(p) for p in NUMERIC_PACKAGES}


def jax_settings() -> dict[str, Any]:
  """The values of `JAX_SETTINGS` in this process (read each time: they can change)."""
  import jax
  out = {}
  for name in JAX_SETTINGS:
    try:
      value = getattr(jax.config, name)
    except AttributeError:  # a setting this jax does not have
      value = None
    if isinstance(value, enum.Enum):
      value = value.value
    out[name] = value if isinstance(value, (bool, int, float, str, type(None))) else str(value)
  return out


def _user(module: str) -> bool:
  return module.split(".")[0] not in _LIBRARIES


# long: one dispatch over the kinds of object a definition can hold, read top to bottom
def _digest_into(h, obj, seen: dict) -> None:
  """Feeds what decides `obj`'s numbers into hash `h`: a function's bytecode, constants,
  defaults, closed-over values, the globals it reads (and, through a module it reads,
  the module attributes it names); a class's methods and class attributes (a dataclass's
  or Flax module's field defaults); a dataclass instance's fields. Library functions count
  by qualified name plus their closed-over values and defaults (`normal(0.5)` and
  `normal(2.0)` differ); their code is in the library version, part of the identity."""
  if isinstance(obj, (str, bytes, int, float, complex, bool, type(None))):
    h.update(f"{type(obj).__name__}:{obj!r}".encode())
    return
  if id(obj) in seen:
    h.update(b"<seen>")
    return
  seen[id(obj)] = obj  # kept alive: a freed temporary's id could be reused by another
  if isinstance(obj, (tuple, list)):
    h.update(f"{type(obj).__name__}{len(obj)}".encode())
    for item in obj:
      _digest_into(h, item, seen)
    return
  if isinstance(obj, (frozenset, set)):
    for r in sorted(map(repr, obj)):
      h.update(r.encode())
    return
  if isinstance(obj, dict):
    for k in sorted(obj, key=repr):
      h.update(repr(k).encode())
      _digest_into(h, obj[k], seen)
    return
  module = getattr(obj, "__module__", None) or ""
  user = _user(module)
  if isinstance(obj, types.FunctionType):
    _digest_function(h, obj, user, seen)
    return
  if isinstance(obj, types.CodeType):
    h.update(obj.co_code)
    h.update(repr(obj.co_names).encode())
    for c in obj.co_consts:
      _digest_into(h, c, seen)
    return
  if isinstance(obj, functools.partial):
    _digest_into(h, (obj.func, obj.args, obj.keywords), seen)
    return
  if isinstance(obj, types.MethodType):
    _digest_into(h, (obj.__func__, obj.__self__), seen)
    return
  if isinstance(obj, types.ModuleType):
    h.update(f"module:{obj.__name__}".encode())
    return
  if isinstance(obj, type):
    _digest_class(h, obj, user, seen)
    return
  if dataclasses.is_dataclass(obj):
    _digest_into(h, type(obj), seen)
    for f in dataclasses.fields(obj):
      if f.name not in ("parent", "name"):  # a Flax module's place in a tree
        h.update(f.name.encode())
        _digest_into(h, getattr(obj, f.name, None), seen)
    return
  if hasattr(obj, "__array__") and hasattr(obj, "dtype"):
    import numpy as np
    a = np.asarray(obj)
    h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    return
  if user and hasattr(obj, "__dict__") and not callable(getattr(obj, "__wrapped__", None)):
    _digest_into(h, (type(obj), vars(obj)), seen)  # a user object: its class and state
    return
  # A library object (a jitted or custom_jvp function, a ufunc, ...): by name, plus the
  # user function it wraps.
  h.update(f"{type(obj).__qualname__}:{module}.{getattr(obj, '__qualname__', '')}".encode())
  wrapped = getattr(obj, "__wrapped__", None) or getattr(obj, "fun", None)
  if callable(wrapped) and _user(getattr(wrapped, "__module__", "") or ""):
    _digest_into(h, wrapped, seen)


def _digest_function(h, fn: types.FunctionType, user: bool, seen: dict) -> None:
  if user:
    _digest_into(h, fn.__code__, seen)
  else:
    h.update(f"lib:{fn.__module__}.{fn.__qualname__}".encode())
  _digest_into(h, (fn.__defaults__, fn.__kwdefaults__), seen)
  for cell in fn.__closure__ or ():
    try:
      _digest_into(h, cell.cell_contents, seen)
    except ValueError:  # an empty cell
      h.update(b"<empty>")
  if not user:
    return
  names = _global_names(fn.__code__)
  for name in sorted(names):
    if name not in fn.__globals__:
      continue
    value = fn.__globals__[name]
    h.update(name.encode())
    _digest_into(h, value, seen)
    if isinstance(value, types.ModuleType) and _user(value.__name__):
      # `helpers.f(x)`: the attributes of a user module that the code names.
      for attr in sorted(names):
        if attr in vars(value):
          h.update(f"{name}.{attr}".encode())
          _digest_into(h, vars(value)[attr], seen)


def _digest_class(h, cls: type, user: bool, seen: dict) -> None:
  h.update(f"class:{cls.__module__}.{cls.__qualname__}".encode())
  if not user:
    return
  for k, v in sorted(vars(cls).items()):
    if k.startswith("__") and k.endswith("__"):
      continue
    h.update(k.encode())
    if isinstance(v, (staticmethod, classmethod)):
      v = v.__func__
    elif isinstance(v, property):
      v = v.fget
    if callable(v) or isinstance(v, (int, float, str, bool, tuple, list, dict, type(None))) \
        or hasattr(v, "__array__"):
      _digest_into(h, v, seen)
  if dataclasses.is_dataclass(cls):  # field defaults, also those not kept as attributes
    for f in dataclasses.fields(cls):
      h.update(f"field:{f.name}".encode())
      if f.default is not dataclasses.MISSING:
        _digest_into(h, f.default, seen)
      if f.default_factory is not dataclasses.MISSING:
        _digest_into(h, f.default_factory, seen)
  for base in cls.__mro__[1:]:
    if _user(base.__module__):
      _digest_into(h, base, seen)
    else:
      h.update(f"{base.__module__}.{base.__qualname__}".encode())


def _global_names(code: types.CodeType) -> set[str]:
  """Names a code object (and the code nested in it) reads: globals and attributes."""
  out = set(code.co_names)
  for c in code.co_consts:
    if isinstance(c, types.CodeType):
      out |= _global_names(c)
  return out


def code_digest(entry) -> str:
  """Digest of what decides a registry entry's numbers (everything but its name and
  description): the same definition gives the same digest in every process; a changed
  function body, closed-over value, module field default or `version` a different one."""
  h = hashlib.sha256()
  fields = [f.name for f in dataclasses.fields(entry) if f.name not in ("name", "description")]
  _digest_into(h, [type(entry).__name__] + [getattr(entry, f) for f in fields], {})
  return h.hexdigest()[:16]


def definitions(spec) -> dict[str, Any]:
  """`code_digest` of every registered definition `spec` trains with, by kind and name."""
  from superpos_jax import families
  acts, model, data, opt = families.entries(spec)
  return {"activations": {a.name: code_digest(a) for a in acts},
          "model": {model.name: code_digest(model)}, "data": {data.name: code_digest(data)},
          "optimizer": {opt.name: code_digest(opt)}}


def identity(spec) -> dict[str, Any]:
  """The five parts of `spec`'s identity in this process (see the module docstring)."""
  return {"spec": json.loads(json.dumps(spec.to_dict())), "code": engine_code(),
          "definitions": definitions(spec), "versions": numeric_versions(),
          "jax": jax_settings()}


def digest(ident: dict[str, Any]) -> str:
  """Short hash of an identity (`identity`)."""
  text = json.dumps({k: ident[k] for k in PARTS}, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
  """Leaf paths where two JSON values differ."""
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b), key=str):
      out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
    return out
  return [] if a == b else [prefix.rstrip(".") or "(whole)"]


def mismatch(stored: Any, wanted: dict[str, Any]) -> str | None:
  """Why a result or checkpoint of identity `stored` is not of `wanted` (None: it is),
  naming the part that differs and where."""
  if not isinstance(stored, dict) or not all(k in stored for k in PARTS):
    return "it records no identity (written by an older superpos_jax)"
  what = {"spec": "another spec", "code": "other engine code",
          "definitions": "other registered definitions", "versions": "other library versions",
          "jax": "other JAX settings"}
  for part in PARTS:
    keys = _diff_keys(stored[part], wanted[part])
    if keys:
      detail = "" if part == "code" else f" ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"
      if part in ("versions", "jax") and len(keys) <= 4:
        detail = " (" + ", ".join(f"{k} {_at(stored[part], k)!r} vs {_at(wanted[part], k)!r}"
                                  for k in keys) + ")"
      return f"it is of {what[part]}{detail}"
  return None


def _at(value: Any, path: str) -> Any:
  for k in path.split("."):
    value = value.get(k) if isinstance(value, dict) else None
  return value


def describe(spec) -> dict[str, Any]:
  """What a result's metadata says about the definitions it was trained with: every
  registered entry the spec names, its description, code digest and, for a Flax model,
  the module's class."""
  from superpos_jax import families
  acts, model, data, opt = families.entries(spec)
  entry = lambda e: {"name": e.name, "description": e.description, "digest": code_digest(e),
                     **({"version": e.version} if e.version is not None else {})}
  out = {"activations": [entry(a) for a in acts], "model": entry(model), "data": entry(data),
         "optimizer": entry(opt)}
  if model.module is not None:
    out["model"]["flax_module"] = f"{model.module.__module__}.{model.module.__qualname__}"
  return out
