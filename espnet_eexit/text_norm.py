"""LibriSpeech-style text: the one normalisation of references and hypotheses for scoring.

UPPER CASE, numbers written as words, apostrophes kept, every other punctuation mark gone::

    >>> librispeech_style("Dial 500, or press 1st key; it's 28.8 kbit/s!")
    "DIAL FIVE HUNDRED OR PRESS FIRST KEY IT'S TWENTY EIGHT POINT EIGHT KBIT S"

Every system is scored through it alike (``--hyp_cleaner upper`` of stage 13, the sweep,
``compare_faster_whisper``, the real-speech test set's references), so that Whisper writing "500"
meets a reference "FIVE HUNDRED". How the speaker said a number ("five oh oh") is not known to
it: one fixed spelling for every system, errors included.
"""
import re
from functools import lru_cache

_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_NUMBER = re.compile(r"\d+")


@lru_cache(maxsize=1)
def _inflect():
    import inflect  # ESPnet's text front end depends on it too

    return inflect.engine()


def _words(number: str) -> str:
    """'1234' -> 'one thousand two hundred thirty four' (no 'and', no commas or hyphens)."""
    text = _inflect().number_to_words(number, andword="")
    return " " + text.replace("-", " ").replace(",", "") + " "


def spell_numbers(text: str) -> str:
    """Digits as words: ordinals (``1st`` -> first), decimals (``28.8`` -> twenty eight point
    eight), then every other run of digits as a number (``500`` -> five hundred)."""
    engine = _inflect()
    text = _ORDINAL.sub(lambda m: " " + engine.ordinal(_words(m.group(1)).strip()) + " ", text)
    text = _DECIMAL.sub(lambda m: _words(m.group(1)) + " point "
                        + " ".join(_words(d).strip() for d in m.group(2)), text)
    return _NUMBER.sub(lambda m: _words(m.group(0)), text)


def librispeech_style(text: str) -> str:
    """UPPER CASE, numbers as words, ``&`` as AND, apostrophes kept (quotes dropped), no other
    punctuation, single spaces."""
    text = spell_numbers(text.replace("&", " and ").replace("\u2019", "'").replace("`", "'"))
    text = re.sub(r"[^\w\s']|_", " ", text.upper())
    text = re.sub(r"(^|\s)'+|'+(?=\s|$)", " ", text)  # quotation marks, not apostrophes
    return " ".join(text.split())
