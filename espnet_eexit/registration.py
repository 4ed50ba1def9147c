"""Add our classes to ESPnet's ``ClassChoices`` so ``encoder: eexit_conformer`` / ``model: eexit``
work in ESPnet YAML configs, argument parsing and ``ASRTask.build_model``.

The choices live in ``espnet2.tasks.asr``, whose import takes ~12 s (ESPnet pulls in TTS, SSL and
g2p modules). Importing ``espnet_eexit`` must not pay that for tools that never touch the ASR
task (scoring, plotting), so registration happens the moment ``espnet2.tasks.asr`` is imported:
at once if it already is, else right after ESPnet's own import of it finishes.
"""
import contextlib
import importlib
import sys

from espnet_eexit import import_hooks

ASR_TASK_MODULE = "espnet2.tasks.asr"
# name in ESPnet configs -> "module:Class" (imported only when needed)
ENCODERS = {
    "eexit_conformer": "espnet_eexit.encoder.conformer:EarlyExitConformerEncoder",
    "eexit_transformer": "espnet_eexit.encoder.transformer:EarlyExitTransformerEncoder",
    "eexit_e_branchformer": "espnet_eexit.encoder.e_branchformer:EarlyExitEBranchformerEncoder",
    # one name for wav2vec2, HuBERT and WavLM checkpoints (the type comes from their config)
    "eexit_hf_wav2vec2": "espnet_eexit.encoder.hf_wav2vec2:EarlyExitHFWav2Vec2Encoder",
    # Whisper's audio encoder (a local converted checkpoint, or a name / Hub id with a network)
    "eexit_whisper": "espnet_eexit.encoder.whisper:EarlyExitWhisperEncoder",
}
DECODERS = {
    # Whisper's pretrained text decoder (Whisper's tokens: token_type hugging_face), shared or per exit
    "eexit_whisper": "espnet_eexit.decoder.whisper:WhisperDecoder",
}
MODELS = {"eexit": "espnet_eexit.model:EarlyExitASRModel"}


def load_class(target: str) -> type:
    """Import ``"module:Class"``.

    ESPnet prints an import-time notice ("Failed to import Flash Attention ...") on stdout; it
    goes to stderr here, so tools whose stdout shell recipes read print only their answer.
    """
    module, _, name = target.partition(":")
    with contextlib.redirect_stdout(sys.stderr):
        return getattr(importlib.import_module(module), name)


def register() -> None:
    """Idempotent: (re-)insert our classes into ``espnet2.tasks.asr``'s choices."""
    asr_task = sys.modules[ASR_TASK_MODULE] if ASR_TASK_MODULE in sys.modules else None
    if asr_task is None:
        with contextlib.redirect_stdout(sys.stderr):
            asr_task = importlib.import_module(ASR_TASK_MODULE)
    encoders = {name: load_class(target) for name, target in ENCODERS.items()}
    decoders = {name: load_class(target) for name, target in DECODERS.items()}
    models = {name: load_class(target) for name, target in MODELS.items()}
    asr_task.encoder_choices.classes.update(encoders)
    asr_task.decoder_choices.classes.update(decoders)
    asr_task.model_choices.classes.update(models)


def register_on_import() -> None:
    """Register now if ESPnet's ASR task is loaded, else as soon as it is."""
    def execute_then_register(execute) -> None:
        execute()
        register()

    if not import_hooks.install(ASR_TASK_MODULE, execute_then_register):
        register()
