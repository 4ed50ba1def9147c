"""Greedy CTC decoding and tokens -> text, as ESPnet's tokenizers do it (without ESPnet)."""
from pathlib import Path
from typing import List, Optional

import numpy as np


def ctc_greedy(log_probs: np.ndarray, blank_id: int) -> List[int]:
    """The best path of one utterance's (T, V) CTC posteriors: frame argmax, repeats merged,
    blanks dropped."""
    best = np.asarray(log_probs).argmax(-1)
    if best.size == 0:
        return []
    keep = np.ones(best.shape, dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    best = best[keep]
    return best[best != blank_id].tolist()


class TokensToText:
    """ESPnet's ``tokens2text`` for ``char`` (``<space>`` = space), ``word`` (joined with spaces)
    and ``bpe`` (sentencepiece) token types."""

    def __init__(self, token_type: str, bpemodel: Optional[Path] = None, space_symbol: str = "<space>"):
        self.token_type = token_type
        self.space_symbol = space_symbol
        self.sp = None
        if token_type == "bpe":
            import sentencepiece

            self.sp = sentencepiece.SentencePieceProcessor()
            self.sp.load(str(bpemodel))
        elif token_type not in ("char", "word"):
            raise ValueError(f"token_type {token_type!r}: expected bpe, char or word")

    def __call__(self, tokens: List[str]) -> str:
        if self.sp is not None:
            return self.sp.decode_pieces(list(tokens))
        if self.token_type == "word":
            return " ".join(tokens)
        return "".join(tokens).replace(self.space_symbol, " ")
