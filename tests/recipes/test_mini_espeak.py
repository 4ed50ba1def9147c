"""End to end through ESPnet: espeak-ng speech -> char tokens -> collect stats -> training with
``encoder: eexit_conformer`` / ``model: eexit`` -> decoding from every exit -> sclite scoring.

Runs the real recipe (``egs2/mini_espeak/asr1/run.sh`` -> ``egs2/TEMPLATE/asr1/asr.sh``) on a tiny
corpus with one epoch, in a temporary copy, then checks what it wrote and that decoding from different exits really computes
different depths.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from espnet_eexit.scoring import read_sclite
from recipe_helpers import REPO, copy_recipe, require_tools, results_rows, run

EXP = "exp/asr_eexit_conformer_mini"
DECODE = f"{EXP}/decode_ctc_asr_model_valid.loss.ave"


@pytest.fixture(autouse=True, scope="module")
def tts_engine():
    require_tools("espeak-ng", "sox")


@pytest.fixture(scope="module")
def trained_recipe(tmp_path_factory):
    recipe = copy_recipe(tmp_path_factory.mktemp("e2e"), "mini_espeak")
    # entropy <= 1.0 always holds (every utterance stops at exit 2); max_posterior >= 1.0 never
    # does for a softmax that is not one-hot (every utterance goes to exit 6).
    run(recipe, "--local_data_opts", "--num_train 40 --num_dev 4 --num_test 4",
        "--asr_args", "--max_epoch 1 --batch_size 8",
        "--exit_policies", "entropy:1.0 max_posterior:1.0")
    return recipe


def read_keys(path: Path):
    return [line.split(maxsplit=1)[0] for line in path.read_text().splitlines() if line.strip()]


def test_data_and_token_list(trained_recipe):
    for split, n in (("train", 40), ("dev", 4), ("test", 4)):
        keys = read_keys(trained_recipe / "data" / split / "wav.scp")
        assert len(keys) == n and keys == sorted(keys)
        assert read_keys(trained_recipe / "data" / split / "text") == keys
    train_spk = set(l.split()[1] for l in (trained_recipe / "data/train/utt2spk").read_text().splitlines())
    test_spk = set(l.split()[1] for l in (trained_recipe / "data/test/utt2spk").read_text().splitlines())
    assert train_spk and test_spk and not train_spk & test_spk  # speaker-disjoint
    tokens = (trained_recipe / "data/token_list/char/tokens.txt").read_text().split()
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>" and "<space>" in tokens


def test_trained_config_keeps_the_plugin_and_reloads(trained_recipe, monkeypatch):
    monkeypatch.chdir(trained_recipe)  # config.yaml holds recipe-relative paths (ESPnet convention)
    from espnet_eexit.model import EarlyExitASRModel
    from espnet_eexit.tasks.asr import EarlyExitASRTask

    config = trained_recipe / EXP / "config.yaml"
    text = config.read_text()
    assert "encoder: eexit_conformer" in text and "model: eexit" in text
    model, args = EarlyExitASRTask.build_model_from_file(config, trained_recipe / EXP / "valid.loss.ave.pth")
    assert isinstance(model, EarlyExitASRModel) and model.exit_layers == [2, 4, 6]
    # ESPnet's reporter logged our per-exit statistics.
    log = (trained_recipe / EXP / "train.log").read_text()
    for key in ("loss_ctc_exit2", "loss_ctc_exit4", "loss_ctc_exit6", "cer_ctc_exit2"):
        assert key in log, key


def test_every_exit_is_decoded_and_policies_really_skip_layers(trained_recipe):
    test_keys = read_keys(trained_recipe / "data/test/text")
    for k in (2, 4, 6):
        out = trained_recipe / DECODE / "test" / f"exit{k}"
        assert read_keys(out / "token") == test_keys
        conf = [line.split() for line in (out / "confidence").read_text().splitlines()]
        assert [c[0] for c in conf] == test_keys and all(len(c) == 5 for c in conf)
        assert all(0.0 <= float(v) <= 1.0 for c in conf for v in c[1:4])
        # agreement: exits in a row with the same greedy hypothesis, at most the exits so far
        assert all(1 <= float(c[4]) <= k // 2 and float(c[4]).is_integer() for c in conf)
    depths = {}
    for run_dir, layer in (("policy_entropy_1.0", 2), ("policy_max_posterior_1.0", 6)):
        out = trained_recipe / DECODE / "test" / run_dir
        exits = [line.split() for line in (out / "exit").read_text().splitlines()]
        assert [e[0] for e in exits] == test_keys and {int(e[1]) for e in exits} == {layer}
        info = dict(line.split(" ", 1) for line in (out / "exit_info").read_text().splitlines())
        assert int(info["utterances"]) == len(test_keys)
        depths[layer] = float(info["layers_computed_per_utterance"])  # counted by hooks
    assert depths == {2: 2.0, 6: 6.0}


def test_speech2text_from_two_exits_computes_two_depths(trained_recipe, monkeypatch):
    monkeypatch.chdir(trained_recipe)
    import soundfile

    from espnet_eexit.inference import EarlyExitSpeech2Text

    wav_path = (trained_recipe / "data/test/wav.scp").read_text().split()[1]
    speech, _ = soundfile.read(wav_path)
    calls = {}
    for k in (2, 4):
        s2t = EarlyExitSpeech2Text(asr_train_config=trained_recipe / EXP / "config.yaml",
                                   asr_model_file=trained_recipe / EXP / "valid.loss.ave.pth",
                                   exit_layer=k, ctc_weight=1.0, beam_size=2, device="cpu")
        ran = []
        for i, layer in enumerate(s2t.asr_model.encoder.encoders):
            layer.register_forward_hook(lambda *_, i=i: ran.append(i + 1))
        results = s2t(torch.tensor(speech, dtype=torch.float32))
        assert len(results) >= 1 and isinstance(results[0][1], list)
        calls[k] = ran
    assert calls == {2: [1, 2], 4: [1, 2, 3, 4]}


def test_results_table_has_a_numeric_row_per_exit_and_a_plot(trained_recipe):
    md = (trained_recipe / "RESULTS.md").read_text()
    results_rows(md, {2: "0.33", 4: "0.67", 6: "1.00"}, 4)
    # the policy table: entropy <= 1 stops everything at exit 2 of 6 (depth 2/6, counted by hooks),
    # max_posterior >= 1 nothing before exit 6
    rows = {r.split(" | ")[0][2:]: [c.strip() for c in r.strip("|").split("|")[1:]]
            for r in md.splitlines() if r.startswith("| entropy threshold=") or r.startswith("| max_posterior threshold=")}
    assert rows["entropy threshold=1"][2::3] == ["0.333", "0.333"]  # dev and test depth
    assert rows["max_posterior threshold=1"][2::3] == ["1.000", "1.000"]
    assert "Cheapest threshold whose WER is within +0.5" in md  # the sweep's table
    for dset in ("dev", "test"):
        sweep = (trained_recipe / DECODE / dset / "exit_sweep.tsv").read_text().splitlines()
        policies = {line.split("\t")[0] for line in sweep[1:]}
        # test replays the thresholds chosen on dev (the valid set, decoded too): one point per
        # policy that reached the margin on dev
        from espnet_eexit.bin import exit_sweep

        _, best, _ = exit_sweep.operating_points(
            exit_sweep.read_tsv(trained_recipe / DECODE / "dev" / "exit_sweep.tsv"), 0.5)
        expected = {f"{p}@chosen" for p, r in best.items() if r is not None and p != "oracle"}
        assert {p for p in policies if p.endswith("@chosen")} == (set() if dset == "dev" else expected)
        policies = {p for p in policies if not p.endswith("@chosen")}
        assert policies - {"learned"} == {"fixed", "entropy", "max_posterior", "nbest_posterior", "agreement", "oracle"}
        # the learned policy's curve exactly when stage 13 could fit a controller on dev (a 1-epoch
        # model's exits may never agree with the last: then the log says why there is none)
        assert ("learned" in policies) == (trained_recipe / DECODE / "exit_controller.json").is_file()
        assert (trained_recipe / DECODE / dset / "exit_sweep.png").read_bytes()[:4] == b"\x89PNG"
    for k in (2, 4, 6):
        report = (trained_recipe / DECODE / "test" / f"exit{k}" / "score_wer" / "result.txt").read_text()
        assert "Sum/Avg" in report
    png = (trained_recipe / EXP / "wer_per_exit.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_bad_exit_requests_fail_with_one_clear_line(trained_recipe):
    py = str(REPO / "tools" / "venv" / "bin" / "python")
    proc = subprocess.run(
        [py, "-m", "espnet_eexit.bin.asr_inference", "--exit_layer", "3",
         "--asr_train_config", f"{EXP}/config.yaml", "--asr_model_file", f"{EXP}/valid.loss.ave.pth",
         "--data_path_and_name_and_type", "data/test/wav.scp,speech,sound",
         "--output_dir", "bad_exit"],
        cwd=trained_recipe, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "exit layer 3 is not an exit of this model; its exits are [2, 4, 6]" in proc.stderr
    assert "Traceback" not in proc.stderr

    # the recipe checks --exit_layers against the model before decoding anything
    before = sorted(p.relative_to(trained_recipe) for p in (trained_recipe / DECODE).rglob("*"))
    proc = run(trained_recipe, "--stage", "12", "--exit_layers", "3", check=False)
    assert proc.returncode == 2
    assert "--exit_layers '3': 3 is not an exit of exp/asr_eexit_conformer_mini/config.yaml (its exits: 2 4 6)" in proc.stderr
    assert "Decoding" not in proc.stdout and "Traceback" not in proc.stderr
    assert sorted(p.relative_to(trained_recipe) for p in (trained_recipe / DECODE).rglob("*")) == before

    proc = subprocess.run(
        [py, "-m", "espnet_eexit.bin.asr_train", "--config", "conf/train_asr_eexit_conformer_mini.yaml",
         "--encoder_conf", "exit_layers=[0,7]", "--token_list", "data/token_list/char/tokens.txt",
         "--collect_stats", "true", "--output_dir", "bad_stats",
         "--train_data_path_and_name_and_type", "data/train/wav.scp,speech,sound",
         "--valid_data_path_and_name_and_type", "data/dev/wav.scp,speech,sound",
         "--train_shape_file", "data/train/wav.scp", "--valid_shape_file", "data/dev/wav.scp"],
        cwd=trained_recipe, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "exit_layers=[0, 7]: [0, 7] out of range" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_option_and_missing_inputs_fail_clearly(tmp_path):
    recipe = copy_recipe(tmp_path, "mini_espeak")
    proc = run(recipe, "--no_such_option", "1", check=False)
    assert proc.returncode != 0 and "unknown option --no_such_option" in proc.stderr
    proc = run(recipe, "--stage", "12", check=False)
    assert proc.returncode != 0 and "is missing: run the stage that makes it first" in proc.stdout
    # options that would fail late are refused before stage 1
    proc = run(recipe, "--stage", "abc", check=False)
    assert proc.returncode == 2 and "ERROR: --stage must be a whole number (got 'abc')" in proc.stdout
    assert "Stage 1" not in proc.stdout and "Successfully" not in proc.stdout
    proc = run(recipe, "--exit_policies", "entropy:0.2 entropy:1.5", check=False)
    assert proc.returncode == 2 and "Stage 1" not in proc.stdout
    assert "--exit_threshold 1.5: out of range for policy 'entropy'" in proc.stderr


def _train_wer(recipe, exp, decode):
    """{exit: WER} of the decoding of the training set, as stage 13 scored it."""
    wer = {}
    for result in sorted((recipe / exp / decode / "train").glob("exit*/score_wer/result.txt")):
        wer[int(result.parent.parent.name[len("exit"):])] = read_sclite(result).error_rate
    return wer


def _train_losses(recipe, exp, key):
    """Per epoch, the training set's mean ``key`` (ESPnet's 'Nepoch results: [train] ...' lines)."""
    log = (recipe / exp / "train.log").read_text()
    return [float(m.group(1)) for m in re.finditer(
        rf"\d+epoch results: \[train\].*?\b{key}=([-\d.e+]+)", log)]


def _check_it_learned(recipe, exp, keys):
    """What a few epochs of a tiny model must show: every exit's training loss went down (its WER
    on the training set may still be ~100 %: the plausibility this scale allows)."""
    for key in keys:
        losses = _train_losses(recipe, exp, key)
        assert len(losses) >= 2 and losses[-1] < losses[0], (key, losses)


def test_two_process_data_parallel_training_on_cpu(trained_recipe):
    """ESPnet's env:// mode on CPU (torchrun, gloo: ESPnet's launcher spawns nothing without GPUs):
    the 1-process training's own command run by 2 ranks (the plugin registered in each) ends with
    both exiting 0 and no teardown abort, and a result of the same kind as the 1-process run's:
    the same checkpoint tensors and shapes, every exit's training loss going down."""
    import shlex

    single = trained_recipe / "exp" / "asr_eexit_conformer_mini"
    command = shlex.split((single / "train.log").read_text().splitlines()[0].lstrip("# "))
    assert command[:3] == ["python3", "-m", "espnet_eexit.bin.asr_train"], command
    args, skip = [], False
    for arg in command[3:]:  # its options, without the launcher's --multiprocessing_distributed
        if skip or arg == "--multiprocessing_distributed":
            skip = not skip
            continue
        args.append(arg)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "espnet_eexit.bin.asr_train",
         *args, "--output_dir", "exp/asr_ddp", "--max_epoch", "2", "--ngpu", "0", "--dist_backend", "gloo"],
        cwd=trained_recipe, capture_output=True, text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "terminate called" not in out and "Signal 6" not in out, out[-3000:]
    # rank 0 of 2 logs (ESPnet lets the other ranks log errors only)
    assert re.search(r":0/2\] .*2epoch results", out), out[-3000:]
    ddp = torch.load(trained_recipe / "exp" / "asr_ddp" / "valid.loss.ave.pth", map_location="cpu")
    ref = torch.load(single / "valid.loss.ave.pth", map_location="cpu")
    assert {k: v.shape for k, v in ddp.items()} == {k: v.shape for k, v in ref.items()}
    for k in (2, 4, 6):
        losses = [float(m.group(1)) for m in re.finditer(
            rf"\d+epoch results: \[train\].*?\bloss_ctc_exit{k}=([-\d.e+]+)", out)]
        assert len(losses) == 2 and losses[1] < losses[0], (k, losses)


