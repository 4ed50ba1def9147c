"""synth_en corpus preparation: Jane Austen text normalisation and the speaker/text split plan."""
import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recipe_helpers import require_tools

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "egs2" / "synth_en" / "asr1" / "local"
JANEAUSTENR = [p for p in (REPO / "tools/janeaustenr/usr/lib/R/site-library/janeaustenr",
                           Path("/usr/lib/R/site-library/janeaustenr"))
               if (p / "data" / "Rdata.rdb").is_file()]


def load(name):
    spec = importlib.util.spec_from_file_location(name, LOCAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    assert JANEAUSTENR, "r-cran-janeaustenr not unpacked: run tools/install.sh (it does)"
    out = tmp_path_factory.mktemp("text")
    subprocess.run([sys.executable, LOCAL / "prepare_text.py", "--janeaustenr_dir", JANEAUSTENR[0], out],
                   check=True, capture_output=True)
    return out


def test_normalisation_is_librispeech_style():
    import inflect

    prep = load("prepare_text")
    engine = inflect.engine()
    assert prep.normalise('"Mr. Darcy paid 25 pounds on the 3rd of May," said she.', engine) == \
        "MISTER DARCY PAID TWENTY FIVE POUNDS ON THE THIRD OF MAY SAID SHE"
    assert prep.normalise("_Emma_ couldn't--'tis true!", engine) == "EMMA COULDN'T TIS TRUE"


def test_six_novels_become_clean_sentences(text_dir):
    counts = {}
    for novel in ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice",
                  "sensesensibility"):
        lines = (text_dir / f"{novel}.txt").read_text().splitlines()
        counts[novel] = len(lines)
        for line in lines:
            assert re.fullmatch(r"[A-Z']+( [A-Z']+){3,24}", line), line
    assert sum(counts.values()) > 15000 and counts["persuasion"] > 1500


def read_sentences(corpus, text_dir):
    return {n: (text_dir / f"{n}.txt").read_text().splitlines()
            for n in corpus.TRAIN_NOVELS + (corpus.HELDOUT_NOVEL,)}


def kokoro_voices(rows):
    """The Kokoro voices speaking in ``rows``, a mix counted as both its voices."""
    return {part.split(":")[0] for r in rows if r[3] == "kokoro" for part in r[4].split("+")}


def test_plan_keeps_dev_and_test_speakers_and_text_out_of_train(text_dir):
    corpus = load("make_corpus")
    sentences = read_sentences(corpus, text_dir)
    args = argparse.Namespace(seed=3, corpus_size="default")
    rows = corpus.plan(args, sentences)
    assert rows == corpus.plan(args, sentences)  # seeded: reproducible
    splits = ("train", "dev", "test", "test_engine")
    by_split = {s: [r for r in rows if r[0] == s] for s in splits}
    assert [len(v) for v in by_split.values()] == list(corpus.SIZES["default"])
    speakers = {s: {r[2] for r in v} for s, v in by_split.items()}
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    assert not speakers["dev"] & speakers["test"]
    # every engine's voice (a Kokoro mix: each of its voices) in at most one of train, dev, test
    voices = {s: {(r[3], r[4]) for r in v if r[3] != "kokoro"} | {("kokoro", k) for k in kokoro_voices(v)}
              for s, v in by_split.items()}
    assert not voices["train"] & voices["dev"] and not voices["train"] & voices["test"]
    assert not voices["dev"] & voices["test"]
    heldout = set(sentences[corpus.HELDOUT_NOVEL])
    assert all(r[8] not in heldout for r in by_split["train"])
    texts = {s: {r[8] for r in by_split[s]} for s in ("dev", "test", "test_engine")}
    assert all(t <= heldout for t in texts.values())
    assert not texts["dev"] & texts["test"] and not texts["test_engine"] & (texts["dev"] | texts["test"])
    for split in ("train", "dev", "test"):
        espeak = sum(r[3] == "espeak" for r in by_split[split]) / len(by_split[split])
        assert espeak == pytest.approx(0.25, abs=0.01), (split, espeak)
    engines = {s: {r[3] for r in v} for s, v in by_split.items()}
    assert engines == {"train": {"piper", "festival", "espeak", "kokoro"}, "dev": {"kokoro", "espeak"},
                       "test": {"kokoro", "espeak"}, "test_engine": {"flite"}}
    # flite is the held-out engine: all four of its voices in test_engine, none anywhere else
    assert {r[4] for r in by_split["test_engine"]} == {"kal16", "slt", "awb", "rms"}
    assert sum(r[3] == "kokoro" for r in by_split["train"]) == corpus.KOKORO_TRAIN_UTTS["default"]


