"""This name is :mod:`eexit_runtime.text` (the same module object), which lives in the
torch-free runtime distribution (``runtime/``, ``pip install ./runtime``)."""
import sys

from eexit_runtime import text

sys.modules[__name__] = text