def test_aed_with_a_decoder_per_exit_runs_stages_10_to_13(trained_recipe):
    """The paper's AED variant (per-exit decoders, kept by valid accuracy) through decoding and
    scoring: it used to stop at stage 12 (asr.sh looked for valid.loss.ave.pth)."""
    exp, decode = "exp/asr_eexit_conformer_mini_aed", "decode_aed_asr_model_valid.acc.ave"
    run(trained_recipe, "--stage", "10", "--asr_config", "conf/tuning/train_asr_eexit_conformer_mini_aed.yaml",
        "--asr_tag", "eexit_conformer_mini_aed", "--inference_config", "conf/decode_aed.yaml",
        "--asr_args", "--max_epoch 3 --batch_size 8", "--inference_args", "--beam_size 2", "--inference_nj", "1",
        "--test_sets", "train", "--exit_policies", "", "--exit_sweep", "false")
    assert (trained_recipe / exp / "valid.acc.ave.pth").exists()
    log = (trained_recipe / exp / "train.log").read_text()
    assert all(f"acc_exit{k}" in log for k in (2, 4, 6))
    wer = _train_wer(trained_recipe, exp, decode)
    assert sorted(wer) == [2, 4, 6], wer  # every exit decoded and scored
    _check_it_learned(trained_recipe, exp, [f"loss_att_exit{k}" for k in (2, 4, 6)] +
                      [f"loss_ctc_exit{k}" for k in (2, 4, 6)])
    assert f"### asr_eexit_conformer_mini_aed: {decode}" in (trained_recipe / "RESULTS.md").read_text()


