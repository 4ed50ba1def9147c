"""Exit policies: the confidence maths, stopping behaviour, batch drop-out and bad values."""
import itertools
import logging
import math

import pytest
import torch

from conftest import write_model_files
from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.exit_policy import (
    ExitPoint,
    build_exit_policy,
    ctc_prefix_beam_search,
    mean_max_posterior,
    mean_normalised_entropy,
    nbest_posterior,
)
from espnet_eexit.inference import EarlyExitSpeech2Text


# ---------------------------------------------------------------------------- confidence maths
def test_entropy_is_one_for_uniform_and_zero_for_one_hot_frames():
    vocab, frames = 9, 5
    uniform = torch.full((1, frames, vocab), -math.log(vocab))
    logits = torch.full((1, frames, vocab), -1e4)
    logits[..., 3] = 0.0
    one_hot = logits.log_softmax(-1)
    lengths = torch.tensor([frames])
    assert mean_normalised_entropy(uniform, lengths).item() == pytest.approx(1.0, abs=1e-6)
    assert mean_normalised_entropy(one_hot, lengths).item() == pytest.approx(0.0, abs=1e-6)
    assert mean_max_posterior(uniform, lengths).item() == pytest.approx(1 / vocab, abs=1e-6)
    assert mean_max_posterior(one_hot, lengths).item() == pytest.approx(1.0, abs=1e-6)


def test_padded_frames_do_not_count():
    vocab = 4
    x = torch.full((2, 6, vocab), -math.log(vocab))  # uniform everywhere ...
    x[0, :3] = torch.tensor([0.0, -1e4, -1e4, -1e4]).log_softmax(-1)  # ... but utt 0's 3 valid frames one-hot
    values = mean_normalised_entropy(x, torch.tensor([3, 6]))
    assert values[0].item() == pytest.approx(0.0, abs=1e-6)
    assert values[1].item() == pytest.approx(1.0, abs=1e-6)


def test_nbest_posterior_of_a_known_score_list():
    assert nbest_posterior([math.log(0.3), math.log(0.1), math.log(0.1)]) == pytest.approx(0.6)
    assert nbest_posterior([0.0]) == pytest.approx(1.0)
    assert nbest_posterior([-1.0, -1.0]) == pytest.approx(0.5)


def _brute_force_ctc(log_probs: torch.Tensor, blank: int = 0):
    """Every label sequence's probability by summing all V^T alignment paths."""
    probs = log_probs.exp().double()
    totals = {}
    for path in itertools.product(range(probs.size(1)), repeat=probs.size(0)):
        p = float(torch.prod(probs[torch.arange(len(path)), torch.tensor(path)]))
        labels, prev = [], None
        for s in path:
            if s != prev and s != blank:
                labels.append(s)
            prev = s
        totals[tuple(labels)] = totals.get(tuple(labels), 0.0) + p
    return sorted(totals.items(), key=lambda kv: kv[1], reverse=True)


def test_prefix_beam_search_equals_summing_every_alignment():
    torch.manual_seed(3)
    log_probs = torch.randn(5, 3, dtype=torch.float64).mul(2).log_softmax(-1)
    exact = _brute_force_ctc(log_probs)
    found = ctc_prefix_beam_search(log_probs, beam=len(exact), token_beam=3, min_label_log_prob=float("-inf"))
    assert [labels for labels, _ in found[:6]] == [labels for labels, _ in exact[:6]]
    for (_, score), (_, p) in zip(found[:6], exact[:6]):
        assert math.exp(score) == pytest.approx(p, rel=1e-9)
    # a repeated label needs a blank between its copies: (1, 1) exists only via 1 <b> 1
    assert dict(found)[(1, 1)] == pytest.approx(math.log(dict(exact)[(1, 1)]), rel=1e-9)


