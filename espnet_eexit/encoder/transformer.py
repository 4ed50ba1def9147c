"""``eexit_transformer``: ESPnet's Transformer encoder with early exits."""
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

from espnet_eexit.encoder.early_exit import EarlyExitEncoderMixin


class EarlyExitTransformerEncoder(EarlyExitEncoderMixin, TransformerEncoder):
    """ESPnet's :class:`TransformerEncoder` (same layers, same weights) with exits.

    Takes every argument of :class:`TransformerEncoder` plus ``exit_layers`` (1-based layers after which an
    exit sits; default every 2nd layer and the last) and ``exit_norm`` (``"own"`` LayerNorm per
    intermediate exit, or ``"shared"`` final norm). See :class:`EarlyExitEncoderMixin`.
    """
