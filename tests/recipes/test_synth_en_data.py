"""synth_en corpus preparation: Jane Austen text normalisation and the speaker/text split plan."""
import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

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


def test_plan_keeps_dev_and_test_speakers_and_text_out_of_train(text_dir):
    corpus = load("make_corpus")
    sentences = {n: (text_dir / f"{n}.txt").read_text().splitlines()
                 for n in corpus.TRAIN_NOVELS + (corpus.HELDOUT_NOVEL,)}
    args = argparse.Namespace(seed=3, corpus_size="default")
    rows = corpus.plan(args, sentences)
    assert rows == corpus.plan(args, sentences)  # seeded: reproducible
    by_split = {s: [r for r in rows if r[0] == s] for s in ("train", "dev", "test")}
    assert [len(v) for v in by_split.values()] == list(corpus.SIZES["default"])
    speakers = {s: {r[2] for r in v} for s, v in by_split.items()}
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    assert not speakers["dev"] & speakers["test"]
    heldout = set(sentences[corpus.HELDOUT_NOVEL])
    assert all(r[8] not in heldout for r in by_split["train"])
    assert all(r[8] in heldout for r in by_split["dev"] + by_split["test"])
    assert not {r[8] for r in by_split["dev"]} & {r[8] for r in by_split["test"]}
    for split, v in by_split.items():
        espeak = sum(r[3] == "espeak" for r in v) / len(v)
        assert 0.15 < espeak < 0.30, (split, espeak)
    assert {r[3] for r in by_split["train"]} == {"piper", "flite", "festival", "espeak"}


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
    assert len(lm_text) > 4 * corpus.SIZES["default"][0]


def test_every_engine_speaks_16k_audio(tmp_path):
    require_tools("flite", "text2wave", "espeak-ng", "sox")
    corpus = load("make_corpus")
    rows = [("train", f"u{i}", "s", engine, voice, 1.0, 0.5, effect, "IT IS A TRUTH UNIVERSALLY ACKNOWLEDGED")
            for i, (engine, voice, effect) in enumerate([
                ("piper", "joe", "none"), ("flite", "kal16", "reverb"),
                ("festival", "voice_cmu_us_slt_arctic_hts", "noise"), ("espeak", "en-us+m1", "telephone")])]
    import soundfile

    for row in rows:
        utt, error = corpus.synthesise((row, tmp_path))
        assert error is None
        info = soundfile.info(str(tmp_path / "train" / f"{utt}.wav"))
        assert info.samplerate == 16000 and info.channels == 1 and 1.0 < info.duration < 6.0, (row, info)
    # Reproducible: made again, the sox-processed engines give the same bytes (sox dither and noise
    # are seeded). piper is left out: its VITS model samples noise inside the ONNX graph.
    for row in rows[1:]:
        first = (tmp_path / "train" / f"{row[1]}.wav").read_bytes()
        again = tmp_path / "again"
        assert corpus.synthesise((row, again))[1] is None
        assert (again / "train" / f"{row[1]}.wav").read_bytes() == first, row
