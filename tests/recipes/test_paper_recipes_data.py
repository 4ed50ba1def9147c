"""Data preparation of the paper's recipes (LibriSpeech, LibriSpeech-100, TED-LIUM 3) on tiny fake
corpora made here in the official layouts, run through the recipes' own run.sh stages 1-4; and the
shared resumable, checksum-verified download (from a file:// URL: no network)."""
import hashlib
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_eexit.datadir import read_kaldi_text
from recipe_helpers import REPO, copy_recipe, run

FS = 16000
VALIDATE = REPO / "egs2" / "TEMPLATE" / "asr1" / "utils" / "validate_data_dir.sh"


def validate(data_dir: Path) -> None:
    proc = subprocess.run([str(VALIDATE), str(data_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ LibriSpeech
LIBRI_SUBSETS = ("train-clean-100", "train-clean-360", "dev-clean", "dev-other", "test-clean", "test-other")


def make_librispeech(root: Path, subsets=LIBRI_SUBSETS) -> Path:
    """<root>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-000n.flac + .trans.txt."""
    rng = np.random.default_rng(0)
    for s, subset in enumerate(subsets):
        for spk in (100 + 10 * s, 101 + 10 * s):
            chapter = 7 + s
            d = root / "LibriSpeech" / subset / str(spk) / str(chapter)
            d.mkdir(parents=True)
            lines = []
            for n in range(2):
                utt = f"{spk}-{chapter}-{n:04d}"
                soundfile.write(d / f"{utt}.flac", 0.1 * rng.standard_normal(FS // 2 + 800 * n), FS)
                lines.append(f"{utt} HELLO {subset.upper()} WORLD{n}")
            (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root / "LibriSpeech"


@pytest.fixture(scope="module")
def librispeech_100(tmp_path_factory):
    root = tmp_path_factory.mktemp("ls")
    corpus = make_librispeech(root / "corpus")
    copy_recipe(root, "librispeech")  # librispeech_100 links its local/ there
    recipe = copy_recipe(root, "librispeech_100")
    run(recipe, "--librispeech_dir", str(corpus.parent), "--stop_stage", "4", "--nj", "1")
    return recipe, corpus


def test_librispeech_100_data_dirs(librispeech_100):
    recipe, corpus = librispeech_100
    for name, n in (("train", 4), ("dev", 8), ("dev_clean", 4), ("dev_other", 4),
                    ("test_clean", 4), ("test_other", 4)):
        validate(recipe / "data" / name)
        assert len(read_kaldi_text(recipe / "data" / name / "text")) == n, name
    # train = train-clean-100 only (train-clean-360 exists in the copy but is not asked for)
    text = read_kaldi_text(recipe / "data" / "train" / "text")
    assert set(text.values()) == {"HELLO TRAIN-CLEAN-100 WORLD0", "HELLO TRAIN-CLEAN-100 WORLD1"}
    # speaker = <speaker>-<chapter>, audio = the .flac itself
    assert read_kaldi_text(recipe / "data" / "train" / "utt2spk")["100-7-0001"] == "100-7"
    assert read_kaldi_text(recipe / "data" / "train" / "wav.scp")["100-7-0001"] == str(
        (corpus / "train-clean-100" / "100" / "7" / "100-7-0001.flac").resolve())


def test_librispeech_flac_is_formatted_with_the_right_length(librispeech_100):
    recipe, _ = librispeech_100
    samples = read_kaldi_text(recipe / "dump" / "raw" / "test_clean" / "utt2num_samples")
    assert len(samples) == 4
    for utt, n in samples.items():
        assert int(n) == FS // 2 + 800 * int(utt[-1]), utt  # every sample of the .flac, no more
    wav = read_kaldi_text(recipe / "dump" / "raw" / "test_clean" / "wav.scp")
    assert all(p.endswith(".flac") and Path(p).is_file() for p in wav.values())  # --audio_format flac


def test_librispeech_train_subsets_combine(tmp_path):
    corpus = make_librispeech(tmp_path / "corpus")
    recipe = copy_recipe(tmp_path, "librispeech")
    run(recipe, "--librispeech_dir", str(corpus), "--train_subsets", "train-clean-100,train-clean-360",
        "--stop_stage", "1")
    text = read_kaldi_text(recipe / "data" / "train" / "text")
    assert len(text) == 8
    assert {t.split()[1] for t in text.values()} == {"TRAIN-CLEAN-100", "TRAIN-CLEAN-360"}


def test_librispeech_missing_audio_is_named_and_nothing_is_overwritten(tmp_path):
    corpus = make_librispeech(tmp_path / "corpus", ("train-clean-100",))
    recipe = copy_recipe(tmp_path, "librispeech")
    out = recipe / "data" / "train"
    out.mkdir(parents=True)
    (out / "text").write_text("kept\n")
    missing = corpus / "train-clean-100" / "101" / "7" / "101-7-0001.flac"
    missing.unlink()
    proc = subprocess.run(["python3", "local/prepare_librispeech.py", "--corpus_dir", str(corpus),
                           "train-clean-100", "data/train"], cwd=recipe, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "101-7.trans.txt:2" in proc.stderr and str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (out / "text").read_text() == "kept\n"


def test_librispeech_missing_subset_in_a_local_copy_is_a_clear_error(tmp_path):
    corpus = make_librispeech(tmp_path / "corpus", ("train-clean-100", "dev-clean"))
    recipe = copy_recipe(tmp_path, "librispeech")
    proc = run(recipe, "--librispeech_dir", str(corpus), "--stop_stage", "1", check=False)
    assert proc.returncode != 0
    assert "train-clean-360 is missing from the local copy" in proc.stderr


# ------------------------------------------------------------------ TED-LIUM 3
STM = """\
;; a comment line
{talk} 1 {talk} 0.50 1.50 <o,f0,male> it 's a <unk> talk
{talk} 1 {talk} 1.50 2.25 <o,f0,male> ignore_time_segment_in_scoring
{talk} 1 {talk} 2.25 3.00 <o,f0,male> <unk>
{talk} 1 {talk} 3.00 4.00 <o,f0,male> we 're done
"""


def make_tedlium(root: Path) -> Path:
    """<root>/TEDLIUM_release-3/{data,legacy/dev,legacy/test}/{sph,stm} with one 5 s talk each."""
    rng = np.random.default_rng(1)
    corpus = root / "TEDLIUM_release-3"
    for part, talk in (("data", "AliceTalk_2010"), ("legacy/dev", "BobTalk_2011"),
                       ("legacy/test", "CarolTalk_2012")):
        (corpus / part / "sph").mkdir(parents=True)
        (corpus / part / "stm").mkdir(parents=True)
        soundfile.write(corpus / part / "sph" / f"{talk}.sph", 0.1 * rng.standard_normal(5 * FS), FS,
                        format="NIST", subtype="PCM_16")
        (corpus / part / "stm" / f"{talk}.stm").write_text(STM.format(talk=talk))
    return corpus


@pytest.fixture(scope="module")
def tedlium(tmp_path_factory):
    root = tmp_path_factory.mktemp("ted")
    corpus = make_tedlium(root / "corpus")
    recipe = copy_recipe(root, "tedlium3")
    run(recipe, "--tedlium_dir", str(corpus.parent), "--stop_stage", "4", "--nj", "1")
    return recipe


def test_tedlium_segments_text_and_filtering(tedlium):
    data = tedlium / "data" / "train"
    validate(data)
    text = read_kaldi_text(data / "text")
    # the ignore_time_segment_in_scoring and the <unk>-only segments are dropped
    assert text == {"AliceTalk_2010-0000050-0000150": "it's a talk",
                    "AliceTalk_2010-0000300-0000400": "we're done"}
    segments = {line.split()[0]: line.split()[1:] for line in (data / "segments").read_text().splitlines()}
    assert segments["AliceTalk_2010-0000300-0000400"] == ["AliceTalk_2010", "3.00", "4.00"]
    assert read_kaldi_text(data / "utt2spk")["AliceTalk_2010-0000050-0000150"] == "AliceTalk_2010"
    for name in ("dev", "test"):
        validate(tedlium / "data" / name)


def test_tedlium_sph_segments_are_cut_to_their_times(tedlium):
    samples = read_kaldi_text(tedlium / "dump" / "raw" / "test" / "utt2num_samples")
    assert samples == {"CarolTalk_2012-0000050-0000150": str(FS), "CarolTalk_2012-0000300-0000400": str(FS)}


def test_tedlium_incomplete_copy_is_a_clear_error(tmp_path):
    corpus = make_tedlium(tmp_path / "corpus")
    for f in (corpus / "legacy" / "dev" / "sph").iterdir():
        f.unlink()
    recipe = copy_recipe(tmp_path, "tedlium3")
    proc = run(recipe, "--tedlium_dir", str(corpus), "--stop_stage", "1", check=False)
    assert proc.returncode != 0
    assert "BobTalk_2011.sph is missing" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------ download_and_untar.sh
DOWNLOAD = REPO / "egs2" / "TEMPLATE" / "asr1" / "utils" / "download_and_untar.sh"


def make_archive(tmp_path: Path) -> Path:
    src = tmp_path / "src" / "Corpus"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("hello\n")
    archive = tmp_path / "corpus.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="Corpus")
    return archive


def download(url: str, sha256: str, dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(DOWNLOAD), url, sha256, str(dest)], capture_output=True, text=True)


def test_download_verifies_unpacks_once_and_survives_a_partial_file(tmp_path):
    archive = make_archive(tmp_path)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = tmp_path / "downloads"
    dest.mkdir()
    # an interrupted earlier download: the first half of the archive is already there
    (dest / archive.name).write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    proc = download(archive.as_uri(), sha, dest)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "Corpus" / "a.txt").read_text() == "hello\n"
    assert (dest / archive.name).read_bytes() == archive.read_bytes()  # completed, not appended twice
    (dest / "Corpus" / "a.txt").write_text("changed\n")
    proc = download(archive.as_uri(), sha, dest)
    assert proc.returncode == 0 and "already unpacked" in proc.stdout
    assert (dest / "Corpus" / "a.txt").read_text() == "changed\n"  # not unpacked again


def test_download_with_a_wrong_checksum_is_never_unpacked(tmp_path):
    archive = make_archive(tmp_path)
    dest = tmp_path / "downloads"
    proc = download(archive.as_uri(), "0" * 64, dest)
    assert proc.returncode != 0
    assert "SHA-256 is not" in proc.stdout + proc.stderr
    assert not (dest / "Corpus").exists()
    assert (dest / (archive.name + ".bad")).is_file() and not (dest / archive.name).exists()


def test_download_without_network_names_the_way_out(tmp_path):
    proc = download((tmp_path / "absent.tar.gz").as_uri(), "0" * 64, tmp_path / "downloads")
    assert proc.returncode != 0
    assert "give a local copy instead" in proc.stdout + proc.stderr
