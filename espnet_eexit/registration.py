"""Add our classes to ESPnet's ``ClassChoices`` so ``encoder: eexit_conformer`` / ``model: eexit``
work in ESPnet YAML configs, argument parsing and ``ASRTask.build_model``."""
import contextlib
import sys

# ESPnet prints an import-time notice ("Failed to import Flash Attention ...") on stdout; send it to
# stderr so that tools whose stdout is read by shell recipes print only their answer.
with contextlib.redirect_stdout(sys.stderr):
    from espnet2.tasks import asr as asr_task

from espnet_eexit.encoder.conformer import EarlyExitConformerEncoder
from espnet_eexit.encoder.e_branchformer import EarlyExitEBranchformerEncoder
from espnet_eexit.encoder.transformer import EarlyExitTransformerEncoder
from espnet_eexit.model import EarlyExitASRModel

ENCODERS = {
    "eexit_conformer": EarlyExitConformerEncoder,
    "eexit_transformer": EarlyExitTransformerEncoder,
    "eexit_e_branchformer": EarlyExitEBranchformerEncoder,
}
MODELS = {"eexit": EarlyExitASRModel}


def register() -> None:
    """Idempotent: (re-)insert our classes into ``espnet2.tasks.asr``'s choices."""
    asr_task.encoder_choices.classes.update(ENCODERS)
    asr_task.model_choices.classes.update(MODELS)