def test_kokoro_voices_are_held_out_whole_and_balanced(text_dir):
    corpus = load("make_corpus")
    rows = corpus.plan(argparse.Namespace(seed=1, corpus_size="default"), read_sentences(corpus, text_dir))
    used = {s: kokoro_voices([r for r in rows if r[0] == s]) for s in ("train", "dev", "test")}
    assert used == {"train": set(corpus.KOKORO_TRAIN), "dev": set(corpus.KOKORO_DEV),
                    "test": set(corpus.KOKORO_TEST)}
    # all 28 native English voices, each in one split; dev and test alike in gender and accent
    assert len(set().union(*used.values())) == sum(map(len, used.values())) == 28
    assert all(v[:2] in ("af", "am", "bf", "bm") for v in set().union(*used.values()))
    kinds = {s: sorted(v[:2] for v in used[s]) for s in ("dev", "test")}
    assert kinds["dev"] == kinds["test"] == ["af", "af", "am", "am", "bf", "bm"]
    # mixes: two same-gender training voices, spoken in train only
    for mix in corpus.KOKORO_MIXES:
        names = [part.split(":")[0] for part in mix.split("+")]
        assert len(names) == 2 and names[0][1] == names[1][1] and set(names) <= set(corpus.KOKORO_TRAIN), mix
    train_mixes = {r[4] for r in rows if r[0] == "train" and r[3] == "kokoro" and "+" in r[4]}
    assert train_mixes == set(corpus.KOKORO_MIXES)
    assert not any("+" in r[4] for r in rows if r[0] != "train" and r[3] == "kokoro")


def test_tiny_corpus_has_a_few_kokoro_utterances(text_dir):
    corpus = load("make_corpus")
    rows = corpus.plan(argparse.Namespace(seed=1, corpus_size="tiny"), read_sentences(corpus, text_dir))
    kokoro = [r for r in rows if r[3] == "kokoro"]
    assert {r[0] for r in kokoro} == {"train", "dev", "test"} and len(kokoro) <= 25
    assert [sum(r[0] == s for r in rows) for s in ("train", "dev", "test", "test_engine")] == \
        list(corpus.SIZES["tiny"])


def test_missing_kokoro_files_are_one_clear_error(tmp_path):
    corpus = load("make_corpus")
    with pytest.raises(SystemExit) as error:
        corpus.check_kokoro(tmp_path)
    assert str(tmp_path / "kokoro-v1.0.int8.onnx") in str(error.value) and "tools/install.sh" in str(error.value)


