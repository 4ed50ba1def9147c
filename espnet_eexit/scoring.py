"""Scoring with sclite: the one path behind every error rate the project reports.

Stage 13 (``scripts/score_sclite.sh`` -> ``bin/prepare_scoring``), the per-exit tables
(``bin/exit_results``) and the policy sweep (``bin/exit_sweep``) all

1. clean the texts as ESPnet's asr.sh does (``--cleaner`` for references, ``--hyp_cleaner`` for
   hypotheses: ESPnet's text cleaners, or ``upper``),
2. split them with ESPnet's tokenizers (``word``, ``char``, ``bpe``) into sclite ``trn`` files,
3. run ``sclite -i rm -o all`` and read its ``Sum/Avg`` (percentages) and ``Sum`` (counts) lines.
"""
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Mapping, Optional

from espnet2.text.cleaner import TextCleaner

from espnet_eexit.text_norm import librispeech_style

_SCLITE_PLACES = ("/usr/lib/sctk/bin/sclite", "/usr/bin/sclite")
# "|  Sum/Avg  |   300   3912  |  72.0  26.4  1.6  9.7  37.8  87.7  |" (percentages)
_SUM_AVG = re.compile(r"\|\s*Sum/Avg\s*\|\s*(\d+)\s+(\d+)\s*\|\s*([\d.\s]+)\|")
# "|  Sum      |   300   3912  |  2816  1034  62  381  1477  263  |" (counts)
_SUM = re.compile(r"\|\s*Sum\s*\|\s*(\d+)\s+(\d+)\s*\|\s*([\d\s]+)\|")


def upper_case(text: str) -> str:
    """LibriSpeech style: UPPER CASE, numbers as words, apostrophes kept, other punctuation gone
    (:func:`espnet_eexit.text_norm.librispeech_style`)."""
    return librispeech_style(text)


def build_cleaner(name: str) -> Callable[[str], str]:
    """``none``, an ESPnet text cleaner (``tacotron``, ``whisper_en``, ...) or ``upper``."""
    if name == "upper":
        return upper_case
    return TextCleaner(None if name == "none" else name)


def write_trn(path: Path, keys: Iterable[str], texts: Mapping[str, str],
              utt2spk: Optional[Mapping[str, str]], tokenizer, clean: Callable[[str], str]) -> None:
    """One ``tokens (spk-utt)`` line per key; a key missing from ``texts`` is an empty line
    (sclite counts its reference words as deleted). Without ``utt2spk`` the speaker is ``spk``."""
    lines = []
    for key in keys:
        tokens = tokenizer.text2tokens(clean(texts.get(key, "")))
        speaker = utt2spk[key] if utt2spk is not None else "spk"
        lines.append(f"{' '.join(tokens)} ({speaker}-{key})\n")
    path.write_text("".join(lines), encoding="utf-8")


def read_utt2spk(data_dir: Path, keys: Iterable[str]) -> Dict[str, str]:
    """``data_dir/utt2spk`` as ``{utt: speaker}``; ValueError naming the file if it lacks a key."""
    from espnet_eexit.datadir import read_kaldi_text

    utt2spk = read_kaldi_text(Path(data_dir) / "utt2spk")
    missing = [k for k in keys if k not in utt2spk]
    if missing:
        raise ValueError(f"{Path(data_dir) / 'utt2spk'} lacks {len(missing)} utterances, e.g. {missing[0]}")
    return utt2spk


def find_sclite() -> Optional[str]:
    """sclite on the PATH or where Debian's sctk puts it; None if absent."""
    return shutil.which("sclite") or next((p for p in _SCLITE_PLACES if Path(p).is_file()), None)


@dataclass(frozen=True)
class ScliteResult:
    """An sclite report's totals: sentences, reference units, errors (sub + del + ins)."""

    sentences: int
    units: int
    errors: int
    error_rate: float  # %, as sclite prints it (1 decimal)


def parse_sclite(report: str, source: str = "sclite report") -> ScliteResult:
    """Read the totals of an ``sclite -o all`` report."""
    rates, counts = _SUM_AVG.search(report), _SUM.search(report)
    if rates is None or counts is None:
        raise ValueError(f"{source}: no 'Sum/Avg' and 'Sum' lines (is it an sclite -o all report?)")
    errors = int(counts.group(3).split()[4])  # Corr Sub Del Ins Err S.Err
    return ScliteResult(int(counts.group(1)), int(counts.group(2)), errors,
                        float(rates.group(3).split()[4]))


def read_sclite(result_txt: Path) -> ScliteResult:
    """:func:`parse_sclite` of a ``result.txt`` that stage 13 wrote."""
    return parse_sclite(result_txt.read_text(errors="replace"), str(result_txt))


def run_sclite(sclite: str, ref_trn: Path, hyp_trn: Path, result_txt: Optional[Path] = None) -> ScliteResult:
    """Score ``hyp_trn`` against ``ref_trn`` as ESPnet's asr.sh does (``-i rm -o all``)."""
    report = subprocess.run(
        [sclite, "-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn", "-i", "rm", "-o", "all", "stdout"],
        check=True, capture_output=True, text=True,
    ).stdout
    if result_txt is not None:
        result_txt.write_text(report)
    return parse_sclite(report, f"sclite on {hyp_trn}")


class WordScorer:
    """WER of many hypothesis sets against one reference set, through the stage-13 path.

    Args:
        refs: ``{utt: reference text}`` (the data dir's ``text``).
        sclite: the sclite executable.
        workdir: where the trn files are written.
        cleaner / hyp_cleaner: as stage 13's ``--cleaner`` / ``--hyp_cleaner``.
        utt2spk: speakers for the trn files (default: one speaker).
    """

    def __init__(self, refs: Dict[str, str], sclite: str, workdir: Path, cleaner: str = "none",
                 hyp_cleaner: str = "none", utt2spk: Optional[Mapping[str, str]] = None):
        from espnet2.text.build_tokenizer import build_tokenizer

        self.sclite, self.workdir, self.utt2spk = sclite, workdir, utt2spk
        self.keys = sorted(refs)
        self.tokenizer = build_tokenizer("word")
        self.clean_ref, self.clean_hyp = build_cleaner(cleaner), build_cleaner(hyp_cleaner)
        self.ref_words = {k: self.tokenizer.text2tokens(self.clean_ref(refs[k])) for k in self.keys}
        write_trn(workdir / "ref.trn", self.keys, refs, utt2spk, self.tokenizer, self.clean_ref)

    def hyp_words(self, text: str):
        """A hypothesis as the words sclite compares."""
        return self.tokenizer.text2tokens(self.clean_hyp(text))

    def score(self, hyps: Mapping[str, str]) -> ScliteResult:
        hyp_trn = self.workdir / "hyp.trn"
        write_trn(hyp_trn, self.keys, hyps, self.utt2spk, self.tokenizer, self.clean_hyp)
        return run_sclite(self.sclite, self.workdir / "ref.trn", hyp_trn)
