#!/usr/bin/env python3
"""Synthesise a tiny command-word corpus with espeak-ng into Kaldi-style data dirs.

    local/make_data.py --num_train 300 --num_test 40 --nj 2 data

Writes ``data/{train,dev,test}/{wav.scp,text,utt2spk,spk2utt}`` and the audio under
``data/wav/``. Dev/test voices never occur in train. Seeded, resumable (existing wavs are kept).
"""
import argparse
import random
import subprocess
import sys
from multiprocessing import Pool
from pathlib import Path

WORDS = ("ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE "
         "YES NO UP DOWN LEFT RIGHT STOP GO ON OFF").split()
# espeak-ng voice + variant = one speaker. Held-out voices make dev/test speaker-disjoint.
TRAIN_VOICES = ["en-us+m1", "en-us+m3", "en-us+f1", "en-us+f3", "en+m2", "en+f2", "en-gb-x-rp+m4"]
DEV_VOICES = ["en-us+m5"]
TEST_VOICES = ["en+m7", "en-us+f4"]


def synthesise(job):
    wav, voice, rate, pitch, text = job
    if wav.exists() and wav.stat().st_size > 44:
        return None
    tmp = wav.with_suffix(".tmp.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(tmp), text],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # 16 kHz mono 16-bit, as ESPnet's default frontend expects; rename last = never half-written.
    subprocess.run(["sox", str(tmp), "-r", "16000", "-c", "1", "-b", "16", str(wav.with_suffix(".part.wav"))],
                   check=True)
    tmp.unlink()
    wav.with_suffix(".part.wav").rename(wav)
    return None


def make_split(name, voices, num, rng, wav_dir, data_dir):
    jobs, rows = [], []
    for i in range(num):
        voice = voices[i % len(voices)]
        spk = voice.replace("+", "_")
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
        utt = f"{spk}-{name}{i:05d}"
        wav = wav_dir / f"{utt}.wav"
        jobs.append((wav, voice, rng.randint(130, 190), rng.randint(30, 70), text))
        rows.append((utt, spk, wav, text))
    out = data_dir / name
    out.mkdir(parents=True, exist_ok=True)
    rows.sort()
    (out / "wav.scp").write_text("".join(f"{u} {w.resolve()}\n" for u, _, w, _ in rows))
    (out / "text").write_text("".join(f"{u} {t}\n" for u, _, _, t in rows))
    (out / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, _, _ in rows))
    spk2utt = {}
    for u, s, _, _ in rows:
        spk2utt.setdefault(s, []).append(u)
    (out / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))
    return jobs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--num_train", type=int, default=300)
    parser.add_argument("--num_dev", type=int, default=30)
    parser.add_argument("--num_test", type=int, default=40)
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    wav_dir = args.data_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name, voices, num in (("train", TRAIN_VOICES, args.num_train),
                              ("dev", DEV_VOICES, args.num_dev),
                              ("test", TEST_VOICES, args.num_test)):
        jobs += make_split(name, voices, num, rng, wav_dir, args.data_dir)
    with Pool(args.nj) as pool:
        for done, _ in enumerate(pool.imap_unordered(synthesise, jobs, chunksize=8), 1):
            if done % 100 == 0 or done == len(jobs):
                print(f"synthesised {done}/{len(jobs)} utterances", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