def test_pretrained_wav2vec2_backbone_runs_stages_10_to_13(trained_recipe, tmp_path):
    """eexit_hf_wav2vec2 (a tiny random wav2vec2 saved as a local checkpoint) through decoding
    and scoring: show_exits used to raise KeyError at stage 12 for it."""
    from transformers import AutoModel, Wav2Vec2Config

    # wav2vec2's own frame rate (a stride of 320 samples: 50 frames per second)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32, 32, 32), conv_kernel=(10, 8, 4), conv_stride=(5, 8, 8),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(tmp_path / "w2v")
    exp, decode = "exp/asr_eexit_wav2vec2_mini", "decode_ctc_asr_model_valid.loss.ave"
    run(trained_recipe, "--stage", "10", "--feats_normalize", "none",
        "--asr_config", "conf/tuning/train_asr_eexit_hf_wav2vec2_mini.yaml", "--asr_tag", "eexit_wav2vec2_mini",
        "--asr_args", f"--encoder_conf hf_model={tmp_path / 'w2v'} --max_epoch 2",
        "--inference_args", "--ctc_greedy true", "--inference_nj", "1",
        "--test_sets", "train", "--exit_policies", "entropy:0.5", "--exit_sweep", "false")
    wer = _train_wer(trained_recipe, exp, decode)
    assert sorted(wer) == [2, 4], wer  # every exit decoded and scored
    # its statistics (of raw samples) went to a directory of their own: the filterbank model's
    # global MVN statistics, which its config reads, are still 40-dimensional
    import numpy as np

    assert (trained_recipe / "exp" / "asr_stats_raw_char_waveform" / "train" / "speech_shape").is_file()
    assert np.load(trained_recipe / "exp" / "asr_stats_raw_char" / "train" / "feats_stats.npz")["sum"].shape == (40,)
    _check_it_learned(trained_recipe, exp, ["loss_ctc_exit2", "loss_ctc_exit4"])
    info = (trained_recipe / exp / decode / "train" / "policy_entropy_0.5" / "exit_info").read_text()
    assert "utterances 40" in info



