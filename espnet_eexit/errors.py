"""This name is :mod:`eexit_runtime.errors` (the same module object), which lives in the
torch-free runtime distribution (``runtime/``, ``pip install ./runtime``)."""
import sys

from eexit_runtime import errors

sys.modules[__name__] = errors
