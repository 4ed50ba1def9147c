"""Early-exit Whisper through the ONNX export and the torch-free runtime, against PyTorch on the same
weights: Whisper's log-mel in numpy, greedy decoding with each exit's own decoder, policies that
read the decoder, graphs above the exit that never run, and Whisper's tokenizer."""
from pathlib import Path

import numpy as np
import pytest
import torch

from exported_models import tiny_whisper_export, whisper_tokens
from espnet_eexit.encoder.whisper import WhisperLogMel
from espnet_eexit.exit_policy import build_exit_policy
from espnet_eexit.inference import EarlyExitSpeech2Text
from espnet_eexit.runtime import EarlyExitRuntime

REPO = Path(__file__).resolve().parents[2]
MAXLENRATIO = 0.3
EARLY_EOS_EXIT = 4  # this exit's decoder ends every hypothesis at once (the <eos> branch)


@pytest.fixture(scope="module")
def whisper_export(tiny_whisper_dir, tmp_path_factory):
    return tiny_whisper_export(tmp_path_factory.mktemp("whisper_runtime"), tiny_whisper_dir, MAXLENRATIO,
                               EARLY_EOS_EXIT, waveforms()[0])


def waveforms(lengths=(16000, 12000, 20000, 9000)):
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in lengths]


def pytorch_decoder(files: Path, **kwargs) -> EarlyExitSpeech2Text:
    return EarlyExitSpeech2Text(asr_train_config=files / "config.yaml", asr_model_file=files / "model.pth",
                                ctc_weight=0.0, beam_size=1, maxlenratio=MAXLENRATIO, **kwargs)


