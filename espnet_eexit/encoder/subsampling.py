"""A cheaper 4x convolutional front end for CPU: ESPnet's conv2d with fewer channels.

ESPnet's ``Conv2dSubsampling`` runs two 3x3 convolutions with ``output_size`` channels at 1/2
and 1/4 of the frame rate; on CPU that is ~40 % of a 12-layer 144-dim Conformer's time, which
caps what any early exit can save. With ``subsampling_channels: 32`` the same layout costs a
fraction of it; the output (frame rate, mask, positional encoding) is unchanged.
"""
import torch
from espnet.nets.pytorch_backend.transformer.subsampling import Conv2dSubsampling


class NarrowConv2dSubsampling(Conv2dSubsampling):
    """``Conv2dSubsampling`` with ``channels`` convolution channels instead of ``odim``.

    Args:
        idim: input feature dimension.
        odim: output dimension (the encoder's ``output_size``).
        channels: convolution channels.
        pos_enc: positional encoding module applied after the projection.
    Shapes: (B, T, idim), mask (B, 1, T) -> (B, T', odim), mask (B, 1, T'), T' = ((T-1)//2-1)//2.
    """

    def __init__(self, idim: int, odim: int, channels: int, pos_enc: torch.nn.Module):
        torch.nn.Module.__init__(self)  # ESPnet's __init__ would build the wide layers first
        self.conv = torch.nn.Sequential(
            torch.nn.Conv2d(1, channels, 3, 2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(channels, channels, 3, 2),
            torch.nn.ReLU(),
        )
        self.out = torch.nn.Sequential(
            torch.nn.Linear(channels * (((idim - 1) // 2 - 1) // 2), odim), pos_enc
        )
        # forward() and the short-utterance check are ESPnet's (this is a Conv2dSubsampling).
