"""Reading Kaldi-style data-dir files (``<key> <value...>`` per line)."""
from pathlib import Path
from typing import Dict


def read_kaldi_text(path: Path) -> Dict[str, str]:
    """``{key: rest of the line}`` of a Kaldi ``text``-like file (empty value when none)."""
    texts = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        key, _, text = line.partition(" ")
        if key:
            texts[key] = text.strip()
    return texts
