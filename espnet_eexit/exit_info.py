"""This name is :mod:`eexit_runtime.exit_info` (the same module object), which lives in the
torch-free runtime distribution (``runtime/``, ``pip install ./runtime``)."""
import sys

from eexit_runtime import exit_info

if __name__ == "__main__":
    exit_info.main()
else:
    sys.modules[__name__] = exit_info
