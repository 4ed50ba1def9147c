"""Check a decoding list's audio before decoding it, so one bad file costs one line, not the run.

ESPnet's loader opens each file when its batch comes: a missing, empty or non-audio file raises
``LibsndfileError`` (or an STFT shape error) deep in the loader, naming neither utterance nor
file, and the utterances after it are never decoded. A file at another sample rate is decoded as
if it were at the model's, into garbage, without a word. :func:`screen_wav_scp` reads each file's
header once (cheap) and reports, per utterance, why it cannot be decoded (also: longer than the
model takes, e.g. Whisper's 30-s window); ``asr_inference`` decodes the others and writes an
empty result for these, as ESPnet does for too-short input. A file of several channels is
decoded from its first, as ESPnet's front end does at inference, with a warning.
"""
import logging
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from eexit_runtime.datadir import read_kaldi_text
from eexit_runtime.errors import EarlyExitConfigError


def screen_wav_scp(wav_scp: Path, fs: int, keys: Optional[Iterable[str]] = None,
                   max_seconds: Optional[float] = None, then: str = "writing an empty result") -> Dict[str, str]:
    """``{utt: reason}`` for the files of ``wav_scp`` that cannot be decoded (:func:`screen_audio`).

    Only plain file paths are checked (a ``cmd |`` pipe or an ``ark:offset`` is read by ESPnet
    as it comes). Raises :class:`EarlyExitConfigError` for audio at another sample rate than the
    model's ``fs``: decoding it would give garbage, and resampling is the user's call.
    """
    wanted = None if keys is None else set(keys)
    entries = {key: value for key, value in read_kaldi_text(wav_scp).items()
               if wanted is None or key in wanted}
    return screen_audio(entries, fs, str(wav_scp), max_seconds, then)


def screen_audio(entries: Dict[str, str], fs: int, source: str,
                 max_seconds: Optional[float] = None, then: str = "writing an empty result") -> Dict[str, str]:
    """``{utt: reason}`` for the audio files ``{utt: path}`` that cannot be decoded (missing,
    empty, not audio, no samples, longer than ``max_seconds``), with a warning each that ends
    with ``then`` (what the caller does with it); a file at
    another rate than ``fs`` raises :class:`EarlyExitConfigError` naming ``source`` (the list or
    option it came from). A file of several channels is decodable (its first channel is read:
    ESPnet's ``DefaultFrontend`` at inference, :func:`espnet_eexit.encoder.waveform.as_waveforms`,
    the ONNX runtime), with a warning naming it."""
    import soundfile

    bad: Dict[str, str] = {}
    for key, value in entries.items():
        if value.endswith("|") or (":" in value and not Path(value).exists()):
            continue
        path = Path(value)
        if not path.is_file():
            bad[key] = f"{value}: no such file"
            continue
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, soundfile.LibsndfileError):
            size = path.stat().st_size
            bad[key] = f"{value}: {'empty file (0 bytes)' if size == 0 else 'not an audio file soundfile can read'}"
            continue
        if info.frames == 0:
            bad[key] = f"{value}: no samples (a header only)"
        elif max_seconds is not None and info.frames > max_seconds * info.samplerate:
            bad[key] = f"{value}: {info.frames / info.samplerate:.1f} s, longer than the model takes ({max_seconds:g} s)"
        elif info.samplerate != fs:
            raise EarlyExitConfigError(
                f"{source}: utterance {key} ({value}) is {info.samplerate} Hz but the model was "
                f"trained on {fs} Hz audio: resample it first (e.g. sox in.wav -r {fs} out.wav)"
            )
        elif info.channels > 1:
            logging.warning(f"utterance {key} ({value}) has {info.channels} channels: decoding "
                            "its first (as ESPnet's front end does at inference)")
    for key, reason in bad.items():
        logging.warning(f"utterance {key} cannot be decoded ({reason}): {then}")
    return bad
