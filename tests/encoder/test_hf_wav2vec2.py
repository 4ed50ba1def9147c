"""``eexit_hf_wav2vec2``: Hugging Face wav2vec2 / HuBERT / WavLM models with early exits.

Every model is a tiny randomly initialised one saved with ``save_pretrained`` (no download).
"""
import pytest
import torch
from transformers import (AutoModel, HubertConfig, Wav2Vec2Config, Wav2Vec2ConformerConfig,
                          WavLMConfig)

from conftest import check_longest_leaves_first, build_model, count_layer_calls
from espnet_eexit.encoder.hf_wav2vec2 import EarlyExitHFWav2Vec2Encoder
from espnet_eexit.errors import EarlyExitConfigError

TINY = dict(
    hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
    conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
)
# No randomness in training mode unless a test asks for it (dropout, LayerDrop, masking).
QUIET = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
             feat_proj_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0)
VARIANTS = {
    # post-LN layers, GroupNorm CNN (wav2vec2-base / HuBERT-base / WavLM-base style)
    "wav2vec2": Wav2Vec2Config(**TINY, **QUIET),
    # pre-LN layers + final LayerNorm, LayerNorm CNN (wav2vec2-large-lv60 style)
    "wav2vec2_stable": Wav2Vec2Config(**TINY, **QUIET, do_stable_layer_norm=True,
                                      feat_extract_norm="layer", conv_bias=True),
    "wavlm": WavLMConfig(**TINY, **QUIET),
    "hubert": HubertConfig(**TINY, **QUIET),
    # HF's own training settings: dropout, LayerDrop, time and channel masking
    "masked": Wav2Vec2Config(**TINY, mask_time_prob=0.3, mask_time_length=2,
                             mask_feature_prob=0.3, mask_feature_length=4),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> directory of a tiny model written with ``save_pretrained``."""
    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for name, config in VARIANTS.items():
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(root / name)
        dirs[name] = str(root / name)
    return dirs


def make(saved, name, **kwargs):
    return EarlyExitHFWav2Vec2Encoder(1, saved[name], **kwargs).eval()


def waves(lengths, seed=0):
    """(B, S) zero-padded random waveforms and (B,) lengths."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, generator=g)
    return x, torch.tensor(lengths)


@pytest.mark.parametrize("name", ["wav2vec2", "wav2vec2_stable", "wavlm", "hubert"])
def test_exit_hidden_states_equal_the_hf_models_own(saved, name):
    enc = make(saved, name, exit_layers=[1, 2, 3, 4])
    ref = AutoModel.from_pretrained(saved[name]).eval()
    x, ilens = waves([2400, 2400])
    with torch.no_grad():
        expected = ref(x, output_hidden_states=True)
        state = enc.start(x, ilens)
        assert torch.allclose(state.hidden, expected.hidden_states[0], atol=1e-6)
        for k in range(1, 5):
            state = enc.advance(state, k)
            out = enc.exit_output(state)
            if k < 4:  # intermediate exits: the exit's own norm on top
                assert torch.allclose(state.hidden, expected.hidden_states[k], atol=1e-6), k
                assert torch.allclose(out.hidden, enc.exit_norms[str(k)](state.hidden))
            else:  # transformers 5.0 reports the last layer after the final LayerNorm, 5.24 before
                assert any(torch.allclose(h, expected.hidden_states[k], atol=1e-6)
                           for h in (state.hidden, out.hidden))
    # the last exit is the model's output (after the final LayerNorm of stable-layer-norm models)
    assert torch.allclose(out.hidden, expected.last_hidden_state, atol=1e-6)
    assert out.lengths.tolist() == [expected.last_hidden_state.size(1)] * 2
    with torch.no_grad():  # (B, S, 1) waveforms work too
        assert torch.equal(enc(x[..., None], ilens)[0], out.hidden)
    assert enc.output_size() == 32 and enc.num_layers == 4


@pytest.mark.parametrize("name", ["wav2vec2", "wavlm"])
def test_layers_above_the_exit_never_run(saved, name):
    enc = make(saved, name)
    assert enc.exit_layers == [2, 4]
    calls = count_layer_calls(enc)
    x, ilens = waves([2400, 1800])
    with torch.no_grad():
        hidden, lengths, _ = enc(x, ilens, max_exit_layer=2)
        assert calls == [1, 2]
        assert torch.equal(hidden, enc.forward_exits(x, ilens)[0].hidden)
        calls.clear()
        for out in enc.iter_exits(x, ilens):
            break  # the caller stops at the first exit
        assert calls == [1, 2]
        calls.clear()
        enc(x, ilens)
    assert calls == [1, 2, 3, 4]


@pytest.mark.parametrize("name", ["wav2vec2", "wavlm"])
def test_dropping_utterances_between_exits_keeps_their_results(saved, name):
    enc = make(saved, name)
    x, ilens = waves([3000, 2400, 1600])
    keep = torch.tensor([1, 2])
    with torch.no_grad():
        state = enc.advance(enc.start(x, ilens), 2).select(keep)
        frames = int(state.lengths.max())
        assert state.hidden.shape == (2, frames, 32) and state.masks.shape == (2, 1, frames)
        if name == "wavlm":  # layer 1's relative position bias, cut with the batch
            assert state.position_bias.shape == (2 * 2, frames, frames)
        out = enc.exit_output(enc.advance(state, 4))
        alone = enc.exit_output(enc.advance(enc.start(x[keep, :2400], ilens[keep]), 4))
    assert torch.equal(out.lengths, alone.lengths)
    assert torch.allclose(out.hidden, alone.hidden, atol=1e-5)


@pytest.mark.parametrize("name", ["wav2vec2", "wav2vec2_stable", "wavlm", "hubert"])
def test_padding_does_not_change_an_utterances_result(saved, name):
    """Also for GroupNorm CNNs, whose per-channel statistics would otherwise include padding."""
    enc = make(saved, name, exit_layers=[1, 2, 3, 4])
    x, ilens = waves([3000, 1700])
    with torch.no_grad():
        batched = enc.forward_exits(x, ilens)
        for i in range(2):
            alone = enc.forward_exits(x[i : i + 1, : ilens[i]], ilens[i : i + 1])
            for b, a in zip(batched, alone):
                n = int(a.lengths[0])
                assert int(b.lengths[i]) == n
                assert torch.allclose(b.hidden[i, :n], a.hidden[0], atol=1e-5), (i, b.layer)


def test_hf_masking_applies_in_training_only_when_enabled(saved):
    enc = make(saved, "masked")
    enc.hf.feature_projection.dropout.p = enc.hf.encoder.dropout.p = 0.0  # masking alone
    x, ilens = waves([2400, 1800])
    with torch.no_grad():
        plain = enc.start(x, ilens).hidden
        enc.train()
        torch.manual_seed(0)
        masked = enc.start(x, ilens).hidden
        enc.apply_hf_masking = False
        unmasked = enc.start(x, ilens).hidden
    assert torch.allclose(unmasked, plain, atol=1e-6)
    assert not torch.allclose(masked, plain, atol=1e-3)


def test_feature_encoder_and_transformer_freezing(saved):
    enc = make(saved, "wav2vec2", freeze_transformer_steps=2).train()
    x, ilens = waves([2400, 1800])
    layer_params = list(enc.hf.encoder.parameters()) + list(enc.hf.feature_projection.parameters())
    for step in (1, 2, 3):
        enc.zero_grad(set_to_none=True)
        loss = sum(out.hidden.pow(2).mean() for out in enc.forward_exits(x, ilens))
        loss.backward()
        assert all(p.grad is None for p in enc.hf.feature_extractor.parameters())
        assert enc.exit_norms["2"].weight.grad is not None  # exit norms always train
        if step <= 2:
            assert all(p.grad is None for p in layer_params), step
        else:
            assert all(p.grad is not None for p in enc.encoders.parameters())
            assert enc.hf.feature_projection.projection.weight.grad.abs().sum() > 0
    assert int(enc.num_train_forwards) == 3
    # the count is part of the checkpoint: a resumed model does not freeze again
    resumed = make(saved, "wav2vec2", freeze_transformer_steps=2)
    resumed.load_state_dict(enc.state_dict())
    assert not resumed.train().start(x, ilens).frozen
    # and the CNN trains when asked to
    enc = make(saved, "wav2vec2", freeze_feature_encoder=False).train()
    enc.forward_exits(x, ilens)[-1].hidden.sum().backward()
    assert enc.hf.feature_extractor.conv_layers[0].conv.weight.grad.abs().sum() > 0


def test_built_through_espnet_trains_and_decodes(saved):
    from espnet2.tasks.asr import encoder_choices
    from espnet2.utils.get_default_kwargs import get_default_kwargs

    assert encoder_choices.get_class("eexit_hf_wav2vec2") is EarlyExitHFWav2Vec2Encoder
    defaults = get_default_kwargs(EarlyExitHFWav2Vec2Encoder)  # what config.yaml dumps
    assert defaults["freeze_transformer_steps"] == 0 and defaults["exit_norm"] == "own"
    # What a user writes: raw waveforms in, no frontend, no ESPnet SpecAugment / normalisation.
    model = build_model(input_size=1, frontend=None, frontend_conf={}, specaug=None,
                        normalize=None, encoder="eexit_hf_wav2vec2",
                        encoder_conf=dict(hf_model=saved["masked"], exit_layers=[1, 2, 4]))
    assert model.frontend is None and model.exit_layers == [1, 2, 4]
    model.train()
    speech, lengths = waves([16000, 12000])
    text = torch.tensor([[2, 3, 4, 5], [6, 7, -1, -1]])
    text_lengths = torch.tensor([4, 2])
    cnn = model.encoder.hf.feature_extractor.conv_layers[0].conv.weight.clone()
    layer = model.encoder.encoders[3].feed_forward.output_dense.weight.clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss, stats, _ = model(speech, lengths, text, text_lengths)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    for k in (1, 2, 4):
        assert torch.isfinite(stats[f"loss_exit{k}"]), k
    assert torch.equal(model.encoder.hf.feature_extractor.conv_layers[0].conv.weight, cnn)
    assert not torch.equal(model.encoder.encoders[3].feed_forward.output_dense.weight, layer)

    # Decoding with a policy: the longest utterance leaves at exit 1, the other goes on alone.
    check_longest_leaves_first(model, speech, lengths, atol=1e-5)


def test_bad_configuration_is_rejected_with_one_clear_error(saved, tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(EarlyExitConfigError, match=f"hf_model='{missing}': no such directory"):
        EarlyExitHFWav2Vec2Encoder(1, str(missing))
    with pytest.raises(EarlyExitConfigError, match="cannot load a model config"):
        EarlyExitHFWav2Vec2Encoder(1, str(tmp_path))  # a directory without config.json
    with pytest.raises(EarlyExitConfigError, match=r"exit_layers=\[2, 5\]: \[5\] out of range"
                                                   r".*1\.\.4"):
        make(saved, "wav2vec2", exit_layers=[2, 5])
    with pytest.raises(EarlyExitConfigError, match="'wav2vec2-conformer' model"):
        Wav2Vec2ConformerConfig(**TINY).save_pretrained(tmp_path / "conformer")
        EarlyExitHFWav2Vec2Encoder(1, str(tmp_path / "conformer"))
    # ESPnet's default frontend (fbank features) instead of raw waveforms
    with pytest.raises(EarlyExitConfigError, match="set input_size: 1"):
        build_model(encoder="eexit_hf_wav2vec2", encoder_conf=dict(hf_model=saved["wav2vec2"]))


def test_random_init_from_the_saved_config(saved):
    pretrained = make(saved, "wavlm")
    torch.manual_seed(1)
    fresh = make(saved, "wavlm", load_pretrained_weights=False)
    assert fresh.hf.config.model_type == "wavlm" and fresh.num_layers == 4
    assert not torch.equal(pretrained.encoders[0].attention.q_proj.weight,
                           fresh.encoders[0].attention.q_proj.weight)


@pytest.mark.parametrize("name", ["wavlm", "wav2vec2"])
def test_a_state_resumed_from_hidden_states_and_mask_goes_on_as_the_carried_one(saved, name):
    """resume_state (what an exported segment starts from): WavLM's position bias made again from
    the length equals the one layer 1 made and the state carried; the layers above give the same."""
    encoder = make(saved, name, exit_layers=[2, 4])
    x, lengths = waves([9000, 6000])
    with torch.no_grad():
        carried = encoder.advance(encoder.start(x, lengths), 2)
        resumed = encoder.resume_state(carried.hidden, carried.masks, 2)
        if name == "wavlm":
            assert carried.position_bias is not None and torch.equal(resumed.position_bias, carried.position_bias)
        else:
            assert resumed.position_bias is None
        assert torch.equal(encoder.advance(resumed, 4).hidden, encoder.advance(carried, 4).hidden)
