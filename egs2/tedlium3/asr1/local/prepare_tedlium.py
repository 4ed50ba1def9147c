#!/usr/bin/env python3
"""TED-LIUM release 3 talks (.sph + .stm) -> a Kaldi-style data dir with a segments file.

    local/prepare_tedlium.py <stm_dir> <sph_dir> data/<set>

Each .stm line ``<talk> <channel> <speaker> <start> <end> <label> <words...>`` becomes one
utterance ``<speaker>-<start cs>-<end cs>`` of recording ``<talk>``; wav.scp points at
``<sph_dir>/<talk>.sph`` (uncompressed NIST SPHERE, read directly by soundfile in stage 3).
As in Kaldi's TED-LIUM recipes: segments whose words are ``ignore_time_segment_in_scoring``
are dropped, split contractions are joined (``it 's`` -> ``it's``), and the ``<unk>`` marker
is removed from the words (an end-to-end model has no lexicon to map it to); a segment left
without words is dropped. Problems (a talk without .sph, a malformed line) stop the run with a
message naming the file and line, before anything is written.
"""
import argparse
import re
import sys
from pathlib import Path

IGNORE = "ignore_time_segment_in_scoring"


class CorpusError(Exception):
    pass


def normalise(words: str) -> str:
    words = re.sub(r"\s+'", "'", words)  # Kaldi's join_suffixes: "it 's" -> "it's"
    return " ".join(w for w in words.split() if w != "<unk>")


def read_stm(stm: Path, sph_dir: Path):
    """Yield (utt, talk, sph path, start, end, speaker, words) for the kept segments of one talk."""
    for n, line in enumerate(stm.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith(";;"):
            continue
        fields = line.split(None, 6)
        if len(fields) < 6:
            raise CorpusError(f"{stm}:{n}: expected '<talk> <channel> <speaker> <start> <end> <label> <words>'")
        talk, _, speaker, start, end = fields[:5]
        words = fields[6] if len(fields) == 7 else ""
        try:
            t0, t1 = float(start), float(end)
        except ValueError:
            raise CorpusError(f"{stm}:{n}: start/end '{start}' '{end}' are not numbers") from None
        if t1 <= t0:
            raise CorpusError(f"{stm}:{n}: segment ends ({t1}) before it starts ({t0})")
        if words.strip() == IGNORE:
            continue
        words = normalise(words)
        if not words:
            continue
        sph = sph_dir / f"{talk}.sph"
        if not sph.is_file():
            raise CorpusError(f"{stm}:{n}: audio {sph} is missing")
        utt = f"{speaker}-{round(t0 * 100):07d}-{round(t1 * 100):07d}"
        yield utt, talk, sph.resolve(), t0, t1, speaker, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stm_dir", type=Path)
    parser.add_argument("sph_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    try:
        stms = sorted(args.stm_dir.glob("*.stm"))
        if not stms:
            raise CorpusError(f"{args.stm_dir}: no .stm files (is this a TED-LIUM stm/ folder?)")
        rows = {}
        for stm in stms:
            for row in read_stm(stm, args.sph_dir):
                if row[0] in rows:
                    raise CorpusError(f"{stm}: segment id {row[0]} occurs twice")
                rows[row[0]] = row
    except CorpusError as e:
        sys.exit(f"prepare_tedlium.py: ERROR: {e}")
    if not rows:
        sys.exit(f"prepare_tedlium.py: ERROR: {args.stm_dir}: no segment with words")

    utts = sorted(rows)
    talks = sorted({rows[u][1]: rows[u][2] for u in utts}.items())
    spk2utt = {}
    for u in utts:
        spk2utt.setdefault(rows[u][5], []).append(u)
    files = {
        "wav.scp": [f"{talk} {sph}" for talk, sph in talks],
        "segments": [f"{u} {rows[u][1]} {rows[u][3]:.2f} {rows[u][4]:.2f}" for u in utts],
        "text": [f"{u} {rows[u][6]}" for u in utts],
        "utt2spk": [f"{u} {rows[u][5]}" for u in utts],
        "spk2utt": [f"{s} {' '.join(us)}" for s, us in sorted(spk2utt.items())],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        tmp = args.out_dir / f".{name}.tmp"
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.rename(args.out_dir / name)
    print(f"{args.out_dir}: {len(utts)} segments of {len(talks)} talks", file=sys.stderr)


if __name__ == "__main__":
    main()
