"""``model: eexit``: per-exit heads, the early-exit loss, statistics and configuration errors."""
import numpy as np
import pytest
import torch

from conftest import SMALL_ENCODER, batch, build_model
from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.exit_policy import ExitPolicy, build_exit_policy
from espnet_eexit.model import EarlyExitASRModel

AED = dict(
    decoder="transformer",
    decoder_conf=dict(num_blocks=1, linear_units=32, attention_heads=2),
    model_conf=dict(ctc_weight=0.3),
)


def test_build_through_espnet_task_gives_one_ctc_head_per_exit():
    model = build_model()
    assert isinstance(model, EarlyExitASRModel)
    assert model.exit_layers == [2, 4, 6]
    heads = [model.ctc_for_exit(k) for k in model.exit_layers]
    assert len({id(h) for h in heads}) == 3
    assert heads[-1] is model.ctc  # ESPnet's name for the last exit's head
    assert not torch.equal(heads[0].ctc_lo.weight, heads[-1].ctc_lo.weight)  # independent init
    assert model.decoder is None and len(model.exit_decoders) == 0


def test_shared_ctc_head_and_shared_decoder():
    model = build_model(**{**AED, "model_conf": dict(ctc_weight=0.3, share_ctc_head=True,
                                                     decoder_per_exit=False)})
    assert len(model.exit_ctcs) == 0 and len(model.exit_decoders) == 0
    assert all(model.ctc_for_exit(k) is model.ctc for k in model.exit_layers)
    assert all(model.decoder_for_exit(k) is model.decoder for k in model.exit_layers)


def test_aed_has_one_decoder_per_exit_by_default():
    model = build_model(**AED)
    decoders = {id(model.decoder_for_exit(k)) for k in model.exit_layers}
    assert len(decoders) == 3 and model.decoder_for_exit(6) is model.decoder


def manual_ctc_loss(model, speech, lengths, text, text_lengths):
    """Per-exit CTC losses computed independently with torch.nn.functional.ctc_loss."""
    model.eval()
    losses = []
    with torch.no_grad():
        for out in model.encode_exits(speech, lengths):
            head = model.ctc_for_exit(out.layer)
            log_probs = head.ctc_lo(out.hidden).log_softmax(-1).transpose(0, 1)
            targets = torch.cat([t[:n] for t, n in zip(text, text_lengths)])
            loss = torch.nn.functional.ctc_loss(
                log_probs, targets, out.lengths, text_lengths,
                blank=0, reduction="sum", zero_infinity=True,
            ) / speech.size(0)
            losses.append(loss)
    return losses


@pytest.mark.parametrize("weights, factors", [("sum", [1, 1, 1]), ("mean", [1 / 3] * 3),
                                              ([0.2, 0.0, 1.5], [0.2, 0.0, 1.5])])
def test_loss_is_the_weighted_sum_of_independent_per_exit_ctc_losses(weights, factors):
    model = build_model(model_conf=dict(ctc_weight=1.0, exit_loss_weights=weights))
    speech, lengths, text, text_lengths = batch()
    expected = manual_ctc_loss(model, speech, lengths, text, text_lengths)
    loss, stats, _ = model(speech, lengths, text.clone(), text_lengths)
    total = sum(f * l for f, l in zip(factors, expected))
    assert torch.allclose(loss, total, rtol=1e-5)
    for k, l in zip(model.exit_layers, expected):
        assert torch.allclose(stats[f"loss_ctc_exit{k}"], l, rtol=1e-5)
    assert torch.allclose(stats["loss_ctc"], expected[-1], rtol=1e-5)


def test_gradient_reaches_every_exit_head_and_decoder():
    model = build_model(**AED)
    model.train()
    loss, _, _ = model(*batch())
    loss.backward()
    for k in model.exit_layers:
        assert model.ctc_for_exit(k).ctc_lo.weight.grad.abs().sum() > 0
        dec = model.decoder_for_exit(k)
        assert dec.output_layer.weight.grad.abs().sum() > 0
    for name, norm in model.encoder.exit_norms.items():
        assert norm.weight.grad.abs().sum() > 0, name


