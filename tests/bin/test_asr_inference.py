"""``asr_inference`` on bad input, for every backbone family: stereo files, input longer than the
model takes, a config of another project or task, a full disk (README, Reliability).

Tiny randomly initialised models (a CTC Conformer, Whisper, wav2vec2), no download.
"""
import argparse
import errno
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from conftest import SMALL_ENCODER, TOKENS, write_model_files
from exported_models import whisper_tokens

# the options each family decodes with (fast: greedy CTC; Whisper: a few tokens of its decoder)
DECODING = {
    "ctc": ["--ctc_weight", "1.0", "--ctc_greedy", "true"],
    "w2v": ["--ctc_weight", "1.0", "--ctc_greedy", "true"],
    "whisper": ["--ctc_weight", "0.0", "--beam_size", "1", "--maxlenratio", "0.1"],
}


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_whisper_dir):
    """family -> model directory: a CTC Conformer, eexit_whisper, eexit_hf_wav2vec2."""
    from transformers import AutoModel, Wav2Vec2Config

    root = tmp_path_factory.mktemp("models")
    dirs = {}
    for name in DECODING:
        (root / name).mkdir()
    dirs["ctc"] = write_model_files(root / "ctc")
    dirs["whisper"] = write_model_files(
        root / "whisper", token_list=whisper_tokens(), input_size=1, frontend=None, normalize=None,
        encoder="eexit_whisper", encoder_conf=dict(whisper_model=tiny_whisper_dir),
        decoder="eexit_whisper", decoder_conf=dict(whisper_model=tiny_whisper_dir), token_type="word",
        model_conf=dict(ctc_weight=0.0, decoder_per_exit=False, sym_sos="<|notimestamps|>",
                        sym_eos="<|endoftext|>"))
    # wav2vec2's own frame rate (a stride of 320 samples), so that 31 s is 1550 frames
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32, 32, 32), conv_kernel=(10, 8, 4), conv_stride=(5, 8, 8),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(root / "w2v_hf")
    dirs["w2v"] = write_model_files(root / "w2v", input_size=1, frontend=None, normalize=None,
                              encoder="eexit_hf_wav2vec2",
                              encoder_conf=dict(hf_model=str(root / "w2v_hf"), exit_layers=[2, 4]))
    return dirs


def decode(model: Path, family: str, scp: Path, out: Path, *extra: str) -> None:
    from espnet_eexit.bin.asr_inference import main

    main(["--asr_train_config", str(model / "config.yaml"), "--asr_model_file", str(model / "model.pth"),
          "--data_path_and_name_and_type", f"{scp},speech,sound", "--output_dir", str(out),
          *DECODING[family], *extra])


