"""synth_en's real_test: Debian's recorded Asterisk prompts as a Kaldi data dir (never trained on)."""
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

from recipe_helpers import require_tools

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "egs2" / "synth_en" / "asr1" / "local" / "prepare_real_test.py"
SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


def kaldi(path: Path) -> dict:
    return dict((line.split(" ", 1) + [""])[:2] for line in path.read_text().splitlines())


def prepare(out: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args), str(out)],
                          capture_output=True, text=True)


def test_the_installed_prompts_become_a_complete_normalised_data_dir(tmp_path):
    require_tools("sox", "soxi")
    assert SOUNDS.is_dir() and TEXTS.is_file(), \
        "asterisk-core-sounds-en(-wav) not installed: run tools/install.sh (it installs them)"
    run = prepare(tmp_path / "data" / "real_test")
    assert run.returncode == 0, run.stderr
    data = tmp_path / "data" / "real_test"
    wavs, text, utt2spk = (kaldi(data / n) for n in ("wav.scp", "text", "utt2spk"))
    assert len(text) > 500 and set(wavs) == set(text) == set(utt2spk)
    assert set(utt2spk.values()) == {"allison"}
    assert kaldi(data / "spk2utt")["allison"].split() == sorted(text)
    for key, path in wavs.items():  # every file there, resampled, within Whisper's window
        info = soundfile.info(path.strip())
        assert info.samplerate == 16000 and info.channels == 1 and info.duration <= 30.0, key
    for key, words in text.items():  # LibriSpeech style: no digits, no punctuation but apostrophes
        assert words and words == words.upper() and all(c.isalpha() or c in " '" for c in words), key
    # tones, silence and stage directions are not speech; a number is read as words
    assert not any(k.startswith("allison-silence_") for k in text)
    assert "allison-beep" not in text and "allison-tt-monkeys" not in text
    assert text["allison-vm-intro"].endswith("PRESS THE POUND KEY")  # "(simple tone sound plays)" gone
    assert text["allison-letters_at"] == "AT"  # "at [@]"
    assert text["allison-spy-iax2"] == "IAX"  # 'IAX (note: does not say "2")'
    assert "DIAL FIVE HUNDRED" in text["allison-demo-instruct"] if "allison-demo-instruct" in text else True
    assert "left out:" in run.stderr and "too long" in run.stderr


def test_left_out_entries_are_counted_and_a_missing_recording_named(tmp_path):
    require_tools("sox", "soxi")
    sounds = tmp_path / "sounds"
    (sounds / "digits").mkdir(parents=True)
    tone = (0.3 * np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440)).astype(np.float32)
    for name, seconds in (("hello", 1), ("digits/5", 1), ("beep", 1), ("long", 31), ("vm", 1)):
        soundfile.write(sounds / f"{name}.wav", np.tile(tone, seconds), 8000, subtype="PCM_16")
    texts = tmp_path / "texts.txt.gz"
    with gzip.open(texts, "wt") as f:
        f.write("; comment\n\nhello: Hello, world!\ndigits/5: 5\nbeep: [a beep tone]\n"
                "silence/1: (1 second of silence)\nlong: Far too long.\nvm: Press 1. (tone plays)\n"
                "gone: Not recorded.\n")
    out = tmp_path / "data" / "real_test"
    out.mkdir(parents=True)
    (out / "stale").write_text("from an earlier run")
    run = prepare(out, "--sounds_dir", sounds, "--texts", texts)
    assert run.returncode == 0, run.stderr
    assert kaldi(out / "text") == {"allison-digits_5": "FIVE", "allison-hello": "HELLO WORLD",
                                   "allison-vm": "PRESS ONE"}
    assert not (out / "stale").exists()  # the data dir is written whole, not merged into
    assert ("3 utterances; left out: 1 bracketed or stage direction only, 1 silence, 1 too long, "
            "1 missing recording (gone)") in run.stderr
    # the package missing: one line naming it
    run = prepare(tmp_path / "other", "--sounds_dir", tmp_path / "nowhere", "--texts", texts)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        f"prepare_real_test.py: {tmp_path / 'nowhere'} not found: install the Debian package "
        "asterisk-core-sounds-en-wav (tools/install.sh does)"]