# ---------------------------------------------------------------------------- bad values
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="entropy", threshold=1.5), r"--exit_threshold 1.5: out of range for policy 'entropy' \(expected a value in \[0, 1\]\)"),
        (dict(name="max_posterior", threshold=-0.1), r"out of range for policy 'max_posterior'"),
        (dict(name="nbest_posterior"), r"policy 'nbest_posterior' needs --exit_threshold"),
        (dict(name="nbest_posterior", threshold=0.9, nbest=1), r"--exit_nbest 1: must be an integer >= 2"),
        (dict(name="budget"), r"needs exactly one of --exit_threshold .* or --exit_budget_ms"),
        (dict(name="budget", threshold=0.5, budget_ms=10.0), r"needs exactly one of"),
        (dict(name="budget", threshold=0.0), r"out of range for policy 'budget'"),
        (dict(name="budget", budget_ms=-3.0), r"--exit_budget_ms -3.0: must be > 0"),
        (dict(name="fixed", exit_layer=3), r"--exit_layer 3 is not an exit of this model; its exits are \[2, 4, 6\]"),
        (dict(name="fixed", exit_layer=2, threshold=0.5), r"fixed takes --exit_layer, not --exit_threshold"),
        (dict(name="entropy", threshold=0.5, exit_layer=2), r"--exit_layer is only for --exit_policy fixed"),
        (dict(name="smallest"), r"unknown exit policy 'smallest'; choose one of \['agreement', 'budget', 'entropy', 'fixed', 'learned', 'max_posterior', 'nbest_posterior'\]"),
    ],
)
def test_bad_policy_values_are_clear_errors(kwargs, message):
    with pytest.raises(EarlyExitConfigError, match=message):
        build_exit_policy(**kwargs).bind([2, 4, 6], 6)


def _point(layer, next_layer, log_probs, elapsed_s=0.0):
    return ExitPoint(layer, next_layer, 6, log_probs, torch.full((log_probs.size(0),), log_probs.size(1)), elapsed_s)


def test_threshold_edge_cases():
    torch.manual_seed(0)
    lp = torch.randn(3, 7, 9).log_softmax(-1)  # neither uniform nor one-hot
    stop, value = build_exit_policy("entropy", 1.0).bind([2, 4, 6], 6).decide(_point(2, 4, lp))
    assert stop.all() and ((value > 0) & (value < 1)).all()
    assert not build_exit_policy("entropy", 0.0).decide(_point(2, 4, lp))[0].any()
    assert build_exit_policy("max_posterior", 0.0).decide(_point(2, 4, lp))[0].all()
    assert not build_exit_policy("max_posterior", 1.0).decide(_point(2, 4, lp))[0].any()
    # a threshold equal to the value stops (<= / >=)
    assert build_exit_policy("entropy", float(value[0])).decide(_point(2, 4, lp))[0][0]


def test_budget_picks_the_deepest_exit_that_fits():
    lp = torch.zeros(1, 3, 5)

    def stops_at(policy):
        for layer, nxt in ((2, 4), (4, 6), (6, None)):
            if policy.decide(_point(layer, nxt, lp, elapsed_s=0.001 * layer))[0].item():
                return layer

    assert stops_at(build_exit_policy("budget", 1.0).bind([2, 4, 6], 6)) == 6
    assert stops_at(build_exit_policy("budget", 0.7).bind([2, 4, 6], 6)) == 4
    assert stops_at(build_exit_policy("budget", 0.5).bind([2, 4, 6], 6)) == 2
    assert stops_at(build_exit_policy("budget", 0.1).bind([2, 4, 6], 6)) == 2  # least possible
    # 1 ms per layer measured: 4.5 ms fits 4 layers, not 6
    assert stops_at(build_exit_policy("budget", budget_ms=4.5).bind([2, 4, 6], 6)) == 4
    assert stops_at(build_exit_policy("budget", budget_ms=100.0).bind([2, 4, 6], 6)) == 6


