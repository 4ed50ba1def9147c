"""Shared helpers: build real ESPnet models through ``ASRTask.build_model``."""
import argparse
import logging
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "recipes"))
import espnet_eexit  # noqa: F401,E402  (registers the plugin)
from espnet_eexit.tasks.asr import EarlyExitASRTask  # noqa: E402

logging.getLogger().setLevel(logging.ERROR)
torch.set_num_threads(2)

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "d", "e", "<space>", "<sos/eos>"]
SMALL_ENCODER = dict(output_size=32, attention_heads=2, linear_units=64, num_blocks=6)
# A tiny Whisper (4 encoder layers, 1 decoder layer, d 32, 100 tokens), randomly initialised.
TINY_WHISPER = dict(d_model=32, encoder_layers=4, decoder_layers=1, encoder_attention_heads=2,
                    decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
                    num_mel_bins=80, max_source_positions=1500, max_target_positions=32, pad_token_id=0,
                    bos_token_id=1, eos_token_id=1, decoder_start_token_id=2,
                    dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def build_model(**config) -> torch.nn.Module:
    """Build a model exactly as ``asr_train`` does, from ESPnet's parser defaults + ``config``."""
    args = vars(EarlyExitASRTask.get_parser().parse_args([]))
    args.update(
        token_list=list(TOKENS),
        input_size=None,
        frontend="default",
        frontend_conf=dict(n_fft=128, hop_length=64, win_length=128, n_mels=16),
        specaug=None,
        normalize="utterance_mvn",
        encoder="eexit_conformer",
        encoder_conf=dict(SMALL_ENCODER),
        model="eexit",
        model_conf=dict(ctc_weight=1.0),
        decoder=None,
        decoder_conf={},
    )
    args.update(config)
    torch.manual_seed(0)
    return EarlyExitASRTask.build_model(argparse.Namespace(**args))


def write_model_files(out, **config):
    """config.yaml + model.pth of an untrained early-exit model, as asr_train writes them: a CTC
    Conformer (exits 2, 4, 6) on a small front end unless ``config`` says otherwise. Returns ``out``."""
    import yaml

    args = vars(EarlyExitASRTask.get_parser().parse_args([]))
    args.update(token_list=list(TOKENS), input_size=None, frontend="default",
                frontend_conf=dict(n_fft=128, hop_length=64, win_length=128, n_mels=16),
                specaug=None, normalize="utterance_mvn", encoder="eexit_conformer",
                encoder_conf=dict(SMALL_ENCODER), model="eexit", model_conf=dict(ctc_weight=1.0),
                decoder=None, decoder_conf={}, token_type="char")
    args.update(config)
    torch.manual_seed(0)
    model = EarlyExitASRTask.build_model(argparse.Namespace(**args))
    (out / "config.yaml").write_text(yaml.safe_dump(args))
    torch.save(model.state_dict(), out / "model.pth")
    return out


def batch(batch_size: int = 3, seed: int = 0):
    """Random waveforms and token sequences (ids of TOKENS, -1 padded)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([4000 - 600 * i for i in range(batch_size)])
    speech = torch.randn(batch_size, int(lengths.max()), generator=g)
    text_lengths = torch.tensor([5 - i % 3 for i in range(batch_size)])
    text = torch.full((batch_size, int(text_lengths.max())), -1, dtype=torch.long)
    for i, n in enumerate(text_lengths.tolist()):
        text[i, :n] = torch.randint(2, 8, (n,), generator=g)
    return speech, lengths, text, text_lengths


def check_longest_leaves_first(model, speech, lengths, atol: float) -> None:
    """Decode with a policy that stops the longest utterance at the first exit: it leaves the
    batch there, the other goes on alone to the second, and each result equals that exit's output
    of a full pass over the whole batch (the model is put in eval mode)."""
    from espnet_eexit.exit_policy import ExitPolicy

    class LongestFirst(ExitPolicy):
        needs_posteriors = False

        def decide(self, point):
            return point.lengths == point.lengths.max(), np.zeros(len(point.lengths))

    model.eval()
    decisions = model.encode_with_policy(speech, lengths, LongestFirst())
    with torch.no_grad():
        full = {out.layer: out for out in model.encode_exits(speech, lengths)}
    assert [d.layer for d in decisions] == model.exit_layers[:2]
    for i, d in enumerate(decisions):
        expected = full[d.layer].hidden[i, : int(full[d.layer].lengths[i])]
        assert torch.allclose(d.hidden, expected, atol=atol), i


def count_layer_calls(encoder) -> list:
    """A list that records the 1-based index of every encoder layer call (forward hooks)."""
    calls = []
    for idx, layer in enumerate(encoder.encoders):
        layer.register_forward_hook(lambda *_, idx=idx: calls.append(idx + 1))
    return calls


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """A directory holding TINY_WHISPER (``save_pretrained``), with a non-trivial final encoder
    norm (so that exit norms copied from it can be told from fresh ones)."""
    from transformers import WhisperConfig, WhisperModel

    path = tmp_path_factory.mktemp("whisper") / "tiny"
    torch.manual_seed(0)
    model = WhisperModel(WhisperConfig(**TINY_WHISPER))
    with torch.no_grad():
        model.encoder.layer_norm.weight.uniform_(0.5, 1.5)
        model.encoder.layer_norm.bias.uniform_(-0.5, 0.5)
    model.save_pretrained(path)
    return str(path)


@pytest.fixture
def small_batch():
    return batch()
