"""synth_en in tiny mode, stages 1-13 end to end (the recipe issue's CI check): TTS corpus (made
once for the module) -> tokens -> collect stats -> one training epoch -> every exit decoded and
scored -> RESULTS.md with one numeric row per exit and the WER plot, for both backbones: the
12-layer early-exit Conformer from scratch (then the LM stages 6-8 and every exit decoded again
with shallow fusion), and early-exit Whisper tiny.en fine-tuned with its own decoder."""
import importlib.util
import math
import subprocess

import pytest

from recipe_helpers import REPO, copy_recipe, require_tools, results_rows, run

_spec = importlib.util.spec_from_file_location("make_corpus", REPO / "egs2/synth_en/asr1/local/make_corpus.py")
_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_corpus)
TINY = dict(zip(_corpus.SPLITS, _corpus.SIZES["tiny"]))  # utterances per split
N_TEST = TINY["test"]


@pytest.fixture(autouse=True, scope="module")
def tts_engines():
    require_tools("flite", "text2wave", "espeak-ng", "sox")


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """The recipe copy after stages 1-4 (tiny TTS corpus, formatted and filtered)."""
    recipe = copy_recipe(tmp_path_factory.mktemp("synth_en"), "synth_en")
    run(recipe, "--corpus_size", "tiny", "--stop_stage", "4")
    for split, n in TINY.items():
        assert len((recipe / "data" / split / "text").read_text().splitlines()) == n
    return recipe


def test_tiny_corpus_runs_every_stage(tiny_corpus):
    recipe = tiny_corpus
    run(recipe, "--backbone", "conformer", "--stage", "5", "--test_sets", "test", "--inference_nj", "1",
        "--inference_config", "conf/decode_ctc_greedy.yaml", "--asr_args", "--max_epoch 1")
    results = (recipe / "RESULTS.md").read_text()
    depths = {2: "0.17", 4: "0.33", 6: "0.50", 8: "0.67", 10: "0.83", 12: "1.00"}
    results_rows(results, depths, 2)  # test WER and CER per exit
    exp = recipe / "exp" / "asr_train_asr_eexit_conformer_char"  # characters by default
    assert (exp / "wer_per_exit.png").read_bytes()[:4] == b"\x89PNG"
    tokens = (recipe / "data" / "token_list" / "char" / "tokens.txt").read_text().split()
    assert "<space>" in tokens and "E" in tokens and len(tokens) < 40
    score = exp / "decode_ctc_greedy_asr_model_valid.loss.ave" / "test" / "exit12"
    assert (score / "score_cer" / "result.txt").is_file()
    assert not (score / "score_ter").exists()  # no BPE model: no token error rate

    # The LM (stages 6-8) on the tiny transcripts, one epoch; then every exit with shallow fusion.
    lm = ("--backbone", "conformer", "--use_lm", "true", "--lm_train_text", "dump/raw/train/text", "--lm_args", "--max_epoch 1",
          "--test_sets", "test", "--inference_nj", "1")
    greedy = run(recipe, *lm, check=False)  # run.sh's greedy config: refused before any work
    assert greedy.returncode != 0 and "sets ctc_greedy: true" in greedy.stdout and "Stage 1" not in greedy.stdout
    run(recipe, *lm, "--stage", "6", "--stop_stage", "8")
    lm_exp = recipe / "exp" / "lm_train_lm_rnn_char"
    ppl = float((lm_exp / "perplexity_test" / "ppl").read_text())
    assert math.isfinite(ppl) and ppl > 1.0
    # exp/<lm_exp>/run.sh reruns its stage with the same options (here: only --help, to be quick)
    rerun = subprocess.run([lm_exp / "run.sh", "--help"], cwd=recipe, capture_output=True, text=True)
    assert rerun.returncode == 0 and "--use_lm" in rerun.stdout, rerun.stderr
    run(recipe, *lm, "--stage", "12", "--stop_stage", "13", "--inference_config", "conf/decode_ctc_lm.yaml",
        "--inference_args", "--beam_size 2", "--exit_policies", "", "--exit_sweep", "false")
    tag = "decode_ctc_lm_lm_lm_train_lm_rnn_char_valid.loss.ave_asr_model_valid.loss.ave"
    log = (exp / tag / "test" / "logdir" / "asr_inference.1.log").read_text()
    assert "SequentialRNNLM" in log  # ESPnet's beam search scored with the LM
    results = (recipe / "RESULTS.md").read_text()
    section = results[results.index(f"### asr_train_asr_eexit_conformer_char: {tag}"):]
    assert "LM: `exp/lm_train_lm_rnn_char/valid.loss.ave.pth`" in section
    results_rows(section, depths, 2)
    dup = run(recipe, *lm, "--stage", "6", "--stop_stage", "6",
              "--lm_train_text", "dump/raw/train/text dump/raw/train/text", check=False)
    assert dup.returncode != 0 and "occurs twice" in dup.stdout


