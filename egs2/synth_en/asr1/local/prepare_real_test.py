#!/usr/bin/env python3
"""real_test: recorded English speech, never trained on (Debian's Asterisk telephone prompts).

    local/prepare_real_test.py data/real_test
    local/prepare_real_test.py --sounds_dir DIR --texts FILE.txt.gz data/real_test
    local/prepare_real_test.py --max_utterances 12 data/real_test     # what --corpus_size tiny makes

Debian ``asterisk-core-sounds-en-wav`` holds ~570 prompts recorded by one female speaker
(Allison Smith; 8 kHz, 16-bit; CC-BY-SA-3.0, Digium) and ``asterisk-core-sounds-en`` their texts
(``core-sounds-en.txt.gz``, one ``name: text`` line per file). Writes a Kaldi data dir: wav.scp
(16-kHz copies under ``<data dir>/../wav/real_test/``, made with sox), text (LibriSpeech style,
numbers as words: :func:`espnet_eexit.text_norm.librispeech_style`, the scoring path's own
normalisation), utt2spk, spk2utt. Left out, and counted on stderr: tones and other bracketed
entries, ``silence/*``, texts empty once stage directions "(...)" and "[...]" are dropped, and
recordings over ``--max_seconds`` (Whisper's 30-s window), and texts whose recording the package
does not ship (a few; named on stderr). Written atomically: the data dir appears complete or not
at all.
"""
import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from espnet_eexit.text_norm import librispeech_style

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SPEAKER = "allison"
# Typos of the text file, where the recording says the word right.
CORRECTIONS = {"EXCLAIMATION": "EXCLAMATION"}


def read_prompts(texts: Path):
    """``[(name, raw text)]`` of ``core-sounds-en.txt.gz`` (``;`` comments and blank lines skipped)."""
    opener = gzip.open if texts.suffix == ".gz" else open
    prompts = []
    with opener(texts, "rt", encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            name, sep, text = line.partition(":")
            if not sep:
                sys.exit(f"prepare_real_test.py: {texts} line {line_no}: no 'name: text' ({line[:60]!r})")
            prompts.append((name.strip(), text.strip()))
    return prompts


def reference(text: str) -> str:
    """The spoken words of a prompt's text: stage directions "(...)" and "[...]" dropped,
    LibriSpeech style, known typos corrected; "" if nothing is spoken."""
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", text)
    words = librispeech_style(text).split()
    return " ".join(CORRECTIONS.get(w, w) for w in words)


def seconds(wav: Path) -> float:
    out = subprocess.run(["soxi", "-D", str(wav)], check=True, capture_output=True, text=True).stdout
    return float(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="the data dir to write (e.g. data/real_test)")
    parser.add_argument("--sounds_dir", type=Path, default=SOUNDS_DIR,
                        help="the recordings (Debian asterisk-core-sounds-en-wav)")
    parser.add_argument("--texts", type=Path, default=TEXTS,
                        help="their texts (Debian asterisk-core-sounds-en)")
    parser.add_argument("--max_utterances", type=int, default=None,
                        help="keep this many, evenly spread over the sorted list (a small CI set)")
    parser.add_argument("--max_seconds", type=float, default=30.0,
                        help="leave out longer recordings (Whisper's window)")
    args = parser.parse_args()

    for path, package in ((args.sounds_dir, "asterisk-core-sounds-en-wav"),
                          (args.texts, "asterisk-core-sounds-en")):
        if not path.exists():
            sys.exit(f"prepare_real_test.py: {path} not found: install the Debian package {package} "
                     "(tools/install.sh does)")
    if shutil.which("sox") is None or shutil.which("soxi") is None:
        sys.exit("prepare_real_test.py: sox not found: run tools/install.sh")

    kept, missing, left_out = [], [], {"bracketed or stage direction only": 0, "silence": 0, "too long": 0,
                          "missing recording": 0}
    for name, raw in read_prompts(args.texts):
        if name.startswith("silence/"):
            left_out["silence"] += 1
            continue
        text = reference(raw)
        if not text:
            left_out["bracketed or stage direction only"] += 1
            continue
        wav = args.sounds_dir / f"{name}.wav"
        if not wav.is_file():
            left_out["missing recording"] += 1
            missing.append(name)
            continue
        if seconds(wav) > args.max_seconds:
            left_out["too long"] += 1
            continue
        kept.append((f"{SPEAKER}-{name.replace('/', '_')}", wav, text))
    kept.sort()
    if args.max_utterances is not None and args.max_utterances < len(kept):
        step = len(kept) / args.max_utterances
        kept = [kept[int(i * step)] for i in range(args.max_utterances)]

    # 16-kHz copies beside the corpus's own audio; the data dir is written whole, then renamed in.
    wav_dir = (args.data_dir.parent / "wav" / args.data_dir.name).resolve()
    wav_dir.mkdir(parents=True, exist_ok=True)
    for utt, src, _ in kept:
        out = wav_dir / f"{utt}.wav"
        if not out.is_file():
            part = out.with_suffix(".part.wav")
            subprocess.run(["sox", "-R", str(src), "-r", "16000", "-c", "1", "-b", "16", str(part)],
                           check=True, stderr=subprocess.PIPE)
            os.replace(part, out)
    args.data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{args.data_dir.name}.", dir=args.data_dir.parent))
    (tmp / "wav.scp").write_text("".join(f"{u} {wav_dir / (u + '.wav')}\n" for u, _, _ in kept))
    (tmp / "text").write_text("".join(f"{u} {t}\n" for u, _, t in kept), encoding="utf-8")
    (tmp / "utt2spk").write_text("".join(f"{u} {SPEAKER}\n" for u, _, _ in kept))
    (tmp / "spk2utt").write_text(f"{SPEAKER} {' '.join(u for u, _, _ in kept)}\n")
    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    os.replace(tmp, args.data_dir)
    print(f"prepare_real_test.py: {args.data_dir}: {len(kept)} utterances; left out: "
          + ", ".join(f"{n} {why}" for why, n in left_out.items())
          + (f" ({', '.join(missing)})" if missing else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
