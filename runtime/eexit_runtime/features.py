"""ESPnet's default front end in numpy: STFT -> power spectrum -> mel -> log (and Whisper's
log-mel; a wav2vec2 / HuBERT export takes the waveform itself).

The same computation as ``espnet2.asr.frontend.default.DefaultFrontend`` (``torch.stft`` with
``center`` reflect padding, its window, ``LogMel``'s mel matrix and 1e-10 floor), with the window
and mel matrix stored by the exporter, so the runtime needs neither torch nor librosa.
Normalisation (global or utterance MVN) is part of the exported ``front_end`` graph.
"""
from pathlib import Path
from typing import Optional

import numpy as np


class LogMelFeatures:
    """Waveform (S,) float -> log-mel features (T, n_mels) float32.

    Args:
        settings: the manifest's ``features`` entry (n_fft, hop_length, center, ...).
        arrays_file: ``frontend.npz`` with ``window`` (win_length,) and ``melmat`` (F, n_mels).
    """

    def __init__(self, settings: dict, arrays_file: Path):
        arrays = np.load(arrays_file)
        self.n_fft = int(settings["n_fft"])
        self.hop_length = int(settings["hop_length"])
        self.center = bool(settings["center"])
        self.normalized = bool(settings["normalized"])
        self.onesided = bool(settings["onesided"])
        self.log_base = settings["log_base"]
        window = arrays["window"].astype(np.float64)
        # torch.stft centres a window shorter than n_fft inside the frame
        left = (self.n_fft - window.shape[0]) // 2
        self.window = np.pad(window, (left, self.n_fft - window.shape[0] - left))
        self.melmat = arrays["melmat"].astype(np.float64)

    def num_frames(self, num_samples: int) -> int:
        padded = num_samples + (2 * (self.n_fft // 2) if self.center else 0)
        return (padded - self.n_fft) // self.hop_length + 1

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        x = np.asarray(waveform, dtype=np.float64)
        if self.center:
            x = np.pad(x, self.n_fft // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft)[:: self.hop_length]
        transform = np.fft.rfft if self.onesided else np.fft.fft
        spectrum = transform(frames * self.window, n=self.n_fft)
        if self.normalized:
            spectrum = spectrum * self.n_fft ** -0.5
        power = spectrum.real ** 2 + spectrum.imag ** 2
        mel = np.maximum(power @ self.melmat, 1e-10)
        logmel = np.log(mel)
        if self.log_base is not None:
            logmel = logmel / np.log(self.log_base)
        return logmel.astype(np.float32)


class WhisperLogMelFeatures:
    """Waveform (S,) float at 16 kHz -> Whisper's log-mel features (T, n_mels) float32, T = S // 160.

    :class:`espnet_eexit.encoder.whisper.WhisperLogMel` in numpy: a centred (reflect-padded)
    400-point Hann STFT every 160 samples without the last frame, power, Slaney mel filters,
    ``log10(max(., 1e-10))`` floored at the utterance's maximum - 8, then ``(x + 4) / 4``.

    Args:
        arrays_file: ``whisper_features.npz`` with ``window`` (400,) and ``filters`` (n_mels, 201).
    """

    n_fft = 400
    hop_length = 160

    def __init__(self, settings: dict, arrays_file: Path):
        arrays = np.load(arrays_file)
        self.window = arrays["window"].astype(np.float64)
        self.filters = arrays["filters"].astype(np.float64)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        half = self.n_fft // 2
        x = np.asarray(waveform, dtype=np.float64)
        if x.shape[0] <= half:
            raise ValueError(f"{x.shape[0]} samples: too short for Whisper's features (more than {half} needed)")
        x = np.pad(x, half, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft)[:: self.hop_length][:-1]
        spectrum = np.fft.rfft(frames * self.window, n=self.n_fft)
        power = spectrum.real ** 2 + spectrum.imag ** 2  # (T, 201)
        log_spec = np.log10(np.maximum(power @ self.filters.T, 1e-10))
        log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0).astype(np.float32)


class Waveform:
    """Waveform (S,) -> (S, 1) float32: the front-end graph of a wav2vec2 / HuBERT model starts
    from the samples themselves (its CNN feature encoder is in the graph)."""

    def __init__(self, settings: dict, arrays_file: Optional[Path] = None):
        pass

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        return np.asarray(waveform, dtype=np.float32)[:, None]


FEATURE_KINDS = {"espnet_default": LogMelFeatures, "whisper_log_mel": WhisperLogMelFeatures, "waveform": Waveform}


def build_features(settings: dict, arrays_file: Optional[Path]):
    """The feature extractor a manifest's ``features`` entry names (``kind``)."""
    kind = settings.get("kind", "espnet_default")
    if kind not in FEATURE_KINDS:
        raise ValueError(f"features of kind {kind!r}: this runtime computes {', '.join(FEATURE_KINDS)}")
    return FEATURE_KINDS[kind](settings, arrays_file)
