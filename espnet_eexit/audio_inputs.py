"""Audio inputs of a decoding run: the screening before it (:mod:`eexit_runtime.audio_inputs`,
shared with the ONNX runtime), the model's sampling rate, and the empty results of the bad
utterances after it."""
from pathlib import Path
from typing import Dict, List, Optional

from eexit_runtime.audio_inputs import screen_audio, screen_wav_scp  # noqa: F401 (re-exported)


def model_sample_rate(train_config: dict) -> int:
    """The sampling rate a model was trained on: its config's ``frontend_conf.fs`` (asr.sh passes
    ``--frontend_conf fs=16k`` to every model, raw-waveform backbones too), default 16 kHz."""
    import humanfriendly

    fs = (train_config.get("frontend_conf") or {}).get("fs", 16000)
    return int(humanfriendly.parse_size(fs)) if isinstance(fs, str) else int(fs)


def append_empty_results(out_dir: Path, bad: Dict[str, str], nbest: int,
                         extra: Optional[Dict[str, str]] = None) -> None:
    """Add ESPnet's too-short result (text ' ', token ``<space>``) of every bad utterance to
    ``out_dir/<n>best_recog/*`` and each ``extra`` file (``{name: value}``), plus ``bad_audio``
    (``utt reason``), so every utterance of the list has a line and the failures are on record."""
    def append(path: Path, lines: List[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(lines)

    for n in range(1, nbest + 1):
        best = out_dir / f"{n}best_recog"
        for name, value in (("token", "<space>"), ("token_int", "2"), ("score", "0.0"), ("text", " ")):
            append(best / name, [f"{key} {value}\n" for key in bad])
    for name, value in (extra or {}).items():
        append(out_dir / name, [f"{key} {value}\n" for key in bad])
    append(out_dir / "bad_audio", [f"{key} {reason}\n" for key, reason in bad.items()])