def write_list(tmp_path: Path, waves: dict) -> Path:
    """Each ``{utt: samples}`` ((S,) or (S, channels)) as a 16-kHz wav, and their wav.scp."""
    lines = []
    for key, samples in waves.items():
        soundfile.write(tmp_path / f"{key}.wav", samples, 16000, subtype="FLOAT")
        lines.append(f"{key} {tmp_path / f'{key}.wav'}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    return tmp_path / "wav.scp"


def read(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def signal(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0, 0.1, int(16000 * seconds))).astype("float32")


# ---------------------------------------------------------------------------- stereo
@pytest.mark.parametrize("mode", [[], ["--all_exits", "true", "--batch_size", "3"]], ids=["fixed", "batched"])
@pytest.mark.parametrize("family", sorted(DECODING))
def test_stereo_is_decoded_from_its_first_channel_with_a_warning(models, family, mode, tmp_path, caplog):
    """ESPnet's DefaultFrontend reads the first channel at inference (the CTC Conformer's front
    end); Whisper and wav2vec2 read it too (they stopped the run with a misleading error), and a
    batch may mix mono and stereo files (ESPnet's collate cannot pad them together)."""
    left, right = signal(1.0, 0), signal(1.0, 1)
    scp = write_list(tmp_path, {"left": left, "stereo": np.stack([left, right], axis=1), "right": right})
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        decode(models[family], family, scp, out, *mode)
    assert f"utterance stereo ({tmp_path / 'stereo.wav'}) has 2 channels: decoding its first" in caplog.text
    for d in [out / f"exit{k}" for k in (2, 4)] if mode else [out]:
        best = d / "1best_recog"
        score, token = read(best / "score"), read(best / "token")
        assert score["stereo"] == score["left"] and token["stereo"] == token["left"]
        assert score["stereo"] != score["right"]  # the first channel, not the second or a mix
    assert not (out / "bad_audio").exists() and not (out / "incomplete").exists()


@pytest.mark.parametrize("family", sorted(DECODING))
def test_all_silence_decodes_like_any_other_input(models, family, tmp_path):
    """Digital silence (all zeros) at every exit: a result with a finite score, not a NaN from a
    zero variance or log(0) somewhere in the front end, and not a bad-audio skip."""
    scp = write_list(tmp_path, {"silence": np.zeros(16000, dtype="float32"), "speech": signal(1.0, 0)})
    out = tmp_path / "out"
    decode(models[family], family, scp, out, "--all_exits", "true", "--batch_size", "2")
    for k in (2, 4):
        score = read(out / f"exit{k}" / "1best_recog" / "score")
        assert sorted(score) == ["silence", "speech"]
        assert np.isfinite(float(score["silence"])) and np.isfinite(float(score["speech"])), score
    assert not (out / "bad_audio").exists()


def test_waveform_backbones_read_a_channel_as_espnets_default_frontend():
    """The first at inference, a random one (numpy's generator, as ESPnet's) in training."""
    from espnet_eexit.encoder.waveform import as_waveforms

    x = torch.randn(2, 100, 3)
    assert torch.equal(as_waveforms(x, "e"), x[..., 0])
    assert torch.equal(as_waveforms(x[..., :1], "e"), x[..., 0]) and torch.equal(as_waveforms(x[..., 0], "e"), x[..., 0])
    picked = set()
    for seed in range(20):
        np.random.seed(seed)
        channel = np.random.randint(3)
        np.random.seed(seed)
        assert torch.equal(as_waveforms(x, "e", training=True), x[..., channel])
        picked.add(channel)
    assert picked == {0, 1, 2}
    with pytest.raises(ValueError, match=r"got a tensor of shape \(2, 100, 3, 1\)"):
        as_waveforms(x[..., None], "e")


# ---------------------------------------------------------------------------- long input
def test_input_longer_than_whispers_window_is_bad_audio(models, tmp_path, caplog, capsys):
    """It is named with the limit, gets an empty result, and the others are decoded (it used to
    stop the whole run); --bad_audio error stops before decoding."""
    scp = write_list(tmp_path, {"a": signal(1.0, 0), "long": signal(30.5, 1), "z": signal(1.0, 2)})
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        decode(models["whisper"], "whisper", scp, out)
    why = f"{tmp_path / 'long.wav'}: 30.5 s, longer than the model takes (30 s)"
    assert f"utterance long cannot be decoded ({why}): writing an empty result" in caplog.text
    assert read(out / "bad_audio") == {"long": why}
    token = read(out / "1best_recog" / "token")
    assert sorted(token) == ["a", "long", "z"] and token["long"] == "<space>" and token["a"] != "<space>"
    caplog.clear()
    with pytest.raises(SystemExit) as err, caplog.at_level(logging.WARNING):
        decode(models["whisper"], "whisper", scp, tmp_path / "stopped", "--bad_audio", "error")
    stderr = capsys.readouterr().err
    assert f"utterance long cannot be decoded ({why}): --bad_audio error stops the run" in caplog.text
    assert "empty result" not in caplog.text
    assert err.value.code == 2 and f"1 utterance(s) cannot be decoded, e.g. long: {why}" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "stopped").exists()


@pytest.mark.parametrize("family", ["ctc", "w2v"])
def test_other_backbones_decode_input_longer_than_30_s(models, family, tmp_path):
    scp = write_list(tmp_path, {"long": signal(31.0, 1)})
    decode(models[family], family, scp, tmp_path / "out")
    token = read(tmp_path / "out" / "1best_recog" / "token")
    assert token["long"] not in ("<space>", "") and not (tmp_path / "out" / "bad_audio").exists()


