"""Command-line entry points: ``python -m espnet_eexit.bin.<tool>``."""
