"""This name is :mod:`eexit_runtime.exit_controller` (the same module object), which lives in the
torch-free runtime distribution (``runtime/``, ``pip install ./runtime``)."""
import sys

from eexit_runtime import exit_controller

sys.modules[__name__] = exit_controller
