"""The early-exit mechanism on ESPnet's Conformer, Transformer and E-Branchformer layers."""
import pytest
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

from conftest import count_layer_calls
from espnet_eexit.encoder.conformer import EarlyExitConformerEncoder
from espnet_eexit.encoder.e_branchformer import EarlyExitEBranchformerEncoder
from espnet_eexit.encoder.early_exit import default_exit_layers
from espnet_eexit.encoder.transformer import EarlyExitTransformerEncoder
from espnet_eexit.errors import EarlyExitConfigError

BACKBONES = {
    "conformer": (EarlyExitConformerEncoder, ConformerEncoder, dict(linear_units=64)),
    "transformer": (EarlyExitTransformerEncoder, TransformerEncoder, dict(linear_units=64)),
    "e_branchformer": (
        EarlyExitEBranchformerEncoder,
        EBranchformerEncoder,
        dict(cgmlp_linear_units=64, linear_units=64),
    ),
}
COMMON = dict(output_size=32, attention_heads=2, num_blocks=6, input_layer="conv2d")
IN_DIM = 20


def make(name, **kwargs):
    ours, _, extra = BACKBONES[name]
    torch.manual_seed(0)
    return ours(IN_DIM, **{**COMMON, **extra, **kwargs}).eval()


def features(lengths=(60, 48, 33), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), IN_DIM, generator=g)
    return x, torch.tensor(lengths)


