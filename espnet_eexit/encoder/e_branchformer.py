"""``eexit_e_branchformer``: ESPnet's E-Branchformer encoder with early exits."""
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder

from espnet_eexit.encoder.early_exit import EarlyExitEncoderMixin


class EarlyExitEBranchformerEncoder(EarlyExitEncoderMixin, EBranchformerEncoder):
    """ESPnet's :class:`EBranchformerEncoder` (same layers, same weights) with exits.

    Takes every argument of :class:`EBranchformerEncoder` plus ``exit_layers`` (1-based layers after which an
    exit sits; default every 2nd layer and the last) and ``exit_norm`` (``"own"`` LayerNorm per
    intermediate exit, or ``"shared"`` final norm). See :class:`EarlyExitEncoderMixin`.
    """
