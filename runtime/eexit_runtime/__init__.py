"""Torch-free early-exit ASR: run an exported model (``python -m espnet_eexit.bin.export_onnx``)
with numpy + onnxruntime, stopping at the exit a policy picks.

    from eexit_runtime import EarlyExitRuntime
    runtime = EarlyExitRuntime("exp/asr_x/onnx", num_threads=1)
    results = runtime.transcribe([waveform], policy="entropy:0.3")   # text, exit layer, confidence

    eexit-transcribe --model_dir DIR --policy entropy:0.3 a.wav b.flac

The distribution ``espnet-eexit-runtime`` (``pip install ./runtime``) needs numpy, onnxruntime,
soundfile, sentencepiece and tokenizers; neither torch nor ESPnet. It holds the torch-free core
the training package ``espnet_eexit`` imports too: the exit policies (:mod:`.exit_policy`, the same
code PyTorch decoding uses), the learned controller (:mod:`.exit_controller`) and the errors
(:mod:`.errors`). Importing it installs no import hooks and changes no warning filters.
"""
from eexit_runtime.model import EarlyExitRuntime, RuntimeResult

__version__ = "0.1.0"
__all__ = ["EarlyExitRuntime", "RuntimeResult"]
