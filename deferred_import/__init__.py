"""Deferred packages: import a library's submodules without its package ``__init__``.

``import pkg.sub`` first runs ``pkg/__init__.py``, and some libraries' ``__init__``
imports everything they have (``kubernetes``: every client subpackage; ``pyroute2``:
every netlink family). The agents use a few submodules of each, and pay for the rest
in RSS on every node. `defer` registers such packages as *deferred* before anything
imports them: their ``__path__`` is set, so a submodule (``pkg.sub``) imports on its
own, and the package's own ``__init__`` runs only when something asks the package for
a name it binds and does not have yet (``kubernetes.config.load_kube_config``,
``pyroute2.NDB``) - then it runs once, in full, and the package is the library's own
from then on. Nothing changes for code that uses the library normally; it only stops
paying for what it does not touch.

Users: ``kube.lean`` (the ``kubernetes`` client), ``datapath.netlink`` (pyroute2's
``IPRoute``) and ``gateway.viptable`` (one module of ``datapath.nftables``). A
top-level package of its own, because the layers may not import each other; it
imports nothing but the standard library (.importlinter).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["DeferredPackage", "defer", "is_deferred"]

_lock = threading.RLock()


class DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` runs on the first miss of a name it binds."""

    def __getattr__(self, name: str) -> Any:
        # Only called for names not in the module's dict (nor found by the package's own
        # module-level __getattr__ once it has run).
        if name.startswith("__") and name not in _bound_by_init(self):
            raise AttributeError(name)  # a probe (__wrapped__, ...), not the package's
        with _lock:
            state = self.__dict__.get("_gn_state")
            spec = self.__spec__
            submodule = (state == "deferred" and name not in _bound_by_init(self)
                         and importlib.util.find_spec(f"{self.__name__}.{name}") is not None)
            if state == "deferred" and not submodule:
                self.__dict__["_gn_state"] = "running"
                try:
                    assert spec is not None and spec.loader is not None
                    spec.loader.exec_module(self)
                except BaseException:
                    self.__dict__["_gn_state"] = "deferred"
                    raise
                self.__dict__["_gn_state"] = "done"
                return getattr(self, name)
        if submodule:
            # ``from kubernetes.client import rest`` or ``pkg.submodule``: just that one
            # (its import sets it as our attribute), as the full __init__ would have.
            return importlib.import_module(f"{self.__name__}.{name}")
        # "running": the __init__ itself asks (``from . import client``), so the import
        # system must find the submodule; "done": the name does not exist.
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def _bound_by_init(package: types.ModuleType) -> frozenset[str]:
    """The names the package's ``__init__`` binds to something other than the
    submodule of that name (``from .create_from_yaml import create_from_yaml``,
    definitions, assignments): asking for one of those runs the ``__init__``."""
    cached: frozenset[str] | None = package.__dict__.get("_gn_bound")
    if cached is not None:
        return cached
    names: set[str] = set()
    origin = package.__spec__.origin if package.__spec__ else None
    try:
        with open(origin or "", encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and not node.module:
                continue  # from . import x: x is the submodule
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.asname or alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    bound = frozenset(names)
    package.__dict__["_gn_bound"] = bound
    return bound


def is_deferred(name: str) -> bool:
    """Whether the package ``name`` is still a stub whose ``__init__`` has not run."""
    module = sys.modules.get(name)
    return isinstance(module, DeferredPackage) and module.__dict__["_gn_state"] != "done"


def defer(*packages: str) -> None:
    """Register ``packages`` - a top-level package first, then any of its subpackages,
    parents before children - as deferred. Idempotent, and a no-op once the first is
    imported (the library was imported before us: it stays as it is). Stops at the
    first that is not installed or not a package, so imports fail as they would."""
    if not packages:
        return
    with _lock:
        if packages[0] in sys.modules:
            return
        for name in packages:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.submodule_search_locations is None or spec.loader is None:
                return
            module = DeferredPackage(name)
            module.__spec__ = spec
            module.__loader__ = spec.loader
            module.__file__ = spec.origin
            module.__path__ = list(spec.submodule_search_locations)
            module.__package__ = name
            module.__dict__["_gn_state"] = "deferred"
            sys.modules[name] = module
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, module)
