"""``eexit_conformer``: ESPnet's Conformer encoder with early exits."""
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from espnet_eexit.encoder.early_exit import EarlyExitEncoderMixin


class EarlyExitConformerEncoder(EarlyExitEncoderMixin, ConformerEncoder):
    """ESPnet's :class:`ConformerEncoder` (same layers, same weights) with exits.

    Takes every argument of :class:`ConformerEncoder` plus ``exit_layers`` (1-based layers after which an
    exit sits; default every 2nd layer and the last) and ``exit_norm`` (``"own"`` LayerNorm per
    intermediate exit, or ``"shared"`` final norm). See :class:`EarlyExitEncoderMixin`.
    """
