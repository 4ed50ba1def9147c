"""``EarlyExitASRTask``: ESPnet's ``ASRTask`` with the plugin registered.

It adds nothing to ASRTask's behaviour. It exists so that the worker processes ESPnet spawns for
multi-GPU training (``--ngpu N --multiprocessing_distributed true``) unpickle a class from this
package, which imports ``espnet_eexit`` and so registers ``eexit_*`` in the workers too.
"""
import espnet_eexit  # noqa: F401  (registers our classes)
from espnet2.tasks.asr import ASRTask


class EarlyExitASRTask(ASRTask):
    """ESPnet's ASR task; the early-exit encoders and model are among its choices."""
