"""prepare_scoring: what is scored is said, and what cannot be scored fairly is warned about."""
from espnet_eexit.bin import prepare_scoring
from espnet_eexit.scoring import read_sclite


def test_unreferenced_hypotheses_missing_hypotheses_and_unwritable_references_are_warned(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("u1 CAFE AB\nu2 CAFÉ AB\nu3 AB\n")
    (data / "utt2spk").write_text("u1 s\nu2 s\nu3 s\n")
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>", "<space>", "A", "B", "C", "E", "F", "<sos/eos>"]) + "\n")
    dec = tmp_path / "exit2"
    dec.mkdir()
    (dec / "text").write_text("u1 CAFE AB\nu2 CAFE AB\nu9 AB\n")  # u3 missing, u9 unknown
    prepare_scoring.main(["--data_dir", str(data), "--sclite", "auto", "--token_type", "char",
                          "--token_list", str(tokens), str(dec)])
    err = capsys.readouterr().err
    assert f"1 of 3 references in {data / 'text'} have units outside {tokens} (the model cannot write them), e.g. u2: É" in err
    assert f"1 decoded utterances have no reference in {data / 'text'} and are not scored, e.g. u9" in err
    assert f"{dec / 'text'} lacks 1 of the 3 references (scored as deleted), e.g. u3" in err
    assert f"scoring 3 utterances of {data} in 1 decoding directories" in err
    result = read_sclite(dec / "score_wer" / "result.txt")
    assert (result.sentences, result.units, result.errors) == (3, 5, 2)  # CAFÉ substituted, AB deleted
