"""This name is :mod:`eexit_runtime.datadir` (the same module object), which lives in the
torch-free runtime distribution (``runtime/``, ``pip install ./runtime``)."""
import sys

from eexit_runtime import datadir

sys.modules[__name__] = datadir
