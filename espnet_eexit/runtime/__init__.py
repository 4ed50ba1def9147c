"""The torch-free runtime under its ``espnet_eexit`` name: :mod:`eexit_runtime` (the distribution
``espnet-eexit-runtime``, ``runtime/`` in this repository), which a device installs alone.

    from espnet_eexit.runtime import EarlyExitRuntime      # = from eexit_runtime import ...
    python -m espnet_eexit.runtime.transcribe --model_dir DIR --policy entropy:0.3 a.wav b.flac

Importing ``espnet_eexit.runtime`` runs ``espnet_eexit/__init__`` (ESPnet registration, quiet
imports) but pulls in neither torch nor ESPnet; import :mod:`eexit_runtime` to get neither.
"""
from eexit_runtime import EarlyExitRuntime, RuntimeResult

__all__ = ["EarlyExitRuntime", "RuntimeResult"]
