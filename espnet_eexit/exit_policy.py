"""This name is :mod:`eexit_runtime.exit_policy` (the same module object), which lives in the
torch-free runtime distribution (``runtime/``, ``pip install ./runtime``)."""
import sys

from eexit_runtime import exit_policy

sys.modules[__name__] = exit_policy
