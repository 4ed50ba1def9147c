"""Attention decoders for early-exit models."""
