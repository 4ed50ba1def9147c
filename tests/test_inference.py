"""EarlyExitSpeech2Text: ESPnet's Speech2Text decoding from one exit with that exit's own heads."""
import argparse

import pytest
import torch
import yaml

from conftest import write_model_files
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
    return write_model_files(tmp_path_factory.mktemp("aed"), **AED)


@pytest.fixture(scope="module")
def attention_only_files(tmp_path_factory):
    """An AED model without CTC heads (ctc_weight 0), like early-exit Whisper."""
    return write_model_files(tmp_path_factory.mktemp("att"), **{**AED, "model_conf": dict(ctc_weight=0.0)})


def attention_only_decoder(files, **kwargs):
    return EarlyExitSpeech2Text(asr_train_config=files / "config.yaml", asr_model_file=files / "model.pth",
                                ctc_weight=0.0, beam_size=3, nbest=3, maxlenratio=0.3, **kwargs)


def test_without_ctc_heads_the_confidences_are_the_exit_decoders_along_its_hypothesis(attention_only_files):
    """Each exit's recorded confidences, computed here independently from its decoder run alone on
    one utterance (no padding) teacher-forced on the best hypothesis: entropy and max posterior
    over its steps (tokens and <eos>), the N-best posterior from the beam's scores, and agreement
    between consecutive exits' best hypotheses."""
    import math

    s2t = attention_only_decoder(attention_only_files)
    model = s2t.asr_model
    torch.manual_seed(1)
    lengths = torch.tensor([6000, 4000, 3000])
    speech = torch.randn(3, 6000)
    decoded = s2t.decode_all_exits(speech, lengths)
    outs = model.encode_exits(speech, lengths)
    previous = [None] * 3
    for out in outs:
        for b in range(3):
            confidences, results = decoded[out.layer][b]
            yseq = [int(t) for t in results[0][3].yseq]
            assert yseq[0] == model.sos and yseq[-1] == model.eos
            ys_in = torch.tensor([yseq[:-1]])
            n = int(out.lengths[b])
            with torch.no_grad():
                logits, _ = model.decoder_for_exit(out.layer)(out.hidden[b:b + 1, :n], out.lengths[b:b + 1],
                                                              ys_in, torch.tensor([ys_in.size(1)]))
            p = logits[0].softmax(-1).double()
            entropy = float((-(p * p.log()).sum(-1) / math.log(p.size(-1))).mean())
            assert confidences.entropy == pytest.approx(entropy, abs=1e-5)
            assert confidences.max_posterior == pytest.approx(float(p.max(-1).values.mean()), abs=1e-5)
            scores = torch.tensor([float(r[3].score) for r in results], dtype=torch.float64)
            assert len(scores) == 3
            assert confidences.nbest_posterior == pytest.approx(float(scores.softmax(0)[0]), abs=1e-6)
            hyp = tuple(yseq[1:-1])
            count = previous[b][1] + 1 if previous[b] and previous[b][0] == hyp else 1
            assert confidences.agreement == count
            previous[b] = (hyp, count)


def test_a_policy_without_ctc_heads_stops_where_the_decoders_confidence_passes(attention_only_files):
    """entropy policy, threshold between the recorded values: each utterance stops at the first exit
    whose recorded decoder entropy passes, with that exit's decoding, and no decoder above it runs."""
    from espnet_eexit.exit_policy import build_exit_policy

    torch.manual_seed(2)
    lengths = torch.tensor([6000, 5000, 4000, 3000])
    speech = torch.randn(4, 6000)
    recorded = attention_only_decoder(attention_only_files).decode_all_exits(speech, lengths)
    layers = sorted(recorded)
    values = sorted(conf.entropy for conf, _ in recorded[layers[0]])
    threshold = (values[1] + values[2]) / 2  # two utterances stop at the first exit
    expected = [next((k for k in layers if recorded[k][b][0].entropy <= threshold), layers[-1])
                for b in range(4)]
    assert len(set(expected)) > 1  # the test sees utterances stop at different exits
    s2t = attention_only_decoder(attention_only_files,
                                 exit_policy=build_exit_policy("entropy", threshold))
    model = s2t.asr_model
    used = []
    for k in layers:
        model.decoder_for_exit(k).output_layer.register_forward_hook(lambda *_, k=k: used.append(k))
    decided = s2t.decode_batch(speech, lengths)
    assert [d.layer for d, _ in decided] == expected
    for b, (decision, results) in enumerate(decided):
        assert decision.confidence == pytest.approx(recorded[decision.layer][b][0].entropy, abs=1e-6)
        assert results[0][2] == recorded[decision.layer][b][1][0][2]  # the same tokens
    assert set(used) == {k for k in layers if k <= max(expected)}
    assert s2t.layers_computed == sum(expected)
    # each utterance was decoded at every exit it passed: its exit's index + 1
    info = dict(line.split(" ", 1) for line in s2t.exit_summary().splitlines())
    assert float(info["decodings_per_utterance"]) == pytest.approx(
        sum(layers.index(k) + 1 for k in expected) / 4)


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
