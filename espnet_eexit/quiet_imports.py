"""Keep third-party import-time chatter out of our tools' output.

ESPnet imports ``g2p_en`` (its phoneme tokenizer), whose import calls ``nltk.download`` for two
data sets it lacks. Offline each attempt prints five ``[nltk_data] Error loading ...`` lines
before any output of ours, burying real errors. We let the downloads run as they would (with a
network they succeed, and g2p works), only with nltk's own ``quiet`` flag and its error printout
sent nowhere; a failed download returns False as it always does.

ESPnet 202511 also decorates functions with the deprecated ``torch.cuda.amp.autocast``, which
costs two lines of ``FutureWarning`` per module at import: that one warning is filtered.
"""
import importlib.abc
import io
import sys
import warnings

QUIET_MODULES = ("g2p_en",)


class _QuietNltkDownloads(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``g2p_en`` with the other finders and executes it with quiet nltk downloads."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in QUIET_MODULES:
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
        import nltk

        download = nltk.download

        def quiet_download(*args, **kwargs):
            kwargs.setdefault("quiet", True)
            kwargs.setdefault("print_error_to", io.StringIO())
            return download(*args, **kwargs)

        nltk.download = quiet_download
        try:
            self._loader.exec_module(module)
        finally:
            nltk.download = download
            if self in sys.meta_path:
                sys.meta_path.remove(self)


def install() -> None:
    """Idempotent; the nltk part is a no-op if ``g2p_en`` is already imported."""
    warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
                            category=FutureWarning)
    if any(m in sys.modules for m in QUIET_MODULES):
        return
    if not any(isinstance(f, _QuietNltkDownloads) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietNltkDownloads())
