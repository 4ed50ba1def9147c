"""This name is :mod:`eexit_runtime.transcribe` (the same module object), which lives in the
torch-free runtime distribution (``runtime/``, ``pip install ./runtime``)."""
import sys

from eexit_runtime import transcribe

if __name__ == "__main__":
    transcribe.main()
else:
    sys.modules[__name__] = transcribe