def test_joint_loss_per_exit_and_reported_statistics():
    model = build_model(**AED)
    model.eval()
    loss, stats, weight = model(*batch())
    assert int(weight) == 3
    per_exit = []
    for k in model.exit_layers:
        joint = 0.3 * stats[f"loss_ctc_exit{k}"] + 0.7 * stats[f"loss_att_exit{k}"]
        assert torch.allclose(stats[f"loss_exit{k}"], joint, rtol=1e-5)
        per_exit.append(joint)
        for name in ("acc_exit", "cer_ctc_exit", "cer_exit", "wer_exit"):
            assert stats[f"{name}{k}"] is not None, name  # eval mode computes error rates
    assert torch.allclose(loss, sum(per_exit), rtol=1e-5)
    # ESPnet's usual names follow the last exit (checkpoint selection / averaging).
    assert torch.equal(stats["acc"], stats["acc_exit6"])
    assert torch.equal(stats["loss_att"], stats["loss_att_exit6"])
    assert torch.equal(stats["loss"], loss.detach())


@pytest.mark.parametrize("aed", [False, True])
def test_single_final_exit_equals_espnet_asr_model(aed):
    conf = AED if aed else {}
    ours = build_model(**conf, encoder_conf={**SMALL_ENCODER,
                                             "exit_layers": [6]})
    theirs = build_model(**conf, encoder="conformer", model="espnet",
                         encoder_conf=SMALL_ENCODER)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    speech, lengths, text, text_lengths = batch()
    with torch.no_grad():
        loss, stats, _ = ours(speech, lengths, text.clone(), text_lengths)
        ref_loss, ref_stats, _ = theirs(speech, lengths, text.clone(), text_lengths)
        enc, enc_lens = ours.encode(speech, lengths)
        ref_enc, ref_lens = theirs.encode(speech, lengths)
    assert torch.equal(enc, ref_enc) and torch.equal(enc_lens, ref_lens)
    assert torch.allclose(loss, ref_loss, rtol=1e-6)
    for key in ("loss_ctc", "cer_ctc") + (("loss_att", "acc", "cer", "wer") if aed else ()):
        assert float(stats[key]) == pytest.approx(float(ref_stats[key]), rel=1e-6), key


def test_encode_stops_at_the_inference_exit():
    model = build_model()
    model.eval()
    calls = []
    for i, layer in enumerate(model.encoder.encoders):
        layer.register_forward_hook(lambda *_, i=i: calls.append(i + 1))
    speech, lengths, _, _ = batch()
    model.inference_exit_layer = 4
    with torch.no_grad():
        hidden, _ = model.encode(speech, lengths)
        expected = model.encode_exits(speech, lengths, max_exit_layer=4)[-1].hidden
    assert calls == [1, 2, 3, 4] * 2
    assert torch.allclose(hidden, expected)


def test_front_end_runs_outside_amp_autocast():
    """As ESPnet's model: under --use_amp (CUDA autocast on), the features are computed in full
    precision (model_conf.autocast_frontend false, ESPnet's default). The flag is what autocast
    sets, so this runs on a CPU-only machine (where autocast cannot be switched on, so the
    autocast_frontend: true case needs a GPU)."""
    model = build_model(model_conf=dict(ctc_weight=1.0))
    model.eval()
    seen = []
    model.frontend.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cuda")))
    model.encoder.encoders[0].register_forward_hook(
        lambda *_: seen.append(torch.is_autocast_enabled("cuda")))
    speech, lengths, _, _ = batch()
    policy = build_exit_policy("fixed", exit_layer=2).bind(model.exit_layers, 6)
    torch.set_autocast_enabled("cuda", True)
    try:
        with torch.no_grad():
            model.encode(speech, lengths)
            model.encode_exits(speech, lengths, max_exit_layer=2)
            model.encode_with_policy(speech, lengths, policy)
    finally:
        torch.set_autocast_enabled("cuda", False)
    # front end, then the first layer (which autocast may run in half precision), three times
    assert seen == [False, True] * 3


def test_policies_see_the_models_blank():
    tokens = ["<unk>", "a", "<blank>", "b", "c", "d", "e", "<space>", "<sos/eos>"]
    model = build_model(token_list=tokens)
    model.eval()
    assert model.blank_id == 2
    seen = []

    class Record(ExitPolicy):
        name = "record"

        def decide(self, point):
            seen.append(point.blank_id)
            return np.zeros(len(point.lengths), dtype=bool), np.zeros(len(point.lengths))

    speech, lengths, _, _ = batch()
    model.encode_with_policy(speech, lengths, Record())
    assert seen == [2, 2, 2]