# ---------------------------------------------------------------------------- on a real model
def _model_files(out, encoder):
    """config.yaml + model.pth of an untrained CTC early-exit model (exits 2, 4, 6)."""
    return write_model_files(out, encoder=encoder)


@pytest.fixture(scope="module")
def ctc_files(tmp_path_factory):
    return _model_files(tmp_path_factory.mktemp("conformer"), "eexit_conformer")


@pytest.fixture(scope="module")
def transformer_files(tmp_path_factory):
    return _model_files(tmp_path_factory.mktemp("transformer"), "eexit_transformer")


def _speech2text(files, **kwargs):
    return EarlyExitSpeech2Text(asr_train_config=files / "config.yaml",
                                asr_model_file=files / "model.pth", beam_size=2,
                                ctc_weight=1.0, **kwargs)


def _waves(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([4000 - 700 * i for i in range(n)])
    speech = torch.randn(n, int(lengths.max()), generator=g) * torch.linspace(0.2, 3.0, n)[:, None]
    for i, length in enumerate(lengths.tolist()):
        speech[i, length:] = 0.0
    return speech, lengths


def _layer_calls(s2t):
    calls = []
    for i, layer in enumerate(s2t.asr_model.encoder.encoders, 1):
        layer.register_forward_hook(
            lambda m, inp, out, i=i: calls.append((i, (inp[0][0] if isinstance(inp[0], tuple) else inp[0]).size(0))))
    return calls


def test_easy_utterances_stop_early_and_the_layers_above_never_run(ctc_files):
    speech, lengths = _waves(2)
    probe = _speech2text(ctc_files)
    conf = probe.decode_all_exits(speech, lengths)[2]
    entropies = [c.entropy for c, _ in conf]
    assert entropies[0] != entropies[1]
    easy = min(range(2), key=lambda i: entropies[i])
    threshold = sum(entropies) / 2  # between the two: only the easier one stops at exit 2
    s2t = _speech2text(ctc_files, exit_policy=build_exit_policy("entropy", threshold))
    calls = _layer_calls(s2t)
    decided = s2t.decode_batch(speech, lengths)
    assert [d.layer for d, _ in decided] == [2 if i == easy else 6 for i in range(2)]
    # layers 1-2 ran on both utterances, layers 3-6 only on the hard one
    assert calls == [(1, 2), (2, 2), (3, 1), (4, 1), (5, 1), (6, 1)]
    assert decided[easy][0].confidence == pytest.approx(entropies[easy], abs=1e-5)
    info = s2t.exit_summary()
    assert "exit_counts 2:1 6:1" in info and "layers_computed_per_utterance 4.000" in info


def test_utterances_that_exit_drop_out_without_changing_the_others(transformer_files):
    """Policy decoding of a batch (utterances leave as they exit) == the same batch run to the top.

    The reference is the whole batch, not one utterance at a time: ESPnet's conv2d subsampling
    gives a padded utterance one more frame than the same utterance alone, so ESPnet's own
    batched encoder already differs from one-by-one. A Transformer backbone, because ESPnet's
    Conformer convolution module reads padded frames (its output depends on the padding; with
    a Conformer the kept utterances see less padding after the cut: see tests/encoder).
    """
    ctc_files = transformer_files
    speech, lengths = _waves(3, seed=1)
    s2t = _speech2text(ctc_files)
    every = s2t.decode_all_exits(speech, lengths)
    values = sorted(c.max_posterior for c, _ in every[2])
    policy = build_exit_policy("max_posterior", (values[0] + values[1]) / 2)
    batched = _speech2text(ctc_files, exit_policy=policy).decode_batch(speech, lengths)
    layers = [d.layer for d, _ in batched]
    assert layers.count(2) == 2 and len(set(layers)) == 2, layers  # the batch really split
    reference = {out.layer: out for out in s2t.asr_model.encode_exits(speech, lengths)}
    for i, (decision, results) in enumerate(batched):
        ref = reference[decision.layer]
        n = int(ref.lengths[i])
        assert decision.hidden.shape[0] == n
        assert torch.allclose(decision.hidden, ref.hidden[i, :n], atol=1e-5)
        assert results[0][0] == every[decision.layer][i][1][0][0]  # same text


def test_decoding_uses_the_chosen_exits_ctc_head(ctc_files):
    speech, lengths = _waves(1)
    s2t = _speech2text(ctc_files, exit_policy=build_exit_policy("entropy", 1.0))
    used = []
    for k in (2, 4, 6):
        s2t.asr_model.ctc_for_exit(k).ctc_lo.register_forward_hook(lambda *_, k=k: used.append(k))
    (decision, _), = s2t.decode_batch(speech, lengths)
    assert decision.layer == 2 and set(used) == {2}
    assert s2t.beam_search.scorers["ctc"].ctc is s2t.asr_model.ctc_for_exit(2)


def test_all_exits_in_one_pass_match_fixed_exit_decoding(ctc_files):
    speech, lengths = _waves(2, seed=2)
    one_pass = _speech2text(ctc_files)
    every = [one_pass.decode_all_exits(speech[i:i + 1, : lengths[i]], lengths[i:i + 1])
             for i in range(2)]
    assert all(sorted(e) == [2, 4, 6] for e in every)
    texts = set()
    for k in (2, 4, 6):
        fixed = _speech2text(ctc_files, exit_layer=k)
        for i in range(2):
            text = fixed(speech[i, : lengths[i]])[0][0]
            (conf, results), = every[i][k]
            assert text == results[0][0]
            texts.add(text)
            assert 0 <= conf.entropy <= 1 and 0 < conf.max_posterior <= 1 and 0 < conf.nbest_posterior <= 1
    assert len(texts) > 1  # the exits really decode differently


def test_ctc_greedy_is_the_best_path_of_the_exits_own_head(ctc_files):
    speech, lengths = _waves(2, seed=5)
    one_pass = _speech2text(ctc_files, ctc_greedy=True)
    every = [one_pass.decode_all_exits(speech[i:i + 1, : lengths[i]], lengths[i:i + 1])
             for i in range(2)]
    for k in (2, 4, 6):
        fixed = _speech2text(ctc_files, exit_layer=k, ctc_greedy=True)
        logits = {}
        for j in (2, 4, 6):
            fixed.asr_model.ctc_for_exit(j).ctc_lo.register_forward_hook(
                lambda _m, _i, out, j=j: logits.setdefault(j, out))
        for i in range(2):
            logits.clear()
            (text, token, token_int, hyp), = fixed(speech[i, : lengths[i]])
            assert list(logits) == [k] and fixed.layers_computed == k * (i + 1)
            # the best path, computed here from the head's own output: argmax, merge, drop blanks
            path = torch.unique_consecutive(logits[k][0].argmax(-1)).tolist()
            assert token_int == [t for t in path if t != 0] and len(token_int) > 0
            assert text == "".join(token).replace("<space>", " ")
            assert hyp.yseq.tolist() == [fixed.asr_model.sos, *token_int, fixed.asr_model.eos]
            assert float(hyp.score) == pytest.approx(
                float(logits[k][0].log_softmax(-1).max(-1).values.sum()), rel=1e-5)
            (_, results), = every[i][k]
            assert results[0][2] == token_int


def test_ctc_greedy_with_attention_or_lm_scores_is_a_clear_error(ctc_files):
    with pytest.raises(EarlyExitConfigError, match=r"ctc_greedy decodes with the CTC head alone: "
                       r"it needs ctc_weight 1.0 and no LM \(got ctc_weight 0.3\)"):
        EarlyExitSpeech2Text(asr_train_config=ctc_files / "config.yaml",
                             asr_model_file=ctc_files / "model.pth", ctc_weight=0.3,
                             ctc_greedy=True)


# ---------------------------------------------------------------------------- the command line
def _wav_dir(tmp_path, n=3):
    import soundfile

    speech, lengths = _waves(n, seed=4)
    lines = []
    for i in range(n):
        path = tmp_path / f"utt{i}.wav"
        soundfile.write(path, (speech[i, : lengths[i]] * 0.1).numpy(), 16000, subtype="FLOAT")
        lines.append(f"utt{i} {path}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    return tmp_path / "wav.scp"


def _cli(files, wav_scp, out, *extra):
    from espnet_eexit.bin.asr_inference import main

    main(["--asr_train_config", str(files / "config.yaml"), "--asr_model_file", str(files / "model.pth"),
          "--data_path_and_name_and_type", f"{wav_scp},speech,sound", "--output_dir", str(out),
          "--beam_size", "2", "--ctc_weight", "1.0", *extra])


def test_cli_policy_run_writes_exit_file_and_measured_summary(ctc_files, tmp_path):
    wav_scp = _wav_dir(tmp_path)
    out = tmp_path / "policy"
    _cli(ctc_files, wav_scp, out, "--exit_policy", "entropy", "--exit_threshold", "1.0", "--batch_size", "2")
    keys = [line.split()[0] for line in (out / "1best_recog" / "token").read_text().splitlines()]
    assert keys == ["utt0", "utt1", "utt2"]
    exits = [line.split() for line in (out / "exit").read_text().splitlines()]
    assert [e[1] for e in exits] == ["2", "2", "2"] and all(0 < float(e[2]) <= 1 for e in exits)
    info = dict(line.split(" ", 1) for line in (out / "exit_info").read_text().splitlines())
    assert info["exit_policy"] == "entropy threshold=1" and info["layers_computed_per_utterance"] == "2.000"
    assert info["encoder_layers_saved"] == "0.667" and info["exit_counts"] == "2:3"


def test_cli_policy_run_with_batches_uses_espnets_batch_beam_search(ctc_files, tmp_path, caplog):
    """The loader batches the encoder; the beam search still runs per utterance, as ESPnet's
    vectorised BatchBeamSearch (ESPnet keeps its slow BeamSearch for any batch_size > 1)."""
    wav_scp = _wav_dir(tmp_path)
    with caplog.at_level(logging.INFO):
        _cli(ctc_files, wav_scp, tmp_path / "policy", "--exit_policy", "entropy",
             "--exit_threshold", "1.0", "--batch_size", "3")
    assert "BatchBeamSearch implementation is selected." in caplog.text


@pytest.mark.parametrize("greedy", ["false", "true"])
def test_cli_all_exits_writes_every_exit_and_confidences(ctc_files, tmp_path, greedy):
    wav_scp = _wav_dir(tmp_path)
    out = tmp_path / "all"
    _cli(ctc_files, wav_scp, out, "--all_exits", "true", "--batch_size", "3", "--ctc_greedy", greedy)
    previous = None
    for k in (2, 4, 6):
        conf = [line.split() for line in (out / f"exit{k}" / "confidence").read_text().splitlines()]
        assert [c[0] for c in conf] == ["utt0", "utt1", "utt2"] and all(len(c) == 5 for c in conf)
        tokens = (out / f"exit{k}" / "1best_recog" / "token").read_text().splitlines()
        assert [t.split()[0] for t in tokens] == ["utt0", "utt1", "utt2"]
        agreement = [int(float(c[4])) for c in conf]
        if greedy == "true":  # the tokens are the greedy hypotheses the agreement counts compare
            expected = [1] * 3 if previous is None else [
                n + 1 if t.split()[1:] == pt.split()[1:] else 1 for t, (pt, n) in zip(tokens, previous)]
            assert agreement == expected
        previous = list(zip(tokens, agreement))


def _bad_audio_list(tmp_path):
    """wav.scp: 3 good files around a missing, an empty, a header-only and a non-audio one."""
    import numpy as np
    import soundfile

    good = _wav_dir(tmp_path)
    lines = good.read_text().splitlines()
    (tmp_path / "empty.wav").write_bytes(b"")
    soundfile.write(tmp_path / "header.wav", np.zeros(0), 16000)
    (tmp_path / "text.wav").write_text("not audio " * 20)
    bad = {"bad0": tmp_path / "missing.wav", "bad1": tmp_path / "empty.wav",
           "bad2": tmp_path / "header.wav", "bad3": tmp_path / "text.wav"}
    scp = tmp_path / "mixed.scp"
    scp.write_text("\n".join([lines[0], *(f"{k} {v}" for k, v in bad.items()), *lines[1:]]) + "\n")
    return scp


@pytest.mark.parametrize("mode", [[], ["--exit_policy", "entropy", "--exit_threshold", "1.0"], ["--all_exits", "true"]])
def test_bad_audio_files_get_one_line_each_and_the_rest_is_decoded(ctc_files, tmp_path, caplog, mode):
    scp = _bad_audio_list(tmp_path)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        _cli(ctc_files, scp, out, *mode)
    for key, why in (("bad0", "missing.wav: no such file"), ("bad1", "empty.wav: empty file (0 bytes)"),
                     ("bad2", "header.wav: no samples (a header only)"),
                     ("bad3", "text.wav: not an audio file soundfile can read")):
        assert f"utterance {key} cannot be decoded" in caplog.text and why in caplog.text
    every = ["bad0", "bad1", "bad2", "bad3", "utt0", "utt1", "utt2"]
    for d in ([out / f"exit{k}" for k in (2, 4, 6)] if mode[:1] == ["--all_exits"] else [out]):
        tokens = dict(line.split(" ", 1) for line in (d / "1best_recog" / "token").read_text().splitlines())
        assert sorted(tokens) == every
        assert all(tokens[k] == "<space>" for k in every[:4]) and all(tokens[k] != "<space>" for k in every[4:])
        assert sorted(line.split()[0] for line in (d / "bad_audio").read_text().splitlines()) == every[:4]


def test_bad_audio_error_mode_and_other_sample_rates_stop_before_decoding(ctc_files, tmp_path, capsys):
    import soundfile

    scp = _bad_audio_list(tmp_path)
    with pytest.raises(SystemExit) as err:
        _cli(ctc_files, scp, tmp_path / "e", "--bad_audio", "error")
    assert err.value.code == 2
    assert "4 utterance(s) cannot be decoded, e.g. bad0:" in capsys.readouterr().err
    slow = tmp_path / "slow.wav"
    soundfile.write(slow, [0.0] * 4000, 8000)
    (tmp_path / "rate.scp").write_text(f"utt {slow}\n")
    with pytest.raises(SystemExit):
        _cli(ctc_files, tmp_path / "rate.scp", tmp_path / "r")
    stderr = capsys.readouterr().err
    assert "utterance utt" in stderr and "is 8000 Hz but the model was trained on 16000 Hz audio" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "r" / "1best_recog").exists()


@pytest.mark.parametrize("extra, message", [
    (["--exit_policy", "median"], "unknown exit policy 'median'"),
    (["--exit_threshold", "0.5"], "--exit_threshold/--exit_budget_ms need --exit_policy"),
    (["--exit_policy", "entropy", "--exit_threshold", "2"], "--exit_threshold 2.0: out of range"),
    (["--all_exits", "true", "--exit_layer", "2"], "--all_exits decodes every exit: it takes no --exit_layer"),
    (["--ctc_greedy", "true", "--ctc_weight", "0.5"], "ctc_greedy decodes with the CTC head alone"),
])
def test_cli_bad_policy_options_are_one_line_errors(ctc_files, tmp_path, capsys, extra, message):
    wav_scp = _wav_dir(tmp_path, n=1)
    with pytest.raises(SystemExit) as err:
        _cli(ctc_files, wav_scp, tmp_path / "bad", *extra)
    assert err.value.code == 2
    stderr = capsys.readouterr().err
    assert message in stderr and "Traceback" not in stderr


def test_budget_projects_the_next_exit_from_the_layers_time_alone():
    """The front end is paid once: the time per layer excludes it (here 10 ms front end, then
    1 ms per layer: 12 ms reach layer 2, 14 ms layer 4; counting the front end as layer time
    would project layer 4 at 22 ms and stop too early)."""
    lp = torch.zeros(1, 3, 5)
    point = ExitPoint(2, 4, 6, lp, torch.tensor([3]), elapsed_s=0.012, front_end_s=0.010)
    assert not build_exit_policy("budget", budget_ms=14.5).bind([2, 4, 6], 6).decide(point)[0].item()
    assert build_exit_policy("budget", budget_ms=13.5).bind([2, 4, 6], 6).decide(point)[0].item()


def test_nbest_posterior_uses_the_models_blank():
    """Frames sure of label 2 with a second guess: with blank 2 the best hypothesis is empty, with
    blank 0 it is '2' — the policy must take the blank the model was trained with."""
    from espnet_eexit.exit_policy import ctc_prefix_beam_search, nbest_posterior

    probs = torch.full((1, 6, 4), 0.02)
    probs[0, :, 2] = 0.94
    lp = probs.log()
    values = []
    for blank in (0, 2):
        point = ExitPoint(2, 4, 6, lp, torch.tensor([6]), blank_id=blank)
        _, value = build_exit_policy("nbest_posterior", 0.5).bind([2, 4, 6], 6).decide(point)
        hyps = ctc_prefix_beam_search(lp[0], 8, blank=blank)
        assert hyps[0][0] == (() if blank == 2 else (2,))
        assert value.item() == pytest.approx(nbest_posterior([s for _, s in hyps]))
        values.append(value.item())
    assert values[0] != pytest.approx(values[1])


def test_agreement_counts_exits_in_a_row_with_the_same_greedy_hypothesis():
    """Two utterances, exits 2/4/6, greedy hypotheses: utt0 'ab', 'ab', 'b' and utt1 'ab', 'b', 'b'.
    With patience 2, utt0 stops at exit 4 (two in a row), leaves the batch, and utt1 (now alone at
    batch position 0, utterance 1) stops at exit 6 with its own count, not utt0's."""
    import numpy as np

    from espnet_eexit.exit_policy import AgreementExit, ctc_greedy_ids

    def frames(labels):  # one-hot-ish (T, V=4) log-posteriors, blank 0
        lp = np.full((len(labels), 4), -9.0)
        lp[np.arange(len(labels)), labels] = 0.0
        return lp

    ab, b = frames([1, 1, 0, 2]), frames([0, 2, 2, 0])
    assert ctc_greedy_ids(ab, 0) == (1, 2) and ctc_greedy_ids(b, 0) == (2,)
    policy = AgreementExit(2).bind([2, 4, 6], 6)
    lengths = np.array([4, 4])
    stop, value = policy.decide(ExitPoint(2, 4, 6, np.stack([ab, ab]), lengths))
    assert stop.tolist() == [False, False] and value.tolist() == [1, 1]
    stop, value = policy.decide(ExitPoint(4, 6, 6, np.stack([ab, b]), lengths))
    assert stop.tolist() == [True, False] and value.tolist() == [2, 1]
    stop, value = policy.decide(ExitPoint(6, None, 6, b[None], lengths[:1], utterances=np.array([1])))
    assert stop.tolist() == [True] and value.tolist() == [2]
    # the next batch starts afresh at the first exit
    stop, value = policy.decide(ExitPoint(2, 4, 6, b[None], lengths[:1]))
    assert value.tolist() == [1]
    with pytest.raises(EarlyExitConfigError, match="out of range for policy 'agreement'"):
        build_exit_policy("agreement", threshold=1).check_options()
