"""The torch-free runtime against PyTorch on the same weights: features, every exit, policies,
segments that never run, dropped utterances, the CLI and its errors."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from conftest import TOKENS
from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.exit_policy import ExitPolicy, build_exit_policy
from espnet_eexit.runtime import EarlyExitRuntime
from exported_models import ENCODERS, HF_ENCODERS, export, tiny_model, waveforms


@pytest.fixture(scope="module")
def conformer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runtime")
    model = tiny_model("conformer", tmp)
    return model, export(model, tmp / "onnx", quantize="int8")


def torch_exits(model, waveform):
    """{layer: (T', V) log-posteriors} of one utterance, PyTorch."""
    speech = torch.tensor(waveform)[None]
    with torch.no_grad():
        return {o.layer: model.ctc_for_exit(o.layer).log_softmax(o.hidden)[0].numpy()
                for o in model.encode_exits(speech, torch.tensor([len(waveform)]))}


def best_path(log_probs, blank):
    ids = torch.unique_consecutive(torch.tensor(log_probs).argmax(-1))
    return ids[ids != blank].tolist()


def test_import_pulls_in_neither_torch_nor_espnet():
    code = ("import sys, espnet_eexit.runtime, espnet_eexit.runtime.transcribe; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'espnet', 'espnet2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_features_equal_espnets_front_end(conformer):
    model, out = conformer
    runtime = EarlyExitRuntime(out)
    for w in waveforms():
        with torch.no_grad():
            ref, n = model._extract_feats(torch.tensor(w)[None], torch.tensor([len(w)]))
        ours = runtime.features(w)
        assert ours.shape == (int(n[0]), 16) == (runtime.features.num_frames(len(w)), 16)
        np.testing.assert_allclose(ours, ref[0].numpy(), atol=1e-4)


@pytest.mark.parametrize("name", sorted(ENCODERS) + sorted(HF_ENCODERS))
def test_every_exit_equals_pytorch(name, tmp_path):
    model = tiny_model(name, tmp_path)
    runtime = EarlyExitRuntime(export(model, tmp_path / "onnx"))
    for w in waveforms():
        expected = torch_exits(model, w)
        seen = []
        for layer, log_probs, lengths in runtime.iter_exits([w]):
            seen.append(layer)
            np.testing.assert_allclose(log_probs[0], expected[layer], atol=1e-4)
            text, ids = runtime.decode(log_probs[0, : lengths[0]])
            assert ids == best_path(expected[layer], model.blank_id)
            assert text == "".join(TOKENS[i] for i in ids).replace("<space>", " ")
        assert seen == model.exit_layers


@pytest.mark.parametrize("name", ["hf_wav2vec2", "hf_wav2vec2_stable", "hf_wavlm"])
def test_a_waveform_model_gives_each_utterance_of_a_padded_batch_its_own_result(name, tmp_path):
    """wav2vec2 / WavLM: the front end starts from the samples (no features file); a padded batch
    gives each utterance what it gets alone in PyTorch (the GroupNorm CNN's statistics leave the
    padding out in the graph too; WavLM's position bias is made again in each segment), in fp32
    and int8 (at the same exits)."""
    model = tiny_model(name, tmp_path)
    out = export(model, tmp_path / "onnx", quantize="int8")
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["features"] == {"kind": "waveform", "fs": 16000}
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".onnx") == ["model.json"]
    runtime = EarlyExitRuntime(out)
    batch = waveforms(lengths=(16000, 9000, 5200))
    alone = [torch_exits(model, w) for w in batch]
    for layer, log_probs, lengths in runtime.iter_exits(batch):
        for i, expected in enumerate(alone):
            assert lengths[i] == expected[layer].shape[0]
            np.testing.assert_allclose(log_probs[i, : lengths[i]], expected[layer], atol=1e-4)
    int8 = EarlyExitRuntime(out, precision="int8")
    assert [k for k, _, _ in int8.iter_exits(batch)] == model.exit_layers
    assert runtime.bytes_up_to_exit(4) == sum((out / f).stat().st_size for f in ("front_end.onnx", "exit2.onnx", "exit4.onnx"))


def test_policies_stop_where_pytorch_stops(conformer):
    """Same weights, same batch (equal lengths, so ESPnet's batched front end has no padding):
    the same exit and confidence per utterance for every policy."""
    model, out = conformer
    runtime = EarlyExitRuntime(out)
    batch = waveforms(lengths=(8000,) * 6, seed=3)
    speech = torch.tensor(np.stack(batch))
    lengths = torch.full((6,), 8000)
    with torch.no_grad():
        first = {o.layer: model.ctc_for_exit(o.layer).log_softmax(o.hidden).numpy()
                 for o in model.encode_exits(speech, lengths)}[2]
    from espnet_eexit.exit_policy import mean_normalised_entropy, mean_max_posterior

    def between(values):  # a threshold that splits the batch at the first exit
        v = np.sort(values)
        return float((v[2] + v[3]) / 2)

    full = np.full(6, first.shape[1])
    specs = [
        ("entropy", between(mean_normalised_entropy(first, full))),
        ("max_posterior", between(mean_max_posterior(first, full))),
        ("budget", 0.7),
        ("agreement", 2),
    ]
    for name, threshold in specs:
        decisions = model.encode_with_policy(speech, lengths, build_exit_policy(name, threshold=threshold).bind(
            model.exit_layers, 6))
        results = runtime.transcribe(batch, build_exit_policy(name, threshold=threshold))
        assert [r.exit_layer for r in results] == [d.layer for d in decisions], name
        np.testing.assert_allclose([r.confidence for r in results], [d.confidence for d in decisions],
                                   atol=1e-4, equal_nan=True)
        if name in ("entropy", "max_posterior"):
            assert len({r.exit_layer for r in results}) > 1, name  # the threshold splits the batch


def test_segments_above_the_exit_never_run(conformer):
    _, out = conformer
    runtime = EarlyExitRuntime(out)
    results = runtime.transcribe(waveforms(), "fixed:2")
    assert [r.exit_layer for r in results] == [2, 2, 2]
    assert dict(runtime.graph_runs) == {"front_end": 1, "exit2": 1}
    assert runtime.layers_computed == 2 * 3
    runtime.transcribe(waveforms(), "fixed")  # the last exit
    assert dict(runtime.graph_runs) == {"front_end": 2, "exit2": 2, "exit4": 1, "exit6": 1}


class LongestFirst(ExitPolicy):
    """Stops the longest utterance at the first exit, the others at the last; records what it saw."""

    name = "longest_first"

    def __init__(self):
        super().__init__()
        self.seen = {}

    def decide(self, point):
        self.seen[point.layer] = (point.log_probs, point.lengths)
        stop = (point.lengths == point.lengths.max()) & (point.layer == 2)
        return stop, np.zeros(len(point.lengths))


def test_dropping_utterances_equals_encoder_state_select(conformer):
    """When the longest utterance leaves, the runtime cuts the batch, its padding and the relative
    positions as EncoderState.select does: the deeper exits' posteriors equal PyTorch's on the same
    features."""
    model, out = conformer
    runtime = EarlyExitRuntime(out)
    batch = waveforms(lengths=(12000, 7000, 5000))
    policy = LongestFirst()
    results = runtime.transcribe(batch, policy)
    assert [r.exit_layer for r in results] == [2, 6, 6]
    assert dict(runtime.graph_runs) == {"front_end": 1, "exit2": 1, "exit4": 1, "exit6": 1}
    assert runtime.layers_computed == 2 * 3 + 4 * 2

    feats, lengths = (torch.tensor(a) for a in runtime.batch_features(batch))
    encoder = model.encoder
    with torch.no_grad():
        feats, lengths = model.normalize(feats, lengths)
        state = encoder.advance(encoder.start(feats, lengths), 2)
        state = encoder.advance(state.select(torch.tensor([1, 2])), 6)
        out6 = encoder.exit_output(state)
        expected = model.ctc_for_exit(6).log_softmax(out6.hidden).numpy()
    log_probs, lengths6 = policy.seen[6]
    assert log_probs.shape == expected.shape and lengths6.tolist() == out6.lengths.tolist()
    for j in range(2):
        n = lengths6[j]
        np.testing.assert_allclose(log_probs[j, :n], expected[j, :n], atol=1e-4)
        assert results[1 + j].token_ids == best_path(expected[j, :n], model.blank_id)


def test_clear_errors_for_a_broken_export(conformer, tmp_path):
    _, out = conformer
    with pytest.raises(EarlyExitConfigError, match="model.json: no such file"):
        EarlyExitRuntime(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    manifest = json.loads((broken / "model.json").read_text())
    manifest["token_list"] = manifest["token_list"][:-1]
    (broken / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(EarlyExitConfigError, match="token_list has 8 tokens but exit 2's CTC head outputs 9"):
        EarlyExitRuntime(broken)
    fp32_only = tmp_path / "fp32"
    shutil.copytree(out, fp32_only)
    manifest = json.loads((fp32_only / "model.json").read_text())
    for g in manifest["graphs"]:
        g.pop("int8_file")
    (fp32_only / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(EarlyExitConfigError, match="no int8 file"):
        EarlyExitRuntime(fp32_only, precision="int8")


def test_int8_runs_the_same_exits(conformer):
    _, out = conformer
    fp32, int8 = EarlyExitRuntime(out), EarlyExitRuntime(out, precision="int8")
    w = waveforms()[0]
    for (k1, lp1, _), (k2, lp2, _) in zip(fp32.iter_exits([w]), int8.iter_exits([w])):
        assert k1 == k2 and lp1.shape == lp2.shape and not np.array_equal(lp1, lp2)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "espnet_eexit.runtime.transcribe", *map(str, args)],
                          capture_output=True, text=True)


def test_cli_writes_text_exit_and_measured_depth_and_survives_bad_files(conformer, tmp_path):
    _, out = conformer
    batch = waveforms()
    lines = []
    for i, w in enumerate(batch):
        soundfile.write(tmp_path / f"u{i}.wav", w, 16000)
        lines.append(f"u{i} {tmp_path / f'u{i}.wav'}\n")
    soundfile.write(tmp_path / "stereo.wav", np.stack([batch[0], batch[1][: len(batch[0])] if len(batch[1]) >= len(batch[0]) else np.zeros(len(batch[0]))], 1), 16000)
    (tmp_path / "empty.wav").write_bytes(b"")
    lines += [f"u3 {tmp_path / 'stereo.wav'}\n", f"u4 {tmp_path / 'empty.wav'}\n"]
    (tmp_path / "wav.scp").write_text("".join(lines))
    proc = run_cli("--model_dir", out, "--policy", "fixed:4", "--wav_scp", tmp_path / "wav.scp",
                   "--output_dir", tmp_path / "dec", "--batch_size", 2)
    assert proc.returncode == 0, proc.stderr
    assert "utterance u4 cannot be decoded" in proc.stderr
    runtime = EarlyExitRuntime(out)
    expected = [r.text for r in runtime.transcribe(batch, "fixed:4")]
    text = dict(line.split(" ", 1) for line in (tmp_path / "dec/text").read_text().splitlines())
    assert [text[f"u{i}"] for i in range(3)] == expected and text["u4"] == ""
    # a stereo file is read from its first channel, as ESPnet's front end does
    assert text["u3"] == runtime.transcribe([batch[0]], "fixed:4")[0].text
    info = dict(line.split(" ", 1) for line in (tmp_path / "dec/exit_info").read_text().splitlines())
    assert info["exit_layer"] == "4" and info["utterances"] == "4" and info["relative_depth"] == "0.667"
    assert (tmp_path / "dec/bad_audio").read_text().startswith("u4 ")


def test_cli_refuses_in_one_line(conformer, tmp_path):
    _, out = conformer
    soundfile.write(tmp_path / "r8.wav", waveforms()[0][:4000], 8000)
    for args, message in (
        (["--model_dir", out, tmp_path / "r8.wav"], "is 8000 Hz but the model was trained on 16000 Hz"),
        (["--model_dir", out, "--policy", "entropy:2", tmp_path / "r8.wav"], "out of range for policy 'entropy'"),
        (["--model_dir", out, "--policy", "fixed:3", tmp_path / "r8.wav"], "3 is not an exit of this model"),
        (["--model_dir", tmp_path, tmp_path / "r8.wav"], "model.json: no such file"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert message in proc.stderr


def test_the_exports_default_policy_applies_when_none_is_given(tmp_path):
    from espnet_eexit.export.onnx_segments import export_model

    model = tiny_model("transformer", tmp_path)
    with pytest.raises(EarlyExitConfigError, match="--exit_layer 3 is not an exit of this model"):
        export_model(model, tmp_path / "bad", list(TOKENS), 16000, default_policy="fixed:3")
    export_model(model, tmp_path / "onnx", list(TOKENS), 16000, default_policy="fixed:4")
    runtime = EarlyExitRuntime(tmp_path / "onnx")
    assert [r.exit_layer for r in runtime.transcribe(waveforms())] == [4, 4, 4]
    assert [r.exit_layer for r in runtime.transcribe(waveforms(), "fixed")] == [6, 6, 6]


def test_the_front_end_computes_its_positions_and_the_input_limit_is_the_runtimes(tmp_path):
    """The front end stores no sinusoid table (it computes the positions from the input's length):
    no (1, P, D) constant, the same graph whatever --max_input_seconds; with --max_input_seconds 1
    the posteriors equal PyTorch's on audio within the limit, longer audio is refused (API) or
    skipped with a warning (CLI)."""
    import onnx
    from onnx import numpy_helper

    from espnet_eexit.export.onnx_segments import export_model

    for kind in ("conformer", "transformer"):  # relative and absolute positions
        model = tiny_model(kind, tmp_path)
        export_model(model, tmp_path / kind, list(TOKENS), 16000)
        export_model(model, tmp_path / f"{kind}_short", list(TOKENS), 16000, max_input_seconds=1.0)
        front = onnx.load(str(tmp_path / kind / "front_end.onnx"))
        tables = [t.name for t in front.graph.initializer
                  if numpy_helper.to_array(t).ndim == 3 and t.dims[-1] == model.encoder.output_size()]
        assert tables == [], f"{kind}: a stored positional table {tables}"
        assert ((tmp_path / kind / "front_end.onnx").read_bytes()
                == (tmp_path / f"{kind}_short" / "front_end.onnx").read_bytes()), kind
    model = tiny_model("conformer", tmp_path)
    export_model(model, tmp_path / "short", list(TOKENS), 16000, max_input_seconds=1.0)
    runtime = EarlyExitRuntime(tmp_path / "short")
    w = waveforms(lengths=(15900,))[0]
    expected = torch_exits(model, w)
    for layer, log_probs, _ in runtime.iter_exits([w]):
        np.testing.assert_allclose(log_probs[0], expected[layer], atol=1e-4)
    too_long = waveforms(lengths=(16500,))[0]
    with pytest.raises(EarlyExitConfigError, match="audio of 1.0 s: this export takes at most 1 s"):
        runtime.transcribe([too_long])
    soundfile.write(tmp_path / "long.wav", too_long, 16000)
    soundfile.write(tmp_path / "ok.wav", w, 16000)
    proc = run_cli("--model_dir", tmp_path / "short", tmp_path / "long.wav", tmp_path / "ok.wav")
    assert proc.returncode == 0, proc.stderr
    assert "long.wav: 1.0 s, longer than the model takes (1 s)" in proc.stderr
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == ["long", "ok"]