def test_stage_15_exports_and_the_runtime_matches_pytorch_greedy(trained_recipe, monkeypatch):
    """Stage 15 exports the trained model to ONNX segments, decodes every exit and the policies with
    the torch-free runtime (fp32 and int8) and scores them; fp32 transcripts equal PyTorch's greedy
    CTC decoding of the same exit."""
    run(trained_recipe, "--stage", "15", "--stop_stage", "15", "--exit_policies", "entropy:1.0 max_posterior:1.0")
    monkeypatch.chdir(trained_recipe)
    import soundfile

    from espnet_eexit.inference import EarlyExitSpeech2Text

    manifest = (trained_recipe / EXP / "onnx" / "model.json").read_text()
    assert '"exit_layers": [\n  2,\n  4,\n  6\n ]' in manifest
    test_keys = read_keys(trained_recipe / "data/test/text")
    wavs = dict(line.split() for line in (trained_recipe / "dump/raw/test/wav.scp").read_text().splitlines())
    for k in (2, 4, 6):
        s2t = EarlyExitSpeech2Text(asr_train_config=f"{EXP}/config.yaml", asr_model_file=f"{EXP}/valid.loss.ave.pth",
                                   exit_layer=k, ctc_weight=1.0, ctc_greedy=True, device="cpu")
        runtime_text = dict((line.split(" ", 1) + [""])[:2] for line in
                            (trained_recipe / EXP / "onnx_runtime_fp32/test" / f"exit{k}" / "text").read_text().splitlines())
        assert sorted(runtime_text) == test_keys
        for key in test_keys:
            speech, _ = soundfile.read(wavs[key], dtype="float32")
            # ESPnet's char tokens2text keeps a final <space> as a trailing space, as the runtime does
            assert runtime_text[key].strip() == (s2t(torch.tensor(speech))[0][0] or "").strip(), (k, key)
        for precision in ("fp32", "int8"):
            assert "Sum/Avg" in (trained_recipe / EXP / f"onnx_runtime_{precision}/test/exit{k}/score_wer/result.txt").read_text()
    # the policies stop where they stop in PyTorch: entropy <= 1 at the first exit, max_posterior >= 1 never
    for run_dir, layer in (("policy_entropy_1.0", 2), ("policy_max_posterior_1.0", 6)):
        exits = (trained_recipe / EXP / "onnx_runtime_fp32/test" / run_dir / "exit").read_text().split("\n")
        assert {int(line.split()[1]) for line in exits if line} == {layer}
    md = (trained_recipe / "RESULTS.md").read_text()
    for precision in ("fp32", "int8"):
        section = md[md.index(f"asr_eexit_conformer_mini: ONNX runtime {precision}"):]
        results_rows(section, {2: "0.33", 4: "0.67", 6: "1.00"}, 4)