def test_features_equal_whispers_log_mel(whisper_export):
    model, _, out = whisper_export
    runtime = EarlyExitRuntime(out)
    log_mel = WhisperLogMel(80)
    for w in waveforms():
        ref, frames = log_mel(torch.from_numpy(w)[None], torch.tensor([len(w)]))
        ours = runtime.features(w)
        assert ours.shape == (int(frames[0]), 80) == (len(w) // 160, 80)
        np.testing.assert_allclose(ours, ref[0].numpy().T, atol=1e-5)


def test_every_exit_decodes_as_pytorch_greedy_search(whisper_export):
    """Each exit's decoder (never another's): the same tokens as ESPnet's beam search with beam 1
    from that exit, both where <eos> ends a hypothesis at once and where maxlen cuts it."""
    model, files, out = whisper_export
    runtime = EarlyExitRuntime(out)
    wavs = waveforms()
    lengths_seen = set()
    for k in model.exit_layers:
        s2t = pytorch_decoder(files, exit_layer=k)
        for w, result in zip(wavs, runtime.transcribe(wavs, policy=f"fixed:{k}")):
            yseq = [int(t) for t in s2t(torch.from_numpy(w))[0][3].yseq]
            assert result.exit_layer == k
            assert result.token_ids == yseq[1:-1], k
            assert result.text == " ".join(whisper_tokens()[i] for i in yseq[1:-1])
            lengths_seen.add(len(result.token_ids) == 0)
    assert lengths_seen == {True, False}  # both branches ran


def test_decoder_policies_stop_where_pytorch_stops(whisper_export):
    model, files, out = whisper_export
    runtime = EarlyExitRuntime(out)
    wavs = waveforms()
    speech = torch.zeros(len(wavs), max(len(w) for w in wavs))
    for i, w in enumerate(wavs):
        speech[i, : len(w)] = torch.from_numpy(w)
    lengths = torch.tensor([len(w) for w in wavs])
    recorded = pytorch_decoder(files).decode_all_exits(speech, lengths)
    exit1 = sorted(conf.max_posterior for conf, _ in recorded[1])
    for spec in (f"max_posterior:{(exit1[1] + exit1[2]) / 2}", "agreement:2"):
        name, threshold = spec.split(":")
        s2t = pytorch_decoder(files, exit_policy=build_exit_policy(name, float(threshold)))
        expected = s2t.decode_batch(speech, lengths)
        got = runtime.transcribe(wavs, policy=spec)
        assert [r.exit_layer for r in got] == [d.layer for d, _ in expected], spec
        for r, (d, results) in zip(got, expected):
            assert r.confidence == pytest.approx(d.confidence, abs=1e-4)
            assert r.token_ids == [int(t) for t in results[0][3].yseq[1:-1]]
    assert len({r.exit_layer for r in runtime.transcribe(wavs, policy=f"max_posterior:{(exit1[1] + exit1[2]) / 2}")}) > 1


def test_graphs_above_the_exit_never_run_and_fixed_exits_decode_once(whisper_export):
    _, _, out = whisper_export
    runtime = EarlyExitRuntime(out)
    runtime.transcribe(waveforms()[:2], policy="fixed:3")
    runs = runtime.graph_runs
    assert {name for name in runs} == {"front_end", "exit1", "exit2", "exit3", "cross_kv3", "decoder3"}
    assert runs["cross_kv3"] == 1 and runtime.layers_computed == 3 * 2
    assert runtime.bytes_up_to_exit(3) < runtime.bytes_up_to_exit(4)


def test_whisper_tokens_to_text_as_espnets_tokenizer():
    """token_type hugging_face: the runtime's text (tokenizers, no transformers) equals ESPnet's
    HuggingFaceTokenizer on the converted tiny.en tokenizer (tools/install.sh makes it)."""
    from espnet2.text.hugging_face_tokenizer import HuggingFaceTokenizer

    from espnet_eexit.runtime.text import TokensToText

    directory = REPO / "tools/pretrained/whisper-tiny.en/tokenizer_lowercase"
    assert (directory / "tokenizer.json").is_file(), "run tools/install.sh (it converts tiny.en)"
    espnet = HuggingFaceTokenizer(str(directory))
    ours = TokensToText("hugging_face", directory / "tokenizer.json")
    for line in ("the quick brown fox's tail", "it is 42, isn't it?", "x"):
        tokens = espnet.text2tokens(line) + ["<|endoftext|>"]
        assert ours(tokens) == espnet.tokens2text(tokens) == line


def test_exporting_whisper_refuses_what_the_runtime_cannot_run(whisper_export, tmp_path):
    from espnet_eexit.errors import EarlyExitConfigError
    from espnet_eexit.export.onnx_segments import export_model

    model, _, _ = whisper_export
    with pytest.raises(EarlyExitConfigError, match="Whisper takes at most 30 s"):
        export_model(model, tmp_path / "a", whisper_tokens(), 16000, token_type="word", max_input_seconds=40)
    with pytest.raises(EarlyExitConfigError, match="tokenizer.json: no such file"):
        export_model(model, tmp_path / "b", whisper_tokens(), 16000, token_type="hugging_face",
                     bpemodel=tmp_path)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_draft_is_checked_in_one_run_and_decoding_resumes_where_it_is_wrong(whisper_export):
    """decode_with_decoder with drafts: a draft equal to the exit's own greedy hypothesis costs one
    decoder run; one wrong from token j on resumes step-by-step decoding there. The tokens and
    every step's log-posteriors are those of decoding from scratch."""
    _, _, out = whisper_export
    runtime = EarlyExitRuntime(out)
    carried = runtime.front_end(waveforms())
    carried, memory = runtime.segment(1, carried)
    lengths = carried["lengths"]
    hyps, steps = runtime.decode_with_decoder(1, memory, lengths)
    assert min(len(h) for h in hyps) >= 4

    def runs_and_result(drafts):
        runtime.graph_runs.clear()
        result = runtime.decode_with_decoder(1, memory, lengths, drafts=drafts)
        return runtime.graph_runs["decoder1"], result

    from_scratch_runs = runs_and_result(None)[0]
    runs, (same_hyps, same_steps) = runs_and_result(hyps)
    assert runs == 1 < from_scratch_runs
    wrong = [h[:2] + [(h[2] + 1) % 50 + 5] + h[3:] for h in hyps]  # wrong from token 2 on
    runs_wrong, (hyps_wrong, steps_wrong) = runs_and_result(wrong)
    assert 1 < runs_wrong < from_scratch_runs
    for result_hyps, result_steps in ((same_hyps, same_steps), (hyps_wrong, steps_wrong)):
        assert result_hyps == hyps
        for a, b in zip(result_steps, steps):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_policies_with_drafts_give_what_decoding_from_scratch_gives(whisper_export):
    _, _, out = whisper_export
    wavs = waveforms()
    for spec in ("agreement:2", "max_posterior:0.05"):
        a = EarlyExitRuntime(out).transcribe(wavs, spec)
        b = EarlyExitRuntime(out, reuse_hypotheses=False).transcribe(wavs, spec)
        assert [(r.exit_layer, r.token_ids) for r in a] == [(r.exit_layer, r.token_ids) for r in b]
        np.testing.assert_allclose([r.confidence for r in a], [r.confidence for r in b], atol=1e-6)


def test_int8_decoders_hold_their_output_layer_in_int8(whisper_export, tmp_path):
    """--quantize int8: each exit's decoder is quantised from a graph whose output layer multiplies
    by a stored (D, V) weight, so that weight is int8 in the file (not quantised again at every
    step); the temporary source graphs are gone and the int8 runtime decodes."""
    import json
    import warnings

    import onnx

    from espnet_eexit.export.onnx_segments import export_model

    model, _, _ = whisper_export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(model, tmp_path, whisper_tokens(), 16000, token_type="word", quantize="int8")
    manifest = json.loads((tmp_path / "model.json").read_text())
    assert not list(tmp_path.glob("*int8_source*")) and all("int8_source" not in g for g in manifest["graphs"])
    vocab, dim = len(whisper_tokens()), 32
    for k in model.exit_layers:
        graph = onnx.load(str(tmp_path / f"decoder{k}.int8.onnx")).graph
        int8 = {tuple(i.dims) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
        assert (dim, vocab) in int8, int8
    results = EarlyExitRuntime(tmp_path, precision="int8").transcribe(waveforms(), "fixed:3")
    assert [r.exit_layer for r in results] == [3] * 4
