"""Export of a trained early-exit model for devices (torch side); the runtime is
:mod:`espnet_eexit.runtime` (torch-free)."""
