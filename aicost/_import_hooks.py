"""Post-import hooks: run a function when a module is first imported, or now if it already is.

``aicost.instrument()`` must not import the vendor SDKs itself: google-genai and boto3 cost seconds of CPU at
start-up, and an application that never uses them should not pay for them. So each integration waits for its
SDK: :func:`when_imported` runs its patching at once if the application has imported the SDK already, and
otherwise from a ``sys.meta_path`` finder at the moment the application imports it (the approach of wrapt's
``when_imported``, with hooks that can be removed again and one finder for all of them).

The finder answers only for the names it waits for, and leaves ``sys.meta_path`` as soon as it waits for none:
other imports pay one dict lookup while it is there. For a watched name it asks the rest of the import system
for the module's spec and wraps the loader: the module is created and executed by its own loader, as without
aicost, and the hook runs right after the module's code, still inside the import statement (so the application
gets the module already patched). The module's ``__loader__`` and ``__spec__.loader`` are the original loader
before its code runs. A hook that raises is logged once; the application's import never fails because of it.

One race is left open: ``instrument()`` in one thread while another thread is already past the finders in its
first import of an SDK. That import is not seen, and the SDK stays unpatched (call ``instrument()`` at start-up,
before threads import the SDKs, as the README says).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from typing import Any, Callable

from . import _fork
from ._log import error_once

Hook = Callable[[Any], None]

_lock = _fork.lock()  # never held while a module is imported or a hook runs
_hooks: dict[str, list[tuple[object, Hook]]] = {}  # module name -> (token, hook) waiting for it
_loading: set[str] = set()  # names whose loader the finder wrapped: their hooks run when their code has run


def when_imported(name: str, hook: Hook, token: object) -> None:
    """Run ``hook(module)`` once the module ``name`` is imported: now, in this thread, if it already is;
    else in the thread that imports it. ``token`` identifies the hook for :func:`cancel`."""
    with _lock:
        _hooks.setdefault(name, []).append((token, hook))
        _install()
        module = sys.modules.get(name)
        if module is None or name in _loading:
            return  # the finder will run it (a module being loaded through the finder runs it when loaded)
    # Imported before the finder was there, possibly still executing in another thread: importing it again
    # waits for that to finish (the import system's own per-module lock), then the hook runs here.
    try:
        module = importlib.import_module(name)
    except Exception:
        error_once(f"import:{name}", "aicost: could not import %s; its calls are not recorded", name)
        return
    _run(name, module)


def cancel(token: object) -> None:
    """Forget every hook registered with ``token`` that has not run (a hook already running finishes)."""
    with _lock:
        for name in list(_hooks):
            left = [entry for entry in _hooks[name] if entry[0] is not token]
            if left:
                _hooks[name] = left
            else:
                del _hooks[name]
        if not _hooks:
            _uninstall()


def waiting() -> list[str]:
    """The module names hooks wait for (for tests and diagnostics)."""
    with _lock:
        return sorted(_hooks)


def _run(name: str, module: Any) -> None:
    """Run the hooks waiting for ``name``, each once: whichever thread takes them from the table runs them."""
    with _lock:
        hooks = _hooks.pop(name, [])
        _loading.discard(name)
        if not _hooks:
            _uninstall()
    for _, hook in hooks:
        try:
            hook(module)
        except Exception:
            error_once(f"hook:{name}", "aicost: could not instrument %s; its calls are not recorded", name)


class _Finder:
    """On ``sys.meta_path`` while a hook waits: finds nothing itself, wraps the loader of a watched module."""

    def __init__(self) -> None:
        self._busy = threading.local()  # names this thread is looking up through the rest of the import system

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _hooks:
            return None
        busy = self._busy.__dict__.setdefault("names", set())
        if fullname in busy:
            return None  # our own lookup below, coming round again
        busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        except Exception:
            return None  # let the import system report it as it would have
        finally:
            busy.discard(fullname)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module") or isinstance(loader, _Loader):
            return None  # a loader from before PEP 451: the module imports untouched, its hook waits on
        with _lock:
            if fullname not in _hooks:
                return None
            _loading.add(fullname)
        spec.loader = _Loader(loader, fullname)
        return spec

    def invalidate_caches(self) -> None:
        pass


class _Loader:
    """The module's own loader, with the hooks run once its code has run."""

    def __init__(self, loader: Any, name: str) -> None:
        self._aicost_loader = loader
        self._aicost_name = name

    def create_module(self, spec: Any) -> Any:
        return self._aicost_loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        loader = self._aicost_loader
        try:  # the module's code sees its real loader (importlib.resources, pkgutil...)
            if getattr(module, "__loader__", None) in (None, self):
                module.__loader__ = loader
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:
                spec.loader = loader
        except Exception:
            pass
        try:
            loader.exec_module(module)
        except BaseException:
            with _lock:
                _loading.discard(self._aicost_name)  # failed: the hook waits for the next attempt
            raise
        _run(self._aicost_name, sys.modules.get(self._aicost_name, module))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._aicost_loader, name)


_finder = _Finder()


def _install() -> None:  # under _lock
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def _uninstall() -> None:  # under _lock
    try:
        sys.meta_path.remove(_finder)
    except ValueError:
        pass
