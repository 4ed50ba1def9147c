"""A second, small tokenisation of the same text for the exits' CTC heads
(``model_conf.exit_ctc_vocabulary``).

ESPnet gives a model one token list. Early-exit Whisper's is Whisper's 51,864 byte-level BPE
tokens: a CTC head over them costs more per frame than the decoder. With
``exit_ctc_vocabulary: characters`` every exit gets a CTC head over the lower-cased characters
``a-z``, the apostrophe and a word separator (``<space>``) instead, plus the CTC blank at index 0;
the model derives those characters from the token ids it is given (:class:`ExitCTCVocabulary`),
so the data, the token list and the decoder's targets stay as they are.

The text of a token: byte-level BPE (Whisper, GPT-2: ``Ġ`` is a leading space) is decoded with
the ``tokenizers`` library's own ``ByteLevel`` decoder; ESPnet's ``<space>`` and SentencePiece's
``▁`` are spaces; special tokens (``<|endoftext|>``, ``<blank>``, ``<sos/eos>`` ...) have none.
"""
import re
from typing import List, Sequence, Tuple, Union

import torch
from espnet2.text.char_tokenizer import CharTokenizer

from espnet_eexit.errors import EarlyExitConfigError

BLANK = "<blank>"
SPACE = "<space>"
#: ``exit_ctc_vocabulary: characters``: lower-case letters, the apostrophe, the word separator.
CHARACTERS = tuple("abcdefghijklmnopqrstuvwxyz'") + (SPACE,)
_SPECIAL = re.compile(r"^<\|.*\|>$|^<(blank|unk|sos/eos|sos|eos|pad|mask)>$")


def resolve_units(spec: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """The CTC units (without the blank) of ``exit_ctc_vocabulary``.

    Args:
        spec: ``"characters"`` (:data:`CHARACTERS`); another string: each of its characters is a
            unit (a space is the word separator); a list: single characters or ``<space>``.
    """
    if isinstance(spec, str):
        units = CHARACTERS if spec == "characters" else tuple(spec)
    else:
        units = tuple(str(u) for u in spec)
    units = tuple(SPACE if u == " " else u for u in units)
    bad = [u for u in units if len(u) != 1 and u != SPACE]
    if not units or bad or len(set(units)) != len(units):
        raise EarlyExitConfigError(
            f"exit_ctc_vocabulary={spec!r}: give 'characters' or distinct single characters "
            f"(' ' or '<space>' = word separator){'; not single: ' + str(bad) if bad else ''}")
    return units


def token_texts(token_list: Sequence[str]) -> List[str]:
    """The text each token of ``token_list`` stands for ("" for special tokens)."""
    from tokenizers.decoders import ByteLevel

    byte_level = any(t.startswith("Ġ") for t in token_list)
    decoder = ByteLevel()
    texts = []
    for token in token_list:
        if _SPECIAL.match(token):
            texts.append("")
        elif token == SPACE:
            texts.append(" ")
        elif byte_level:
            texts.append(decoder.decode([token]))  # a split multi-byte character: U+FFFD, dropped
        else:
            texts.append(token.replace("▁", " "))
    return texts


class ExitCTCVocabulary:
    """Token ids of the model's token list -> ids of the CTC heads' small vocabulary.

    Args:
        token_list: the model's token list (ESPnet's ``token_list``).
        units: the CTC units (:func:`resolve_units`); the heads' vocabulary is
            ``[<blank>, *units]`` (the blank at index 0, as ESPnet's ``CTC`` loss expects).
    """

    def __init__(self, token_list: Sequence[str], units: Sequence[str]):
        self.units: List[str] = [BLANK, *units]
        self.blank_id = 0
        self._ids = {u: i for i, u in enumerate(self.units)}
        self._texts = token_texts(token_list)
        self._tokenizer = CharTokenizer(space_symbol=SPACE)  # ESPnet's character tokenisation

    def __len__(self) -> int:
        """Output size of a CTC head: the units and the blank."""
        return len(self.units)

    def text(self, token_ids: Sequence[int]) -> str:
        """The text of token ids of the model's token list (negative ids skipped)."""
        return "".join(self._texts[int(i)] for i in token_ids if int(i) >= 0)

    def encode(self, text: str) -> List[int]:
        """Unit ids of a text: lower-cased, units outside the vocabulary dropped, word separators
        collapsed to one between words (none at the ends)."""
        keep_space = SPACE in self._ids
        kept = "".join(c if c in self._ids else " " if c.isspace() else "" for c in text.lower())
        line = " ".join(kept.split()) if keep_space else kept.replace(" ", "")
        return [self._ids[t] for t in self._tokenizer.text2tokens(line)]

    def decode(self, unit_ids: Sequence[int]) -> str:
        """Text of unit ids (the blank skipped, ``<space>`` a space)."""
        units = [self.units[i] for i in map(int, unit_ids) if i != self.blank_id]
        return self._tokenizer.tokens2text(units)

    def targets(
        self, text: torch.Tensor, text_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The CTC heads' targets of a batch of token sequences.

        Args:
            text: (B, L) token ids of the model's token list, padded (any value past a length).
            text_lengths: (B,)
        Returns:
            (B, L') unit ids padded with -1 (L' >= 1) and (B,) their lengths.
        """
        rows = [self.encode(self.text(ids[: int(n)].tolist()))
                for ids, n in zip(text.cpu(), text_lengths.cpu())]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        width = max([1, *lengths.tolist()])
        out = torch.full((len(rows), width), -1, dtype=torch.long)
        for b, r in enumerate(rows):
            out[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out.to(text.device), lengths.to(text.device)
