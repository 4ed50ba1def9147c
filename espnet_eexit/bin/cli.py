"""Run an ESPnet ``main()`` so that our configuration and run errors read as one line, not a
traceback: :func:`eexit_runtime.cli.run_main`, shared with the runtime's ``eexit-transcribe``."""
from eexit_runtime.cli import run_main  # noqa: F401 (re-exported)
