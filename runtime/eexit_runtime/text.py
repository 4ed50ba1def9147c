"""Tokens -> text, as ESPnet's tokenizers do it (without ESPnet)."""
from pathlib import Path
from typing import List, Optional


class TokensToText:
    """ESPnet's ``tokens2text`` for ``char`` (``<space>`` = space), ``word`` (joined with spaces),
    ``bpe`` (sentencepiece; ``bpemodel`` = the .model file) and ``hugging_face`` (the ``tokenizers``
    library; ``bpemodel`` = ``tokenizer.json``: special tokens skipped, newlines as spaces) types."""

    def __init__(self, token_type: str, bpemodel: Optional[Path] = None, space_symbol: str = "<space>"):
        self.token_type = token_type
        self.space_symbol = space_symbol
        self.sp = None
        if token_type == "bpe":
            import sentencepiece

            self.sp = sentencepiece.SentencePieceProcessor()
            self.sp.load(str(bpemodel))
        elif token_type == "hugging_face":
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(bpemodel))
        elif token_type not in ("char", "word"):
            raise ValueError(f"token_type {token_type!r}: expected bpe, char, word or hugging_face")

    def __call__(self, tokens: List[str]) -> str:
        if self.token_type == "hugging_face":
            ids = [self.tokenizer.token_to_id(t) for t in tokens]
            return self.tokenizer.decode(ids, skip_special_tokens=True).replace("\n", " ").strip()
        if self.sp is not None:
            return self.sp.decode_pieces(list(tokens))
        if self.token_type == "word":
            return " ".join(tokens)
        return "".join(tokens).replace(self.space_symbol, " ")