def test_default_exits_follow_the_paper():
    assert default_exit_layers(12) == [2, 4, 6, 8, 10, 12]
    assert default_exit_layers(5) == [2, 4, 5]
    assert make("conformer").exit_layers == [2, 4, 6]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_exit_has_hidden_states_and_lengths(name):
    enc = make(name, exit_layers=[1, 3, 6])
    x, ilens = features()
    outs = enc.forward_exits(x, ilens)
    assert [o.layer for o in outs] == [1, 3, 6]
    _, espnet_cls, extra = BACKBONES[name]
    _, expected, _ = espnet_cls(IN_DIM, **COMMON, **extra).eval()(x, ilens)
    t_sub = ((x.size(1) - 1) // 2 - 1) // 2  # conv2d subsampling of the padded length
    assert expected.tolist() == [14, 12, 9]
    for o in outs:
        assert o.hidden.shape == (3, t_sub, 32)
        assert torch.equal(o.lengths, expected)
    assert not torch.allclose(outs[0].hidden, outs[-1].hidden)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_truncated_forward_runs_only_the_layers_below_the_exit(name):
    enc = make(name, exit_layers=[2, 4, 6])
    calls = count_layer_calls(enc)
    x, ilens = features()
    hidden, olens, _ = enc(x, ilens, max_exit_layer=4)
    assert calls == [1, 2, 3, 4]
    assert torch.allclose(hidden, enc.forward_exits(x, ilens)[1].hidden, atol=1e-6)

    calls.clear()
    for out in enc.iter_exits(x, ilens):
        if out.layer == 2:
            break  # the caller decides to stop: layers 3.. must never run
    assert calls == [1, 2]

    calls.clear()
    enc(x, ilens)
    assert calls == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_single_final_exit_is_identical_to_espnet_encoder(name):
    ours = make(name, exit_layers=[6])
    _, espnet_cls, extra = BACKBONES[name]
    ref = espnet_cls(IN_DIM, **COMMON, **extra).eval()
    assert not ours.exit_norms  # no extra parameters: the state dicts are the same
    ref.load_state_dict(ours.state_dict(), strict=True)
    x, ilens = features()
    with torch.no_grad():
        h, olens, _ = ours(x, ilens)
        h_ref, olens_ref, _ = ref(x, ilens)
    assert torch.equal(h, h_ref)
    assert torch.equal(olens, olens_ref)


def test_last_exit_of_a_multi_exit_encoder_equals_espnet_encoder():
    ours = make("conformer", exit_layers=[2, 4, 6], exit_norm="own")
    ref = ConformerEncoder(IN_DIM, **COMMON, linear_units=64).eval()
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert missing == [] and sorted(unexpected) == sorted(
        f"exit_norms.{k}.{p}" for k in (2, 4) for p in ("weight", "bias")
    )
    x, ilens = features()
    with torch.no_grad():
        assert torch.equal(ours(x, ilens)[0], ref(x, ilens)[0])


@pytest.mark.parametrize("name", ["conformer", "transformer", "e_branchformer"])
def test_intermediate_exits_equal_espnets_own_intermediate_outputs(name):
    """ESPnet's InterCTC path returns the hidden state after the chosen layers, normalised by the
    final norm: on the same weights, our exits with exit_norm shared are exactly those."""
    ours = make(name, exit_layers=[2, 4, 6], exit_norm="shared")
    _, espnet_cls, extra = BACKBONES[name]
    ref = espnet_cls(IN_DIM, **COMMON, **extra, interctc_layer_idx=[2, 4]).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x, ilens = features()
    with torch.no_grad():
        exits = ours.forward_exits(x, ilens)
        h_ref, olens_ref, _ = ref(x, ilens)
    assert isinstance(h_ref, tuple)  # (final, [(layer, intermediate), ...]) with interctc_layer_idx
    final, intermediate = h_ref
    assert [k for k, _ in intermediate] == [2, 4]
    for out, (k, h) in zip(exits[:2], intermediate):
        assert out.layer == k and torch.allclose(out.hidden, h, atol=1e-6)
    assert torch.allclose(exits[2].hidden, final, atol=1e-6) and torch.equal(exits[2].lengths, olens_ref)


def test_exit_norm_shared_uses_the_final_norm_everywhere():
    enc = make("conformer", exit_norm="shared")
    assert len(enc.exit_norms) == 0
    x, ilens = features()
    with torch.no_grad():
        out2 = enc.forward_exits(x, ilens)[0]
        state = enc.advance(enc.start(x, ilens), 2)
        assert torch.equal(out2.hidden, enc.after_norm(state.hidden))


@pytest.mark.parametrize(
    "name, keep",
    [
        # Transformer layers mix frames only through masked attention, so cutting the padding
        # that only the dropped (longest) utterance needed changes nothing.
        ("transformer", [1, 2]),
        # Conformer's convolution module sees padding: keep the longest utterance (no cut) and
        # check the relative-position bookkeeping.
        ("conformer", [0, 2]),
    ],
)
def test_dropping_utterances_between_exits_keeps_their_results(name, keep):
    enc = make(name, exit_layers=[2, 4, 6])
    x, ilens = features(lengths=(60, 48, 33))
    with torch.no_grad():
        full = enc(x, ilens)
        state = enc.advance(enc.start(x, ilens), 2).select(torch.tensor(keep))
        assert state.hidden.shape[1] == int(full[1][keep].max())  # padding cut to the longest kept
        out = enc.exit_output(enc.advance(state, 6))
    t = out.hidden.shape[1]
    assert torch.equal(out.lengths, full[1][keep])
    assert torch.allclose(out.hidden, full[0][keep][:, :t], atol=1e-5)


@pytest.mark.parametrize(
    "exit_layers, words",
    [
        ([], "empty"),
        ([0, 2], "out of range"),
        ([2, 7], "out of range"),
        ([-1], "out of range"),
        ([4, 2], "not sorted"),
        ([2, 2, 4], "duplicated"),
        ([2.5], "not integers"),
    ],
)
def test_bad_exit_layers_are_rejected_with_one_clear_error(exit_layers, words):
    with pytest.raises(EarlyExitConfigError, match="exit_layers") as err:
        make("conformer", exit_layers=exit_layers)
    assert words in str(err.value) and "1..6" in str(err.value)


def test_bad_exit_norm_and_exit_requests_are_rejected():
    with pytest.raises(EarlyExitConfigError, match="exit_norm"):
        make("conformer", exit_norm="layer")
    enc = make("conformer", exit_layers=[2, 6])
    x, ilens = features()
    with pytest.raises(EarlyExitConfigError, match=r"exit layer 4 is not an exit.*\[2, 6\]"):
        enc(x, ilens, max_exit_layer=4)
    with pytest.raises(EarlyExitConfigError, match="interctc_layer_idx"):
        make("conformer", interctc_layer_idx=[3])


def test_config_dump_lists_espnet_and_exit_arguments():
    from espnet2.utils.get_default_kwargs import get_default_kwargs

    defaults = get_default_kwargs(EarlyExitConformerEncoder)
    assert defaults["exit_norm"] == "own" and defaults["exit_layers"] is None
    assert defaults["cnn_module_kernel"] == 31  # an ESPnet Conformer argument


def test_narrow_front_end_keeps_frame_rate_and_costs_less():
    from espnet_eexit.encoder.subsampling import NarrowConv2dSubsampling

    wide = make("conformer")
    narrow = make("conformer", subsampling_channels=8)
    assert isinstance(narrow.embed, NarrowConv2dSubsampling)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(narrow.embed) < count(wide.embed) / 2
    x, ilens = features()
    with torch.no_grad():
        outs = narrow.forward_exits(x, ilens)
        ref = wide.forward_exits(x, ilens)
    assert [o.hidden.shape for o in outs] == [o.hidden.shape for o in ref]
    assert all(torch.equal(a.lengths, b.lengths) for a, b in zip(outs, ref))
    with pytest.raises(EarlyExitConfigError, match="subsampling_channels needs input_layer: conv2d"):
        make("conformer", subsampling_channels=8, input_layer="conv2d6")