def test_tiny_corpus_fine_tunes_early_exit_whisper(tiny_corpus):
    """run.sh (--backbone whisper, the default): Whisper's tokens, no global MVN, a copy of the pretrained
    decoder per exit, fine-tuned, greedy decoding of every exit, hypotheses
    upper-cased for scoring, real_test and the untouched model's reference line."""
    recipe = tiny_corpus
    run(recipe, "--stage", "5", "--test_sets", "test real_test", "--inference_nj", "1", "--asr_args", "--max_epoch 1")
    tokens = (recipe / "data" / "token_list" / "hugging_face_tokenizer_lowercase" / "tokens.txt")
    tokens = tokens.read_text(encoding="utf-8").splitlines()
    assert len(tokens) == 51864 and tokens[50257] == "<|startoftranscript|>"
    exp = recipe / "exp" / "asr_train_asr_eexit_whisper_hugging_face"
    decode = exp / "decode_whisper_asr_model_valid.loss.ave"
    hyps = (decode / "test" / "exit4" / "text").read_text().splitlines()
    assert len(hyps) == N_TEST
    section = (recipe / "RESULTS.md").read_text()
    section = section[section.index("### asr_train_asr_eexit_whisper_hugging_face"):]
    wer = results_rows(section, {1: "0.25", 2: "0.50", 3: "0.75", 4: "1.00"}, 4)  # test and real_test
    # recorded speech, never trained on, scored beside the untouched model it started from
    real_hyps = (decode / "real_test" / "exit4" / "text").read_text().splitlines()
    assert len(real_hyps) == len((recipe / "data" / "real_test" / "text").read_text().splitlines()) == 12
    reference = {}
    for dset in ("test", "real_test"):
        line = next(li for li in section.splitlines() if li.startswith(f"- untouched Whisper tiny.en, {dset} WER: "))
        reference[dset] = float(line.split("WER: ")[1].split()[0])
        assert (decode / dset / "reference" / "wer.tsv").is_file()
    assert reference["real_test"] < 40.0, reference  # the bundled tiny.en understands the prompts
    # Pretrained on real speech, the full encoder with its own decoder recognises most words of
    # the unseen test voices after 20 updates; the 1-layer exit, new to the decoder, does not.
    assert wer[4][0] < 50.0 and wer[4][0] < wer[1][0], wer
    # --hyp_cleaner upper: the model writes lower case; scored upper-cased against the references
    hyp_texts = [h.split(maxsplit=1)[1] for h in hyps if " " in h]
    assert any(t != t.upper() for t in hyp_texts), hyp_texts
    hyp_trn = (decode / "test" / "exit4" / "score_wer" / "hyp.trn").read_text().splitlines()
    texts = [line.rsplit(" (", 1)[0] for line in hyp_trn]
    assert any(texts) and all(t == t.upper() for t in texts), texts
    # run.sh's decoder policy: decoded for real (each utterance decoded at every exit it passed)
    # and swept from the recorded decoder confidences
    info = dict(line.split(" ", 1) for line in
                (decode / "test" / "policy_max_posterior_0.74" / "exit_info").read_text().splitlines())
    counts = {int(k): int(n) for k, n in (c.split(":") for c in info["exit_counts"].split())}
    assert sum(counts.values()) == N_TEST
    passed = sum(n * [1, 2, 3, 4].index(k) + n for k, n in counts.items()) / N_TEST
    assert float(info["decodings_per_utterance"]) == pytest.approx(passed, abs=1e-3)
    confidence = (decode / "test" / "exit1" / "confidence").read_text().splitlines()
    assert len(confidence) == N_TEST and all(len(c.split()) == 5 and c.split()[1] != "-" for c in confidence)
    assert (decode / "test" / "exit_sweep.png").read_bytes()[:4] == b"\x89PNG"
    sweep = (decode / "test" / "exit_sweep.tsv").read_text()
    assert "max_posterior" in sweep and "agreement" in sweep

    # Stage 15: the Whisper export (decoders included) through the torch-free runtime gives stage
    # 12's greedy transcripts at every exit, and runs the decoder policy
    run(recipe, "--stage", "15", "--stop_stage", "15", "--test_sets", "test", "--onnx_quantize", "none")
    runtime = exp / "onnx_runtime_fp32" / "test"
    def texts(path):
        return {line.split(" ", 1)[0]: line.partition(" ")[2].strip() for line in path.read_text().splitlines()}

    for k in (1, 2, 3, 4):
        ours = texts(runtime / f"exit{k}" / "text")
        assert len(ours) == N_TEST and ours == texts(decode / "test" / f"exit{k}" / "text"), k
    exits = (runtime / "policy_max_posterior_0.74" / "exit").read_text().splitlines()
    assert len(exits) == N_TEST and {int(line.split()[1]) for line in exits} <= {1, 2, 3, 4}
    section = (recipe / "RESULTS.md").read_text()
    section = section[section.index("asr_train_asr_eexit_whisper_hugging_face: ONNX runtime fp32"):]
    results_rows(section, {1: "0.25", 2: "0.50", 3: "0.75", 4: "1.00"}, 2)