def test_resuming_remakes_audio_whose_plan_changed(tmp_path):
    corpus = load("make_corpus")
    rows = [("train", "a-train000000", "a", "espeak", "en+f1", 1.0, 0.0, "none", "OLD TEXT"),
            ("dev", "b-dev000000", "b", "espeak", "en+f1", 1.0, 0.0, "none", "SAME TEXT")]
    manifest = tmp_path / "corpus.tsv"
    manifest.write_text("header\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    for r in rows:
        (tmp_path / "wav" / r[0]).mkdir(parents=True)
        (tmp_path / "wav" / r[0] / f"{r[1]}.wav").write_bytes(b"x" * 2000)
    new_rows = [rows[0][:8] + ("NEW TEXT",), rows[1]]
    corpus.drop_stale_audio(manifest, new_rows, tmp_path / "wav")
    assert not (tmp_path / "wav" / "train" / "a-train000000.wav").exists()
    assert (tmp_path / "wav" / "dev" / "b-dev000000.wav").exists()


def test_lm_text_holds_every_training_sentence_and_no_dev_or_test_text(text_dir, tmp_path):
    corpus = load("make_corpus")
    sentences = {n: (text_dir / f"{n}.txt").read_text().splitlines()
                 for n in corpus.TRAIN_NOVELS + (corpus.HELDOUT_NOVEL,)}
    corpus.write_lm_text(tmp_path / "lm_train.txt", sentences)
    lines = (tmp_path / "lm_train.txt").read_text().splitlines()
    keys = [line.split(" ", 1)[0] for line in lines]
    lm_text = {line.split(" ", 1)[1] for line in lines}
    assert len(set(keys)) == len(keys) == len(lm_text)  # unique keys (ESPnet's loader), no repeats
    assert not lm_text & set(sentences[corpus.HELDOUT_NOVEL])
    rows = corpus.plan(argparse.Namespace(seed=3, corpus_size="default"), sentences)
    assert {r[8] for r in rows if r[0] == "train"} <= lm_text
    assert not lm_text & {r[8] for r in rows if r[0] == "test_engine"}
    assert len(lm_text) > 4 * corpus.SIZES["default"][0]


def test_every_engine_speaks_16k_audio(tmp_path):
    require_tools("flite", "text2wave", "espeak-ng", "sox")
    corpus = load("make_corpus")
    corpus.check_kokoro(corpus.KOKORO_DIR)  # tools/kokoro, assembled by tools/install.sh
    rows = [("train", f"u{i}", "s", engine, voice, 1.0, 0.5, effect, "IT IS A TRUTH UNIVERSALLY ACKNOWLEDGED")
            for i, (engine, voice, effect) in enumerate([
                ("piper", "joe", "none"), ("flite", "kal16", "reverb"),
                ("festival", "voice_cmu_us_slt_arctic_hts", "noise"), ("espeak", "en-us+m1", "telephone"),
                ("kokoro", "bm_george", "none"), ("kokoro", "af_bella:0.6+af_sky:0.4", "reverb"),
                ("kokoro", "af_bella", "reverb")])]
    import soundfile

    for row in rows:
        utt, error = corpus.synthesise((row, tmp_path))
        assert error is None
        info = soundfile.info(str(tmp_path / "train" / f"{utt}.wav"))
        assert info.samplerate == 16000 and info.channels == 1 and 1.0 < info.duration < 6.0, (row, info)
    # A mix is the weighted sum of its voices' styles, a timbre of its own; British voices speak en-gb
    tts = corpus.kokoro_tts()
    style, lang = corpus.kokoro_style("af_bella:0.6+af_sky:0.4")
    assert lang == "en-us" and np.allclose(style, 0.6 * tts.voices["af_bella"] + 0.4 * tts.voices["af_sky"])
    assert corpus.kokoro_style("bm_george")[1] == "en-gb"
    mix, bella = (soundfile.read(str(tmp_path / "train" / f"u{i}.wav"))[0] for i in (5, 6))
    assert mix.shape != bella.shape or not np.allclose(mix, bella, atol=1e-3)
    # Reproducible: made again, the sox-processed engines give the same bytes (sox dither and noise
    # are seeded; Kokoro's graph has no noise). piper is left out: its VITS model samples noise
    # inside the ONNX graph.
    for row in rows[1:]:
        first = (tmp_path / "train" / f"{row[1]}.wav").read_bytes()
        again = tmp_path / "again"
        assert corpus.synthesise((row, again))[1] is None
        assert (again / "train" / f"{row[1]}.wav").read_bytes() == first, row
