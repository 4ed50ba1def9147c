"""Errors raised for bad early-exit configuration or input.

They are ``ValueError`` subclasses, so ESPnet code that catches ``ValueError`` keeps working; our
entry points (``espnet_eexit.bin.*``) print them as one line instead of a traceback.
"""


class EarlyExitConfigError(ValueError):
    """A configuration value of an early-exit encoder, model or decoding run is invalid."""
