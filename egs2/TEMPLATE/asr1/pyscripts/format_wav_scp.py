#!/usr/bin/env python3
"""Materialise a Kaldi wav.scp (files, "command |" pipes, optional segments) as mono audio files.

    pyscripts/format_wav_scp.py --fs 16000 --audio_format wav [--segments segments] \
        in_wav.scp out_dir

Writes ``out_dir/data/<utt>.<fmt>``, ``out_dir/wav.scp`` and ``out_dir/utt2num_samples``.
Audio is resampled to --fs and multi-channel audio keeps its first channel. A missing, corrupt or
empty recording stops the run with a message naming the utterance and the source; the lists are
written last (via a temporary file), so a failed run never leaves a half-written wav.scp, and
audio files already made are reused on the next run.
"""
import argparse
import io
import subprocess
import sys
from math import gcd
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly


class AudioError(Exception):
    pass


def read_scp(path: Path):
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not value.strip():
            raise AudioError(f"{path}:{n}: no audio given for '{key}'")
        entries.append((key, value.strip()))
    return entries


def load(source: str):
    """(samples (T,) float64, sampling rate) of a file path or a "command |" pipe."""
    try:
        if source.endswith("|"):
            proc = subprocess.run(source[:-1], shell=True, capture_output=True, check=False)
            if proc.returncode != 0:
                raise AudioError(f"command failed ({proc.returncode}): "
                                 f"{proc.stderr.decode(errors='replace').strip()[:300]}")
            audio, rate = soundfile.read(io.BytesIO(proc.stdout), dtype="float64", always_2d=True)
        else:
            if not Path(source).is_file():
                raise AudioError("file not found")
            audio, rate = soundfile.read(source, dtype="float64", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioError(f"cannot decode audio ({e})") from None
    return audio[:, 0], rate


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wav_scp", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--fs", type=int, default=16000)
    parser.add_argument("--audio_format", choices=("wav", "flac"), default="wav")
    parser.add_argument("--segments", type=Path, default=None, help="Kaldi segments file")
    args = parser.parse_args()

    try:
        recordings = dict(read_scp(args.wav_scp))
        if args.segments:
            jobs = []
            for line in args.segments.read_text().splitlines():
                utt, rec, start, end = line.split()[:4]
                if rec not in recordings:
                    raise AudioError(f"{args.segments}: recording '{rec}' of '{utt}' is not in {args.wav_scp}")
                jobs.append((utt, rec, float(start), float(end)))
        else:
            jobs = [(utt, utt, 0.0, -1.0) for utt in recordings]

        data_dir = args.out_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        cache = {}
        rows = []
        for i, (utt, rec, start, end) in enumerate(jobs, 1):
            out = data_dir / f"{utt}.{args.audio_format}"
            if out.exists():
                rows.append((utt, out, soundfile.info(str(out)).frames))
                continue
            if rec not in cache:  # segments of one recording share one read
                cache.clear()
                try:
                    cache[rec] = load(recordings[rec])
                except AudioError as e:
                    raise AudioError(f"utterance '{utt}': {recordings[rec]}: {e}") from None
            audio, rate = cache[rec]
            if end >= 0:
                audio = audio[int(start * rate): int(end * rate)]
            if rate != args.fs:
                g = gcd(rate, args.fs)
                audio = resample_poly(audio, args.fs // g, rate // g)
            if audio.size == 0:
                raise AudioError(f"utterance '{utt}': {recordings[rec]}: empty audio (0 samples)")
            tmp = out.with_name(out.stem + ".tmp." + args.audio_format)
            soundfile.write(str(tmp), np.clip(audio, -1.0, 1.0), args.fs, subtype="PCM_16")
            tmp.rename(out)
            rows.append((utt, out, len(audio)))
            if i % 500 == 0:
                print(f"formatted {i}/{len(jobs)} utterances", file=sys.stderr, flush=True)
    except AudioError as e:
        sys.exit(f"format_wav_scp.py: ERROR: {e}")

    for name, lines in (("wav.scp", [f"{u} {p.resolve()}\n" for u, p, _ in rows]),
                        ("utt2num_samples", [f"{u} {n}\n" for u, _, n in rows])):
        tmp = args.out_dir / (name + ".tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        tmp.rename(args.out_dir / name)


if __name__ == "__main__":
    main()
