"""``decoder: eexit_whisper``: Whisper's text decoder as an ESPnet attention decoder."""
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from conftest import TINY_WHISPER, build_model
from espnet_eexit.decoder.whisper import WhisperDecoder
from espnet_eexit.errors import EarlyExitConfigError

SOT = TINY_WHISPER["decoder_start_token_id"]


def make(path, **kwargs):
    return WhisperDecoder(TINY_WHISPER["vocab_size"], TINY_WHISPER["d_model"], whisper_model=path,
                          **kwargs).eval()


def memory(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lengths), max(lengths), TINY_WHISPER["d_model"], generator=g), torch.tensor(lengths)


def test_logits_equal_whispers_own_decoder(tiny_whisper_dir):
    decoder = make(tiny_whisper_dir)
    reference = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    hs, hlens = memory([12, 12])
    ys = torch.tensor([[5, 7, 9, 11], [6, 8, 10, 12]])
    with torch.no_grad():
        ours, olens = decoder(hs, hlens, ys, torch.tensor([4, 4]))
        expected = reference(encoder_outputs=(hs,),
                             decoder_input_ids=torch.cat([torch.full((2, 1), SOT), ys], 1)).logits
    assert ours.shape == (2, 4, TINY_WHISPER["vocab_size"]) and olens.tolist() == [4, 4]
    # <|startoftranscript|> read first, its own output dropped
    assert torch.allclose(ours, expected[:, 1:], atol=1e-5)
    plain = make(tiny_whisper_dir, use_sot_prefix=False)
    with torch.no_grad():
        assert torch.allclose(plain(hs, hlens, ys, torch.tensor([4, 4]))[0],
                              reference(encoder_outputs=(hs,), decoder_input_ids=ys).logits, atol=1e-5)


def test_cross_attention_ignores_other_utterances_padding(tiny_whisper_dir):
    decoder = make(tiny_whisper_dir)
    hs, hlens = memory([15, 6, 9])
    ys = torch.tensor([[5, 7, 9], [6, 8, 1], [4, 4, 4]])
    with torch.no_grad():
        batched, _ = decoder(hs, hlens, ys, torch.tensor([3, 3, 3]))
        for i, n in enumerate(hlens.tolist()):
            alone, _ = decoder(hs[i : i + 1, :n], hlens[i : i + 1], ys[i : i + 1], torch.tensor([3]))
            assert torch.allclose(batched[i], alone[0], atol=1e-5), i
        # the padding frames really would change the result: garbage there is not looked at
        noisy = hs.clone()
        noisy[1, 6:] = 100.0
        assert torch.allclose(decoder(noisy, hlens, ys, torch.tensor([3, 3, 3]))[0], batched, atol=1e-5)
        unmasked, _ = decoder(noisy, torch.tensor([15, 15, 15]), ys, torch.tensor([3, 3, 3]))
    assert not torch.allclose(unmasked[1], batched[1], atol=1e-2)


def test_beam_search_scores_are_the_last_positions_log_probabilities(tiny_whisper_dir):
    decoder = make(tiny_whisper_dir)
    hs, hlens = memory([10])
    ys = torch.tensor([[5, 7, 9]])
    with torch.no_grad():
        logits, _ = decoder(hs, hlens, ys, torch.tensor([3]))
        expected = torch.log_softmax(logits[0, -1], dim=-1)
        batch, states = decoder.batch_score(ys.repeat(2, 1), [None, None], hs.repeat(2, 1, 1))
        single, _ = decoder.score(ys[0], None, hs[0])
    assert torch.allclose(batch, expected.expand(2, -1), atol=1e-5) and len(states) == 2
    assert torch.allclose(single, expected, atol=1e-5)


def test_shared_by_the_exits_of_an_espnet_model(tiny_whisper_dir):
    tokens = [f"t{i}" for i in range(TINY_WHISPER["vocab_size"])]
    tokens[3], tokens[1] = "<|notimestamps|>", "<|endoftext|>"
    model = build_model(token_list=tokens, input_size=1, frontend=None, frontend_conf={}, specaug=None,
                        normalize=None, encoder="eexit_whisper",
                        encoder_conf=dict(whisper_model=tiny_whisper_dir, exit_layers=[2, 4]),
                        decoder="eexit_whisper", decoder_conf=dict(whisper_model=tiny_whisper_dir),
                        model_conf=dict(ctc_weight=0.0, decoder_per_exit=False,
                                        sym_sos="<|notimestamps|>", sym_eos="<|endoftext|>"))
    assert (model.sos, model.eos) == (3, 1) and model.ctc is None
    assert model.decoder_for_exit(2) is model.decoder_for_exit(4) is model.decoder
    model.train()
    speech = torch.randn(2, 16000)
    text, text_lengths = torch.tensor([[5, 6, 7], [8, 9, -1]]), torch.tensor([3, 2])
    loss, stats, _ = model(speech, torch.tensor([16000, 12000]), text, text_lengths)
    loss.backward()
    assert torch.allclose(loss, stats["loss_att_exit2"] + stats["loss_att_exit4"])
    assert model.decoder.whisper.layers[0].fc1.weight.grad.abs().sum() > 0


def test_wrong_tokens_or_sizes_fail_with_one_clear_error(tiny_whisper_dir):
    with pytest.raises(EarlyExitConfigError, match=r"token list has 50 entries.*vocabulary of 100.*token_type hugging_face"):
        WhisperDecoder(50, TINY_WHISPER["d_model"], whisper_model=tiny_whisper_dir)
    with pytest.raises(EarlyExitConfigError, match="reads 32-dim encoder outputs, but the encoder gives 64"):
        WhisperDecoder(TINY_WHISPER["vocab_size"], 64, whisper_model=tiny_whisper_dir)
    decoder = make(tiny_whisper_dir)
    hs, hlens = memory([5])
    with pytest.raises(EarlyExitConfigError, match="sequence of 33 exceeds Whisper's decoder length"):
        decoder(hs, hlens, torch.zeros(1, 32, dtype=torch.long), torch.tensor([32]))


def test_a_decoder_per_exit_starts_as_whispers_own(tiny_whisper_dir):
    """decoder_per_exit: every exit gets a copy of the pretrained decoder, not fresh weights (a
    decoder built from scratch, load_pretrained_weights: false, gets fresh ones per exit)."""
    tokens = [f"t{i}" for i in range(TINY_WHISPER["vocab_size"])]
    reference = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).model.decoder
    for pretrained in (True, False):
        model = build_model(token_list=tokens, input_size=1, frontend=None, frontend_conf={}, specaug=None,
                            normalize=None, encoder="eexit_whisper",
                            encoder_conf=dict(whisper_model=tiny_whisper_dir, exit_layers=[2, 4]),
                            decoder="eexit_whisper",
                            decoder_conf=dict(whisper_model=tiny_whisper_dir, load_pretrained_weights=pretrained),
                            model_conf=dict(ctc_weight=0.0, decoder_per_exit=True))
        own, last = model.decoder_for_exit(2), model.decoder_for_exit(4)
        assert own is not last
        fc1 = own.whisper.layers[0].fc1.weight
        assert torch.equal(fc1, reference.layers[0].fc1.weight) == pretrained
        assert torch.equal(fc1, last.whisper.layers[0].fc1.weight) == pretrained
