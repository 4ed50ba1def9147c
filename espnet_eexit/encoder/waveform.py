"""Checks shared by the backbones that read raw waveforms (wav2vec2 / WavLM, Whisper).

In ESPnet such an encoder is configured with ``input_size: 1``: no frontend is built, and the
padded waveforms reach the encoder as (B, S) or (B, S, 1), or as (B, S, C) from a file of C
channels (ESPnet's sound loader keeps them).
"""
import numpy as np
import torch

from espnet_eexit.errors import EarlyExitConfigError


def check_waveform_input_size(input_size: int, encoder_name: str) -> None:
    """One clear error when a config feeds the encoder a frontend's features."""
    if input_size != 1:
        raise EarlyExitConfigError(
            f"encoder: {encoder_name} reads raw waveforms, but input_size is {input_size} "
            "(a frontend's features): set input_size: 1, specaug: null and normalize: null"
        )


def as_waveforms(xs_pad: torch.Tensor, encoder_name: str, training: bool = False) -> torch.Tensor:
    """(B, S), (B, S, 1) or (B, S, C) channels -> (B, S); anything else is a clear error.

    Of several channels one is read, as ESPnet's ``DefaultFrontend`` reads them (the front end
    these backbones replace): a random one in training, the first otherwise. ``asr_inference``
    warns about such files (:mod:`espnet_eexit.audio_inputs`).
    """
    if xs_pad.dim() == 3:
        channels = xs_pad.size(-1)
        xs_pad = xs_pad[..., np.random.randint(channels) if training and channels > 1 else 0]
    if xs_pad.dim() != 2:
        raise EarlyExitConfigError(
            f"{encoder_name} reads (B, S) waveforms (or (B, S, channels)); got a tensor of shape "
            f"{tuple(xs_pad.shape)}: set input_size: 1 and use no frontend"
        )
    return xs_pad