# ---------------------------------------------------------------------------- foreign configs
def foreign_configs(root: Path) -> dict:
    """name -> (config.yaml of another project or task, what the one line must say)."""
    from espnet2.tasks.asr import ASRTask
    from espnet2.tasks.lm import LMTask

    plain = vars(ASRTask.get_parser().parse_args([]))  # an ESPnet asr_train config, ESPnet's encoder
    plain.update(token_list=list(TOKENS), encoder="conformer", model="espnet")
    lm = vars(LMTask.get_parser().parse_args([]))  # another ESPnet task's config
    lm.update(token_list=list(TOKENS), lm="seq_rnn")
    ours_in_espnets_model = {**plain, "encoder": "eexit_conformer", "encoder_conf": dict(SMALL_ENCODER)}
    cases = {
        "espnet_asr": (plain, "encoder: conformer is not an early-exit encoder"),
        "espnet_lm": (lm, "no encoder: (model: lm): the config of another ESPnet task"),
        "espnet_model": (ours_in_espnets_model, "model: espnet, not eexit"),
        "not_a_mapping": (["a", "list"], "not an ESPnet training config"),
    }
    out = {}
    for name, (config, message) in cases.items():
        (root / name).mkdir()
        (root / name / "config.yaml").write_text(yaml.safe_dump(config))
        (root / name / "model.pth").write_bytes(b"")  # never read: the config is refused first
        out[name] = (root / name / "config.yaml", message)
    return out


@pytest.mark.parametrize("tool", ["asr_inference", "export_onnx", "show_exits"])
def test_a_config_of_another_project_or_task_is_one_line(tmp_path, capsys, tool):
    from espnet_eexit.bin import asr_inference, export_onnx, show_exits

    wav_scp = write_list(tmp_path, {"a": signal(0.5, 0)})
    for name, (config, message) in foreign_configs(tmp_path).items():
        out = tmp_path / f"out_{name}"
        model = ["--asr_train_config", str(config), "--asr_model_file", str(config.parent / "model.pth")]
        with pytest.raises(SystemExit) as err:
            if tool == "asr_inference":
                asr_inference.main([*model, "--data_path_and_name_and_type", f"{wav_scp},speech,sound",
                                    "--output_dir", str(out)])
            elif tool == "export_onnx":
                export_onnx.main([*model, "--output_dir", str(out)])
            else:
                show_exits.main([str(config)])
        stderr = capsys.readouterr().err
        lines = [line for line in stderr.splitlines() if "error:" in line]
        assert err.value.code == 2 and len(lines) == 1, (name, stderr)
        assert f"{config}: " in lines[0] and message in lines[0], (name, lines[0])
        assert "Traceback" not in stderr and not out.exists()


@pytest.mark.parametrize("tool", ["asr_inference", "export_onnx"])
def test_a_checkpoint_of_another_size_or_cut_short_is_one_line(tmp_path, capsys, tool):
    """config.yaml of one size with another model's weights, a checkpoint cut short, a missing
    one: one line naming the checkpoint, rc 2, nothing written (was: torch's traceback)."""
    write_model_files(tmp_path)  # output_size 32 (SMALL_ENCODER)
    other = tmp_path / "other"
    other.mkdir()
    write_model_files(other, encoder_conf=dict(SMALL_ENCODER, output_size=48))
    data = (tmp_path / "model.pth").read_bytes()
    (other / "cut.pth").write_bytes(data[: len(data) // 2])
    scp = write_list(tmp_path, {"u": signal(0.5, 0)})
    cases = {tmp_path / "model.pth": r"its weights do not fit the model .*other/config.yaml describes \(size "
                                     r"mismatch for .*\): a checkpoint of another model or size\?",
             other / "cut.pth": r"not a complete PyTorch checkpoint \(cut short while saving or copying\?\)",
             other / "gone.pth": "no such file"}
    for model_file, expected in cases.items():
        out = tmp_path / f"out_{model_file.stem}"
        common = ["--asr_train_config", str(other / "config.yaml"), "--asr_model_file", str(model_file)]
        if tool == "asr_inference":
            from espnet_eexit.bin.asr_inference import main
            args = [*common, "--data_path_and_name_and_type", f"{scp},speech,sound", "--output_dir", str(out),
                    *DECODING["ctc"]]
        else:
            from espnet_eexit.bin.export_onnx import main
            args = [*common, "--output_dir", str(out)]
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "error:" in line]
        assert len(lines) == 1 and str(model_file) in lines[0], err
        assert re.search(expected, lines[0]), lines[0]
        assert "Traceback" not in err
        assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_the_python_api_refuses_a_model_without_exits(tmp_path):
    """EarlyExitSpeech2Text on ESPnet's own model: one clear error (its fixed-exit call used to
    fail with an AttributeError)."""
    from espnet2.tasks.asr import ASRTask

    from espnet_eexit.errors import EarlyExitConfigError
    from espnet_eexit.inference import EarlyExitSpeech2Text

    args = vars(ASRTask.get_parser().parse_args([]))
    args.update(token_list=list(TOKENS), input_size=None, frontend="default",
                frontend_conf=dict(n_fft=128, hop_length=64, win_length=128, n_mels=16),
                normalize=None, encoder="conformer", encoder_conf=dict(SMALL_ENCODER, num_blocks=1),
                model="espnet", model_conf=dict(ctc_weight=1.0), decoder=None, token_type="char")
    model = ASRTask.build_model(argparse.Namespace(**args))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(args))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    with pytest.raises(EarlyExitConfigError, match="needs a model trained with model: eexit .this one is ESPnetASRModel"):
        EarlyExitSpeech2Text(asr_train_config=tmp_path / "config.yaml", asr_model_file=tmp_path / "model.pth",
                             ctc_weight=1.0)


