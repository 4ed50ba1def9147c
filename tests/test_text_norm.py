"""The one text normalisation of scoring: LibriSpeech style, numbers written as words."""
from espnet_eexit.scoring import build_cleaner
from espnet_eexit.text_norm import librispeech_style, spell_numbers


def test_numbers_ordinals_and_decimals_become_words():
    assert librispeech_style("Dial 500 now") == "DIAL FIVE HUNDRED NOW"
    assert librispeech_style("extension 1234") == "EXTENSION ONE THOUSAND TWO HUNDRED THIRTY FOUR"
    assert librispeech_style("the 1st, 2nd and 23rd") == "THE FIRST SECOND AND TWENTY THIRD"
    assert librispeech_style("a 28.8 modem") == "A TWENTY EIGHT POINT EIGHT MODEM"
    assert librispeech_style("3D audio") == "THREE D AUDIO"
    assert spell_numbers("no digits here") == "no digits here"


def test_punctuation_goes_apostrophes_stay_quotes_go():
    assert librispeech_style("It's 'fine', isn't it? Yes & no.") == "IT'S FINE ISN'T IT YES AND NO"
    assert librispeech_style("Smith\u2019s dog_house") == "SMITH'S DOG HOUSE"
    assert librispeech_style("  ") == ""


def test_the_upper_hyp_cleaner_is_this_normalisation():
    # Whisper writes "500", the references say FIVE HUNDRED: the same words after cleaning
    clean = build_cleaner("upper")
    assert clean("Press 5, then 500.") == "PRESS FIVE THEN FIVE HUNDRED"
    assert clean("Press 5, then 500.") == librispeech_style("press five then five hundred")
