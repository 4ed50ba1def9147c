"""A trained model's files: whether a checkpoint was saved completely, and, read by ESPnet's
builder, one line naming the checkpoint when it does not fit its ``config.yaml`` or is not a
complete PyTorch file.

ESPnet's ``build_model_from_file`` builds the model the config describes, then loads the
checkpoint into it: a checkpoint of another model or size raised a ``RuntimeError`` listing every
mismatched tensor, and a file cut short (killed while saving or copying) miniz's "failed finding
central directory", both as tracebacks naming no file.
"""
import contextlib
import pickle
import zipfile
from pathlib import Path
from typing import Iterator, Optional

from espnet_eexit.errors import EarlyExitConfigError


def is_complete_checkpoint(path: Path) -> bool:
    """A complete ``torch.save`` archive (its zip directory, written last, is there)."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        return False


def _first_mismatch(message: str) -> str:
    """The first tensor ``load_state_dict``'s error names (its lines after the first)."""
    details = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    return (details[0] if details else message)[:300]


@contextlib.contextmanager
def loading_model_file(config: Optional[Path], model_file: Optional[Path]) -> Iterator[None]:
    """Around building a model from ``config`` and loading ``model_file``: their known failures
    become :class:`EarlyExitConfigError` naming the file; anything else goes through unchanged."""
    if model_file is not None and not Path(model_file).is_file():
        raise EarlyExitConfigError(f"{model_file}: no such file")
    try:
        yield
    except RuntimeError as e:
        message = str(e)
        if "Error(s) in loading state_dict" in message:
            raise EarlyExitConfigError(
                f"{model_file}: its weights do not fit the model {config} describes "
                f"({_first_mismatch(message)}): a checkpoint of another model or size?"
            ) from e
        if "PytorchStreamReader" in message or "central directory" in message:
            raise EarlyExitConfigError(
                f"{model_file}: not a complete PyTorch checkpoint (cut short while saving or copying?)"
            ) from e
        raise
    except (pickle.UnpicklingError, EOFError) as e:
        raise EarlyExitConfigError(f"{model_file}: not a PyTorch checkpoint ({type(e).__name__})") from e
