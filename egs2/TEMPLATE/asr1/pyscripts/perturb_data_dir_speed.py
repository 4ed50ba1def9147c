#!/usr/bin/env python3
"""Speed-perturbed copy of a Kaldi data dir (for ``--speed_perturb_factors``).

    pyscripts/perturb_data_dir_speed.py --factors "0.9 1.0 1.1" data/train data/train_sp

Each factor f != 1.0 adds a copy of every utterance with id ``sp<f>-<utt>`` (speaker
``sp<f>-<spk>``) whose wav.scp entry is a sox pipe (``sox ... speed f``); stage 3 materialises the
audio. Segments are scaled by 1/f. Factor 1.0 keeps the originals.
"""
import argparse
import shlex
import sys
from pathlib import Path


def read_table(path: Path):
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, _, value = line.strip().partition(" ")
            rows.append((key, value))
    return rows


def perturbed_audio(source: str, factor: float) -> str:
    """A sox pipe applying ``speed factor`` to a wav.scp entry (a path or a "cmd |" pipe)."""
    if source.endswith("|"):
        return f"{source[:-1].strip()} | sox -t wav - -t wav - speed {factor} |"
    return f"sox {shlex.quote(source)} -t wav - speed {factor} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--factors", required=True, help='space-separated, e.g. "0.9 1.0 1.1"')
    args = parser.parse_args()
    try:
        args.factors = [float(f) for f in args.factors.split()]
    except ValueError:
        sys.exit(f"perturb_data_dir_speed.py: --factors must be numbers, got '{args.factors}'")
    if not args.factors or any(f <= 0 for f in args.factors):
        sys.exit(f"perturb_data_dir_speed.py: factors must be > 0, got {args.factors}")

    has_segments = (args.src / "segments").is_file()
    tables = {name: read_table(args.src / name) for name in ("wav.scp", "text", "utt2spk")}
    if has_segments:
        tables["segments"] = read_table(args.src / "segments")
    out = {name: [] for name in tables}
    for factor in args.factors:
        prefix = "" if factor == 1.0 else f"sp{factor:g}-"
        for name, rows in tables.items():
            for key, value in rows:
                if name == "wav.scp" and factor != 1.0:
                    value = perturbed_audio(value, factor)
                elif name == "utt2spk":
                    value = prefix + value
                elif name == "segments":
                    rec, start, end = value.split()[:3]
                    value = f"{prefix}{rec} {float(start) / factor:.3f} {float(end) / factor:.3f}"
                out[name].append((prefix + key, value))

    args.dst.mkdir(parents=True, exist_ok=True)
    for name, rows in out.items():
        rows.sort()
        (args.dst / name).write_text("".join(f"{k} {v}\n" for k, v in rows), encoding="utf-8")
    spk2utt = {}
    for utt, spk in out["utt2spk"]:
        spk2utt.setdefault(spk, []).append(utt)
    (args.dst / "spk2utt").write_text(
        "".join(f"{s} {' '.join(u)}\n" for s, u in sorted(spk2utt.items())), encoding="utf-8")


if __name__ == "__main__":
    main()
