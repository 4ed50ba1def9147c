"""Run code around a third-party module's import, whenever that import happens.

Two uses: register our classes right after ESPnet's ASR task module executes (without importing
it ourselves: it takes ~12 s), and execute ``g2p_en`` with quiet nltk downloads
(:mod:`espnet_eexit.registration`, :mod:`espnet_eexit.quiet_imports`).
"""
import importlib.abc
import sys
from typing import Callable


class AroundImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds module ``name`` with the other finders, then executes it as ``around(execute)``
    (``execute()`` runs the module's code) and removes itself: it acts on the first import only.

    Args:
        name: the module's full name.
        around: called with the module's ``execute``; it must call it exactly once.
    """

    def __init__(self, name: str, around: Callable[[Callable[[], None]], None]):
        self.name, self.around = name, around

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                self._loader = spec.loader
                spec.loader = self
                return spec
        return None

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self.around(lambda: self._loader.exec_module(module))


def install(name: str, around: Callable[[Callable[[], None]], None]) -> bool:
    """Hook the next import of ``name`` (once: a second call for the same name does nothing).
    Returns False when ``name`` is already imported (nothing to hook)."""
    if name in sys.modules:
        return False
    if not any(isinstance(f, AroundImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, AroundImport(name, around))
    return True
