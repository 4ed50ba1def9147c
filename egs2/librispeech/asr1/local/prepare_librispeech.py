#!/usr/bin/env python3
"""LibriSpeech subsets -> one Kaldi-style data dir (wav.scp, text, utt2spk, spk2utt).

    local/prepare_librispeech.py --corpus_dir DIR/LibriSpeech train-clean-100 [more subsets] data/train

Reads the official layout ``<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac`` with one
``<speaker>-<chapter>.trans.txt`` per chapter. The speaker id of an utterance is
``<speaker>-<chapter>`` (as in Kaldi's and ESPnet's LibriSpeech recipes). wav.scp points at the
.flac files (read directly by soundfile in stage 3; no flac binary needed). Every problem (missing
subset, transcript line without audio, duplicate utterance) stops the run with a message naming the
file, before anything is written; the files are written via temporary names, so a failed run never
leaves a half-written data dir.
"""
import argparse
import sys
from pathlib import Path


class CorpusError(Exception):
    pass


def read_subset(subset_dir: Path):
    """Yield (utt, flac path, speaker, transcript) for every utterance of one subset."""
    transcripts = sorted(subset_dir.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise CorpusError(f"{subset_dir}: no <speaker>/<chapter>/*.trans.txt found "
                          "(is this a LibriSpeech subset folder?)")
    for trans in transcripts:
        speaker = trans.name[: -len(".trans.txt")]
        for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt, _, words = line.strip().partition(" ")
            if not words.strip():
                raise CorpusError(f"{trans}:{n}: empty transcript for {utt}")
            flac = trans.parent / f"{utt}.flac"
            if not flac.is_file():
                raise CorpusError(f"{trans}:{n}: audio {flac} is missing")
            yield utt, flac.resolve(), speaker, " ".join(words.split())


def write_data_dir(rows, out_dir: Path) -> None:
    rows = sorted(rows)  # Kaldi wants every file sorted by key (C locale = Python's str order)
    spk2utt = {}
    for utt, _, spk, _ in rows:
        spk2utt.setdefault(spk, []).append(utt)
    files = {
        "wav.scp": [f"{u} {p}" for u, p, _, _ in rows],
        "text": [f"{u} {t}" for u, _, _, t in rows],
        "utt2spk": [f"{u} {s}" for u, _, s, _ in rows],
        "spk2utt": [f"{s} {' '.join(us)}" for s, us in sorted(spk2utt.items())],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.rename(out_dir / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", type=Path, required=True, help="the LibriSpeech/ folder")
    parser.add_argument("subsets", nargs="+", help="subset names (e.g. train-clean-100) then the output dir")
    args = parser.parse_args()
    if len(args.subsets) < 2:
        parser.error("give at least one subset and the output data dir")
    *subsets, out_dir = args.subsets
    try:
        rows, seen = [], {}
        for subset in subsets:
            subset_dir = args.corpus_dir / subset
            if not subset_dir.is_dir():
                raise CorpusError(f"subset {subset} not found: {subset_dir} is not a directory")
            for row in read_subset(subset_dir):
                if row[0] in seen:
                    raise CorpusError(f"utterance {row[0]} occurs twice ({seen[row[0]]} and {subset})")
                seen[row[0]] = subset
                rows.append(row)
        write_data_dir(rows, Path(out_dir))
    except CorpusError as e:
        sys.exit(f"prepare_librispeech.py: ERROR: {e}")
    print(f"{out_dir}: {len(rows)} utterances from {' '.join(subsets)}", file=sys.stderr)


if __name__ == "__main__":
    main()
