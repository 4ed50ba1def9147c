"""espnet-eexit: early-exit speech recognition as an ESPnet plugin.

Importing this package registers our classes into ESPnet's ``espnet2.tasks.asr`` class choices
(right away if ESPnet's ASR task is loaded, else as soon as it is imported):

* encoders ``eexit_conformer``, ``eexit_transformer``, ``eexit_e_branchformer``,
  ``eexit_hf_wav2vec2`` (a Hugging Face wav2vec2 / HuBERT / WavLM model) and ``eexit_whisper``
  (Whisper's audio encoder)
* decoder ``eexit_whisper`` (Whisper's pretrained text decoder)
* model ``eexit`` (:class:`espnet_eexit.model.EarlyExitASRModel`)

ESPnet has no plugin entry points, so run training and decoding through
``python -m espnet_eexit.bin.asr_train`` / ``asr_inference``, which import this package first.
"""
from espnet_eexit import quiet_imports
from espnet_eexit.registration import register_on_import

__version__ = "0.1.0"

quiet_imports.install()
register_on_import()