# ---------------------------------------------------------------------------- full disk
def snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_full_disk_while_decoding_leaves_the_decode_dir_as_it_was(models, tmp_path, capsys, monkeypatch):
    """ENOSPC from the plugin's own writer (the policy loop's, at the 2nd utterance): one line,
    exit status 1, the partial outputs removed, and an earlier run's results in the same output
    dir untouched (nothing half-written reads as complete)."""
    from espnet_eexit.bin import asr_inference

    scp = write_list(tmp_path, {f"u{i}": signal(0.5, i) for i in range(3)})
    out = tmp_path / "out"
    (out / "incomplete" / "1best_recog").mkdir(parents=True)  # what a killed run leaves
    (out / "incomplete" / "1best_recog" / "text").write_text("u0 half\n")
    decode(models["ctc"], "ctc", scp, out)
    before = snapshot(out)
    assert sorted(before) == ["1best_recog/score", "1best_recog/text", "1best_recog/token",
                              "1best_recog/token_int", "exit_info"]
    assert len(read(out / "1best_recog" / "token")) == 3

    write_nbest, calls = asr_inference._write_nbest, []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_nbest(*args, **kwargs)

    monkeypatch.setattr(asr_inference, "_write_nbest", full_disk)
    with pytest.raises(SystemExit) as err:
        decode(models["ctc"], "ctc", scp, out, "--exit_policy", "entropy", "--exit_threshold", "1.0")
    stderr = capsys.readouterr().err
    assert err.value.code == 1 and len(calls) == 2 and "Traceback" not in stderr
    assert f"{out}: no space left on device while decoding into it" in stderr
    assert snapshot(out) == before  # no `exit` file, nothing of the failed run


def test_a_real_full_disk_leaves_no_output(models, tmp_path):
    """ESPnet's own writer (the fixed-exit loop) on a 64-KB tmpfs with 8 KB free, mounted in a
    user + mount namespace (no root needed where the kernel allows unprivileged namespaces)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "mount", "-t", "tmpfs", "tmpfs", str(mnt)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare/user namespaces not allowed)")
    scp = write_list(tmp_path, {f"u{i}": signal(0.5, i) for i in range(3)})
    model = models["ctc"]
    decode_cmd = [sys.executable, "-m", "espnet_eexit.bin.asr_inference",
                  "--asr_train_config", str(model / "config.yaml"), "--asr_model_file", str(model / "model.pth"),
                  "--data_path_and_name_and_type", f"{scp},speech,sound", "--output_dir", str(mnt / "out"),
                  *DECODING["ctc"]]
    script = (f"mount -t tmpfs -o size=64k tmpfs {mnt} && head -c 57344 /dev/zero > {mnt}/filler && "
              f"{' '.join(decode_cmd)} > /dev/null 2> {tmp_path}/stderr; echo rc=$?; find {mnt} | sort")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                         capture_output=True, text=True, env=env)
    stderr = (tmp_path / "stderr").read_text()
    assert run.stdout.splitlines() == ["rc=1", str(mnt), f"{mnt}/filler"], (run.stdout, stderr)
    assert f"{mnt / 'out'}: no space left on device while decoding into it" in stderr
    assert "Traceback" not in stderr
