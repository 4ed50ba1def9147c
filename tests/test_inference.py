"""EarlyExitSpeech2Text: ESPnet's Speech2Text decoding from one exit with that exit's own heads."""
import argparse

import pytest
import torch
import yaml

from conftest import SMALL_ENCODER, TOKENS
from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.inference import EarlyExitSpeech2Text
from espnet_eexit.tasks.asr import EarlyExitASRTask

AED = dict(
    decoder="transformer",
    decoder_conf=dict(num_blocks=1, linear_units=32, attention_heads=2),
    model_conf=dict(ctc_weight=0.3),
)


@pytest.fixture(scope="module")
def aed_files(tmp_path_factory):
    """config.yaml + model.pth of an untrained AED early-exit model, as asr_train writes them."""
    out = tmp_path_factory.mktemp("aed")
    args = vars(EarlyExitASRTask.get_parser().parse_args([]))
    args.update(token_list=list(TOKENS), input_size=None, frontend="default",
                frontend_conf=dict(n_fft=128, hop_length=64, win_length=128, n_mels=16),
                specaug=None, normalize="utterance_mvn", encoder="eexit_conformer",
                encoder_conf=dict(SMALL_ENCODER), model="eexit", token_type="char", **AED)
    torch.manual_seed(0)
    model = EarlyExitASRTask.build_model(argparse.Namespace(**args))
    (out / "config.yaml").write_text(yaml.safe_dump(args))
    torch.save(model.state_dict(), out / "model.pth")
    return out


def test_aed_decodes_with_the_exit_decoder_and_ctc_head(aed_files):
    speech = torch.randn(4000)
    for k in (2, 4):
        s2t = EarlyExitSpeech2Text(asr_train_config=aed_files / "config.yaml",
                                   asr_model_file=aed_files / "model.pth", exit_layer=k,
                                   ctc_weight=0.3, beam_size=2, maxlenratio=0.3)
        model = s2t.asr_model
        assert s2t.beam_search.full_scorers["decoder"] is model.decoder_for_exit(k)
        assert s2t.beam_search.nn_dict["decoder"] is model.decoder_for_exit(k)
        ctc_scorer = s2t.beam_search.scorers["ctc"]
        assert ctc_scorer.ctc is model.ctc_for_exit(k)
        used = []
        model.decoder_for_exit(k).output_layer.register_forward_hook(lambda *_: used.append("dec"))
        for other in model.exit_layers:
            if other != k:
                model.decoder_for_exit(other).output_layer.register_forward_hook(
                    lambda *_: used.append("other"))
        results = s2t(speech)
        assert results and "dec" in used and "other" not in used and s2t.layers_computed == k
        assert "exit_layer %d" % k in s2t.exit_summary()


def test_exit_that_is_not_in_the_model_is_a_clear_error(aed_files):
    with pytest.raises(EarlyExitConfigError, match=r"exit layer 3 is not an exit of this model; its exits are \[2, 4, 6\]"):
        EarlyExitSpeech2Text(asr_train_config=aed_files / "config.yaml",
                             asr_model_file=aed_files / "model.pth", exit_layer=3)


def test_aed_policy_decodes_each_utterance_with_its_exits_decoder(aed_files):
    from espnet_eexit.exit_policy import build_exit_policy

    s2t = EarlyExitSpeech2Text(asr_train_config=aed_files / "config.yaml",
                               asr_model_file=aed_files / "model.pth", ctc_weight=0.3, beam_size=2,
                               maxlenratio=0.3, exit_policy=build_exit_policy("entropy", 1.0))
    model = s2t.asr_model
    used = []
    for k in model.exit_layers:
        model.decoder_for_exit(k).output_layer.register_forward_hook(lambda *_, k=k: used.append(k))
    speech = torch.randn(2, 4000)
    decided = s2t.decode_batch(speech, torch.tensor([4000, 3000]))
    assert [d.layer for d, _ in decided] == [2, 2] and set(used) == {2}
    assert s2t.beam_search.full_scorers["decoder"] is model.decoder_for_exit(2)


def test_beam_search_stops_within_the_decoders_positions(tiny_whisper_dir, tmp_path):
    """Whisper's decoder has learned positions (here 32): a weak exit that never emits <eos> on
    a long utterance must end there, not fail (ESPnet's maxlen would be every encoder frame)."""
    from conftest import TINY_WHISPER

    tokens = [f"t{i}" for i in range(TINY_WHISPER["vocab_size"])]
    tokens[3], tokens[1], tokens[4] = "<|notimestamps|>", "<|endoftext|>", "<unk>"
    args = vars(EarlyExitASRTask.get_parser().parse_args([]))
    args.update(token_list=tokens, input_size=1, frontend=None, specaug=None, normalize=None,
                encoder="eexit_whisper", encoder_conf=dict(whisper_model=tiny_whisper_dir),
                decoder="eexit_whisper", decoder_conf=dict(whisper_model=tiny_whisper_dir),
                model="eexit", token_type="char",
                model_conf=dict(ctc_weight=0.0, decoder_per_exit=False,
                                sym_sos="<|notimestamps|>", sym_eos="<|endoftext|>"))
    model = EarlyExitASRTask.build_model(argparse.Namespace(**args))
    with torch.no_grad():  # an exit that never ends: <eos> can never win
        model.decoder.whisper.embed_tokens.weight[1] = -100.0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(args))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    s2t = EarlyExitSpeech2Text(asr_train_config=tmp_path / "config.yaml", asr_model_file=tmp_path / "model.pth",
                               ctc_weight=0.0, beam_size=1, maxlenratio=0.0, exit_layer=2)
    assert s2t.asr_model.decoder.max_output_length == 31
    results = s2t(torch.randn(16000 * 4) * 0.1)  # 200 encoder frames
    yseq = results[0][3].yseq
    assert len(yseq) == 31 + 2 and int(yseq[-1]) == 1  # sos, 31 tokens, the <eos> ESPnet adds
    assert s2t.maxlenratio == 0.0  # the cap was for that search only


def test_fixed_exit_after_decoding_every_exit_scores_with_its_own_heads(aed_files):
    """decode_all_exits points the scorers at each exit in turn; a fixed-exit call afterwards
    must score exit 2's states with exit 2's decoder and CTC head again."""
    s2t = EarlyExitSpeech2Text(asr_train_config=aed_files / "config.yaml",
                               asr_model_file=aed_files / "model.pth", exit_layer=2,
                               ctc_weight=0.3, beam_size=2, maxlenratio=0.3)
    model = s2t.asr_model
    speech = torch.randn(4000)
    s2t.decode_all_exits(speech[None], torch.tensor([4000]))
    used = []
    for k in model.exit_layers:
        model.decoder_for_exit(k).output_layer.register_forward_hook(lambda *_, k=k: used.append(k))
    s2t(speech)
    assert set(used) == {2}
    assert s2t.beam_search.full_scorers["decoder"] is model.decoder_for_exit(2)
    assert s2t.beam_search.scorers["ctc"].ctc is model.ctc_for_exit(2)
