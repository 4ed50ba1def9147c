"""Torch-free early-exit ASR: run an exported model (:mod:`espnet_eexit.export.onnx_segments`)
with numpy + onnxruntime, stopping at the exit a policy picks.

    from espnet_eexit.runtime import EarlyExitRuntime
    runtime = EarlyExitRuntime("exp/asr_x/onnx", num_threads=1)
    results = runtime.transcribe([waveform], policy="entropy:0.3")   # text, exit layer, confidence

    python -m espnet_eexit.runtime.transcribe --model_dir DIR --policy entropy:0.3 a.wav b.flac

Importing this package pulls in neither torch nor ESPnet: the policies are
:mod:`espnet_eexit.exit_policy` (numpy), the same code PyTorch decoding uses.
"""
from espnet_eexit.runtime.model import EarlyExitRuntime, RuntimeResult

__all__ = ["EarlyExitRuntime", "RuntimeResult"]
