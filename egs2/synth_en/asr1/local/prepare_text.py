#!/usr/bin/env python3
"""Sentences from Jane Austen's six novels (Debian r-cran-janeaustenr), normalised LibriSpeech style.

    local/prepare_text.py --janeaustenr_dir /usr/lib/R/site-library/janeaustenr out_dir

Reads the package's lazy-load database (``data/Rdata.rdx`` index + ``data/Rdata.rdb``) with the
PyPI package ``rdata`` (R itself is not needed) and writes ``out_dir/<novel>.txt``, one sentence
per line: UPPERCASE, apostrophes kept, other punctuation removed, numbers as words, 4-25 words.
"""
import argparse
import re
import sys
import zlib
from pathlib import Path

NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice",
          "sensesensibility")
ABBREVIATIONS = {"MR": "MISTER", "MRS": "MISSUS", "DR": "DOCTOR", "ST": "SAINT"}
HEADING = re.compile(r"^\s*(CHAPTER|VOLUME|BOOK)\b|^\s*[IVXLC]+\.?\s*$|^\s*(THE END|FINIS)\s*$", re.I)


def read_novels(janeaustenr_dir: Path):
    """{novel: [lines]} from the R package's data/Rdata.{rdx,rdb}."""
    import rdata

    index_file = janeaustenr_dir / "data" / "Rdata.rdx"
    db_file = janeaustenr_dir / "data" / "Rdata.rdb"
    for f in (index_file, db_file):
        if not f.is_file():
            sys.exit(f"prepare_text.py: {f} not found: install the Debian package r-cran-janeaustenr "
                     "(tools/install.sh does) or pass --janeaustenr_dir")
    index = rdata.read_rds(index_file)
    db = db_file.read_bytes()
    novels = {}
    for name, (offset, length) in index["variables"].items():
        blob = db[int(offset): int(offset) + int(length)]
        # each entry: 4-byte length, then a zlib stream holding an R serialization
        obj = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(blob[4:])))
        novels[str(name)] = [str(line) for line in obj]
    return novels


def number_words(match: re.Match, engine) -> str:
    return " " + engine.number_to_words(match.group(0), andword="").replace("-", " ").replace(",", "") + " "


def normalise(sentence: str, engine) -> str:
    s = sentence.replace("_", " ").replace("&", " AND ")
    s = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: " " + engine.ordinal(
        engine.number_to_words(m.group(1))).replace("-", " ") + " ", s)
    s = re.sub(r"\d+", lambda m: number_words(m, engine), s)
    s = s.upper().replace("\u2019", "'").replace("`", "'")
    s = re.sub(r"\b(MRS?|DR|ST)\.", lambda m: ABBREVIATIONS[m.group(1)], s)
    s = re.sub(r"[^A-Z' ]+", " ", s)
    s = re.sub(r"(^|\s)'+|'+(\s|$)", " ", s)  # quotes, not apostrophes
    return " ".join(s.split())


def sentences(lines):
    """Split a novel's lines into sentences (paragraphs first; headings dropped)."""
    paragraphs, current = [], []
    for line in lines + [""]:
        if not line.strip() or HEADING.match(line):
            if current:
                paragraphs.append(" ".join(current))
            current = []
        else:
            current.append(line.strip())
    for p in paragraphs:
        # split after . ! ? (and closing quotes) followed by a capital, except after Mr./Mrs./Dr./St.
        for s in re.split(r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)(?<=[.!?])[\"']?\s+(?=[\"']?[A-Z])", p):
            yield s


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--janeaustenr_dir", type=Path, default=Path("/usr/lib/R/site-library/janeaustenr"))
    parser.add_argument("--min_words", type=int, default=4)
    parser.add_argument("--max_words", type=int, default=25)
    args = parser.parse_args()

    import inflect

    engine = inflect.engine()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    novels = read_novels(args.janeaustenr_dir)
    for name in NOVELS:
        kept, seen = [], set()
        for s in sentences(novels[name]):
            text = normalise(s, engine)
            if args.min_words <= len(text.split()) <= args.max_words and text not in seen:
                seen.add(text)
                kept.append(text)
        (args.out_dir / f"{name}.txt").write_text("\n".join(kept) + "\n", encoding="utf-8")
        print(f"{name}: {len(kept)} sentences", file=sys.stderr)


if __name__ == "__main__":
    main()