@pytest.mark.parametrize(
    "config, words",
    [
        (dict(model_conf=dict(ctc_weight=1.0, exit_loss_weights=[1.0, 1.0])), "2 values but the encoder has 3 exits"),
        (dict(model_conf=dict(ctc_weight=1.0, exit_loss_weights=[1.0, -1.0, 1.0])), "must be >= 0"),
        (dict(model_conf=dict(ctc_weight=1.0, exit_loss_weights="max")), "'sum', 'mean'"),
        (dict(model_conf=dict(ctc_weight=1.0, decoder_per_exit=True)), "decoder_per_exit: true needs an attention decoder"),
        (dict(model_conf=dict(ctc_weight=0.5)), "needs an attention decoder"),
        ({**AED, "model_conf": dict(ctc_weight=0.0, share_ctc_head=True)}, "share_ctc_head"),
        (dict(model_conf=dict(ctc_weight=1.0, interctc_weight=0.3)), "interctc_weight must be 0"),
        (dict(encoder="conformer", encoder_conf=dict(num_blocks=2, output_size=32)), "needs an early-exit encoder"),
        (dict(encoder_conf=dict(num_blocks=4, exit_layers=[2, 5])), r"exit_layers=\[2, 5\]: \[5\] out of range"),
    ],
)
def test_bad_model_configuration_fails_at_build_with_a_clear_error(config, words):
    with pytest.raises(EarlyExitConfigError, match=words):
        build_model(**config)


def test_fine_tuning_from_a_single_exit_espnet_checkpoint(tmp_path):
    """--init_param of an ESPnet model fills the last exit; the other exits keep fresh heads."""
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    espnet_model = build_model(encoder="conformer", model="espnet", encoder_conf=SMALL_ENCODER)
    torch.nn.init.normal_(espnet_model.ctc.ctc_lo.weight)  # make it differ from a fresh init
    path = tmp_path / "single_exit.pth"
    torch.save(espnet_model.state_dict(), path)

    ours = build_model()
    fresh_head2 = ours.ctc_for_exit(2).ctc_lo.weight.clone()
    load_pretrained_model(str(path), ours, ignore_init_mismatch=False, map_location="cpu")
    assert torch.equal(ours.ctc.ctc_lo.weight, espnet_model.ctc.ctc_lo.weight)
    assert torch.equal(ours.encoder.encoders[5].feed_forward.w_1.weight,
                       espnet_model.encoder.encoders[5].feed_forward.w_1.weight)
    assert torch.equal(ours.ctc_for_exit(2).ctc_lo.weight, fresh_head2)
    ours.eval(), espnet_model.eval()
    speech, lengths, _, _ = batch()
    with torch.no_grad():
        assert torch.equal(ours.encode(speech, lengths)[0], espnet_model.encode(speech, lengths)[0])


def with_and_without_distillation(config, distill_weight):
    """Two models of ``config`` with the same weights, in eval mode, the second with
    ``distill_weight``; a batch, and each model's ``(loss, stats)`` on it."""
    plain = build_model(**config)
    model = build_model(**{**config, "model_conf": dict(config["model_conf"], distill_weight=distill_weight)})
    model.load_state_dict(plain.state_dict())
    model.eval(), plain.eval()
    speech, lengths, text, text_lengths = batch()
    loss, stats, _ = model(speech, lengths, text.clone(), text_lengths)
    ref_loss, ref_stats, _ = plain(speech, lengths, text.clone(), text_lengths)
    return plain, model, (speech, lengths, text, text_lengths), (loss, stats), (ref_loss, ref_stats)


def test_self_distillation_adds_the_kl_to_the_last_exit_and_no_gradient_into_it():
    """distill_weight w: loss_exit<k> = CTC_k + w * KL(p_last || p_k), the KL computed here with
    torch's kl_div over valid frames / batch size; the last exit's loss is unchanged and the
    distillation term sends no gradient into the last exit's head or layers above exit 4."""
    import torch.nn.functional as F

    plain, model, (speech, lengths, text, text_lengths), (loss, stats), (ref_loss, ref_stats) = \
        with_and_without_distillation(dict(model_conf=dict(ctc_weight=1.0)), [0.5, 2.0])
    with torch.no_grad():
        outs = {o.layer: o for o in model.encode_exits(speech, lengths)}
        teacher = model.ctc_for_exit(6).log_softmax(outs[6].hidden)
    expected_total = float(ref_loss)
    for k, w in ((2, 0.5), (4, 2.0)):
        student = model.ctc_for_exit(k).log_softmax(outs[k].hidden)
        kl = 0.0
        for b, n in enumerate(outs[k].lengths.tolist()):
            kl += F.kl_div(student[b, :n], teacher[b, :n], log_target=True, reduction="sum")
        kl = float(kl) / speech.size(0)
        assert float(stats[f"loss_distill_exit{k}"]) == pytest.approx(kl, rel=1e-4)
        assert float(stats[f"loss_exit{k}"]) == pytest.approx(float(ref_stats[f"loss_exit{k}"]) + w * kl, rel=1e-4)
        expected_total += w * kl
    assert "loss_distill_exit6" not in stats
    assert float(stats["loss_exit6"]) == pytest.approx(float(ref_stats["loss_exit6"]), rel=1e-6)
    assert float(loss) == pytest.approx(expected_total, rel=1e-4)
    # the teacher is detached: the last head, the final norm and layers 5-6 get exactly the
    # gradient they get without distillation; the layers below exit 4 do not
    loss.backward()
    ref_loss.backward()
    grads = dict(plain.named_parameters())
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        same = torch.allclose(param.grad, grads[name].grad, atol=1e-6)
        if name.startswith(("ctc.", "encoder.after_norm.", "encoder.encoders.4.", "encoder.encoders.5.")):
            assert same, name
    assert not torch.allclose(model.encoder.encoders[0].feed_forward.w_1.weight.grad,
                              plain.encoder.encoders[0].feed_forward.w_1.weight.grad)


