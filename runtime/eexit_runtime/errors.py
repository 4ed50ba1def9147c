"""Errors raised for bad early-exit configuration or input, or a run stopped by its surroundings.

They are ``ValueError`` subclasses, so ESPnet code that catches ``ValueError`` keeps working; our
entry points (``espnet_eexit.bin.*``, ``eexit-transcribe``) print them as one line instead of a
traceback.
"""


class EarlyExitConfigError(ValueError):
    """A configuration value of an early-exit encoder, model or decoding run is invalid."""


class EarlyExitRunError(RuntimeError):
    """A run could not finish for a reason outside its options and input (e.g. a full disk); what
    it wrote is left consistent, and the message says so."""
