"""Keep third-party import-time chatter out of our tools' output.

ESPnet imports ``g2p_en`` (its phoneme tokenizer), whose import calls ``nltk.download`` for two
data sets it lacks. Offline each attempt prints five ``[nltk_data] Error loading ...`` lines
before any output of ours, burying real errors. We let the downloads run as they would (with a
network they succeed, and g2p works), only with nltk's own ``quiet`` flag and its error printout
sent nowhere; a failed download returns False as it always does.

ESPnet 202511 also decorates functions with the deprecated ``torch.cuda.amp.autocast``, which
costs two lines of ``FutureWarning`` per module at import: that one warning is filtered.
"""
import io
import warnings

from espnet_eexit import import_hooks


def _quiet_nltk_downloads(execute) -> None:
    """Run ``execute`` (g2p_en's import) with nltk's downloads quiet and their errors dropped."""
    import nltk

    download = nltk.download

    def quiet_download(*args, **kwargs):
        kwargs.setdefault("quiet", True)
        kwargs.setdefault("print_error_to", io.StringIO())
        return download(*args, **kwargs)

    nltk.download = quiet_download
    try:
        execute()
    finally:
        nltk.download = download


def install() -> None:
    """Idempotent; the nltk part is a no-op if ``g2p_en`` is already imported."""
    warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
                            category=FutureWarning)
    import_hooks.install("g2p_en", _quiet_nltk_downloads)