def test_distill_weight_values_are_checked():
    with pytest.raises(EarlyExitConfigError, match="distill_weight=\\[1.0\\]: give one number >= 0, or 2"):
        build_model(model_conf=dict(ctc_weight=1.0, distill_weight=[1.0]))
    with pytest.raises(EarlyExitConfigError, match="distill_weight=-1.0: give one number >= 0"):
        build_model(**{**AED, "model_conf": dict(ctc_weight=0.0, distill_weight=-1.0)})


def test_self_distillation_of_the_decoders_mixes_with_the_ctc_kl_by_ctc_weight():
    """Joint CTC/attention, ctc_weight c: loss_exit<k> gains w * (c * KL_ctc + (1 - c) * KL_att),
    KL_att = KL(last decoder || exit k's decoder) on the teacher-forced reference tokens (eos
    included, padding excluded), computed here with torch's kl_div; no gradient into the last
    exit's decoder."""
    import torch.nn.functional as F

    plain, model, (speech, lengths, text, text_lengths), (loss, stats), (ref_loss, ref_stats) = \
        with_and_without_distillation({**AED, "model_conf": dict(ctc_weight=0.3)}, 2.0)
    with torch.no_grad():
        outs = {o.layer: o for o in model.encode_exits(speech, lengths)}
        # teacher forcing: <sos> then the reference, padded (the padding is not scored)
        ys_in = torch.full((text.size(0), int(text_lengths.max()) + 1), model.eos)
        ys_in[:, 0] = model.sos
        for b, n in enumerate(text_lengths.tolist()):
            ys_in[b, 1: n + 1] = text[b, :n]
        def decoder_log_probs(k):
            out, _ = model.decoder_for_exit(k)(outs[k].hidden, outs[k].lengths, ys_in, text_lengths + 1)
            return out.log_softmax(-1)
        teacher_att = decoder_log_probs(6)
        teacher_ctc = model.ctc_for_exit(6).log_softmax(outs[6].hidden)
    expected_total = float(ref_loss)
    for k in (2, 4):
        student_att = decoder_log_probs(k)
        kl_att = sum(F.kl_div(student_att[b, : n + 1], teacher_att[b, : n + 1], log_target=True,
                              reduction="sum") for b, n in enumerate(text_lengths.tolist()))
        student_ctc = model.ctc_for_exit(k).log_softmax(outs[k].hidden)
        kl_ctc = sum(F.kl_div(student_ctc[b, :n], teacher_ctc[b, :n], log_target=True, reduction="sum")
                     for b, n in enumerate(outs[k].lengths.tolist()))
        kl_att, kl_ctc = float(kl_att) / speech.size(0), float(kl_ctc) / speech.size(0)
        assert kl_att > 0 and kl_ctc > 0
        assert float(stats[f"loss_distill_att_exit{k}"]) == pytest.approx(kl_att, rel=1e-4)
        assert float(stats[f"loss_distill_ctc_exit{k}"]) == pytest.approx(kl_ctc, rel=1e-4)
        distill = 0.3 * kl_ctc + 0.7 * kl_att
        assert float(stats[f"loss_exit{k}"]) == pytest.approx(
            float(ref_stats[f"loss_exit{k}"]) + 2.0 * distill, rel=1e-4)
        expected_total += 2.0 * distill
    assert float(loss) == pytest.approx(expected_total, rel=1e-4)
    loss.backward()
    ref_loss.backward()
    reference = dict(plain.named_parameters())
    for name, param in model.decoder.named_parameters():
        assert torch.allclose(param.grad, reference["decoder." + name].grad, atol=1e-6), name
