"""``model_conf.exit_ctc_vocabulary``: character CTC heads on early-exit Whisper's exits, read by
the exit policies so that the decoder runs only where an utterance stops."""
import argparse

import numpy as np
import pytest
import torch
import yaml
from tokenizers.pre_tokenizers import ByteLevel

from conftest import TINY_WHISPER, build_model
from espnet_eexit.ctc_vocabulary import CHARACTERS, ExitCTCVocabulary, resolve_units
from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.exit_policy import ExitPolicy, build_exit_policy
from espnet_eexit.inference import EarlyExitSpeech2Text
from espnet_eexit.tasks.asr import EarlyExitASRTask
from recipe_helpers import REPO

FROZEN_PATH_CTC = (REPO / "egs2/synth_en/asr1/conf/tuning"
                   / "train_asr_eexit_whisper_frozen_path_ctc.yaml")
SENTENCE = "It's a truth, universally acknowledged -- that a single man IN possession café"
# what the heads must read of it: lower case, a-z ' and single spaces between words
SENTENCE_CHARS = "it's a truth universally acknowledged that a single man in possession caf"


def byte_level_pieces(text: str):
    """Whisper-style byte-level BPE pieces of ``text`` (words with their leading ``Ġ``)."""
    return [piece for piece, _ in ByteLevel(add_prefix_space=True).pre_tokenize_str(text)]


def whisper_like_tokens():
    """TINY_WHISPER's 100 tokens: specials where the model expects them, byte-level words and
    pieces (``Ġ`` = a leading space; ``Ã``, ``©`` = the two bytes of é) for the rest."""
    words = {w for w in byte_level_pieces(SENTENCE.lower()) if "Ã" not in w}
    words = sorted(words | {"Ġcaf", "Ã", "©", "Ġ", "s"})
    tokens = [f"<|x{i}|>" for i in range(TINY_WHISPER["vocab_size"])]
    tokens[0], tokens[1], tokens[3] = "<unk>", "<|endoftext|>", "<|notimestamps|>"
    free = [i for i in range(TINY_WHISPER["vocab_size"]) if i not in (0, 1, 2, 3)]
    for i, word in zip(free, words):
        tokens[i] = word
    return tokens


def ids_of(tokens, text: str):
    """Token ids of ``text``: its byte-level words, each split greedily into the longest tokens."""
    index = {t: i for i, t in enumerate(tokens)}
    ids = []
    for piece in byte_level_pieces(text):
        while piece:
            n = max(n for n in range(1, len(piece) + 1) if piece[:n] in index)
            ids.append(index[piece[:n]])
            piece = piece[n:]
    return ids


def whisper_config(whisper_dir, tokens, **model_conf):
    args = vars(EarlyExitASRTask.get_parser().parse_args([]))
    args.update(token_list=tokens, input_size=1, frontend=None, frontend_conf={}, specaug=None,
                normalize=None, model="eexit", token_type="char", encoder="eexit_whisper",
                encoder_conf=dict(whisper_model=whisper_dir, exit_layers=[1, 2, 3, 4],
                                  exit_norm="own"),
                decoder="eexit_whisper", decoder_conf=dict(whisper_model=whisper_dir),
                model_conf=dict(dict(ctc_weight=0.3, exit_ctc_vocabulary="characters",
                                     decoder_per_exit=True, sym_sos="<|notimestamps|>",
                                     sym_eos="<|endoftext|>"), **model_conf))
    return args


def whisper_with_heads(whisper_dir, **model_conf):
    tokens = whisper_like_tokens()
    torch.manual_seed(0)
    args = whisper_config(whisper_dir, tokens, **model_conf)
    return EarlyExitASRTask.build_model(argparse.Namespace(**args)), tokens, args


def text_batch(tokens, sentences):
    rows = [ids_of(tokens, s.lower()) for s in sentences]
    text = torch.full((len(rows), max(map(len, rows))), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        text[b, : len(r)] = torch.tensor(r)
    return text, torch.tensor([len(r) for r in rows])


# ---------------------------------------------------------------------- the vocabulary
def test_character_targets_of_whisper_tokens_are_the_texts_characters():
    tokens = whisper_like_tokens()
    vocabulary = ExitCTCVocabulary(tokens, resolve_units("characters"))
    assert vocabulary.units[0] == "<blank>" and len(vocabulary) == 29
    text, lengths = text_batch(tokens, [SENTENCE, "a man"])
    assert "Ã" in [tokens[i] for i in text[0].tolist()]  # é is two byte tokens: both dropped
    targets, target_lengths = vocabulary.targets(text, lengths)
    assert target_lengths.tolist() == [len(SENTENCE_CHARS), 5]
    assert vocabulary.decode(targets[0, : target_lengths[0]]) == SENTENCE_CHARS
    assert vocabulary.decode(targets[1, :5]) == "a man" and targets[1, 5:].eq(-1).all()
    assert 0 not in targets[0].tolist()  # never the blank
    space = vocabulary.units.index("<space>")
    assert targets[0].tolist().count(space) == SENTENCE_CHARS.count(" ")


def test_special_tokens_have_no_characters_and_units_can_be_given():
    tokens = whisper_like_tokens()
    eot = tokens.index("<|endoftext|>")
    vocabulary = ExitCTCVocabulary(tokens, resolve_units("abc "))
    assert vocabulary.units == ["<blank>", "a", "b", "c", "<space>"]
    ids = ids_of(tokens, " a truth") + [eot]
    assert vocabulary.decode(vocabulary.encode(vocabulary.text(ids))) == "a"  # "truth": no a/b/c
    assert resolve_units(["x", "<space>"]) == ("x", "<space>")
    with pytest.raises(EarlyExitConfigError, match="exit_ctc_vocabulary=.*single characters"):
        resolve_units(["ab", "c"])


def test_the_real_whisper_token_list_gives_the_characters():
    """On tiny.en's own token list and tokenizer (tools/install.sh converts them)."""
    directory = REPO / "tools/pretrained/whisper-tiny.en/tokenizer_lowercase"
    if not (directory / "tokens.txt").is_file():
        pytest.skip(f"{directory}: missing (run tools/install.sh)")
    from tokenizers import Tokenizer

    tokens = (directory / "tokens.txt").read_text(encoding="utf-8").splitlines()
    ids = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(SENTENCE.lower()).ids
    vocabulary = ExitCTCVocabulary(tokens, CHARACTERS)
    targets, lengths = vocabulary.targets(torch.tensor([ids]), torch.tensor([len(ids)]))
    assert vocabulary.decode(targets[0, : lengths[0]]) == SENTENCE_CHARS


# ---------------------------------------------------------------------- the model
def test_every_exit_has_its_own_character_head_and_the_joint_loss(tiny_whisper_dir):
    model, tokens, _ = whisper_with_heads(tiny_whisper_dir)
    heads = [model.ctc_for_exit(k) for k in model.exit_layers]
    assert len({id(h) for h in heads}) == 4 and model.ctc is heads[-1]
    assert all(h.ctc_lo.out_features == 29 and h.ctc_lo.in_features == 32 for h in heads)
    model.eval()
    speech = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    text, lengths = text_batch(tokens, ["it's a truth", "a single man"])
    with torch.no_grad():
        loss, stats, _ = model(speech, torch.tensor([16000, 12000]), text, lengths)
        outs = model.encode_exits(speech, torch.tensor([16000, 12000]))
    targets, target_lengths = model.ctc_targets(text, lengths)
    expected = 0.0
    for out in outs:
        k = out.layer
        with torch.no_grad():  # ESPnet's CTC loss of this exit's head on the characters
            ctc_k = model.ctc_for_exit(k)(out.hidden, out.lengths, targets, target_lengths)
        assert torch.allclose(stats[f"loss_ctc_exit{k}"], ctc_k)
        assert 0.0 <= float(stats[f"cer_ctc_exit{k}"]) and f"cer_exit{k}" in stats
        expected = expected + 0.3 * ctc_k + 0.7 * stats[f"loss_att_exit{k}"]
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert torch.equal(stats["loss_ctc"], stats["loss_ctc_exit4"])


def test_bad_exit_ctc_vocabulary_settings_fail_with_one_clear_error(tiny_whisper_dir):
    with pytest.raises(EarlyExitConfigError, match=r"exit_ctc_vocabulary='characters' needs 0 < "
                                                   r"ctc_weight < 1.*got ctc_weight 0.0"):
        whisper_with_heads(tiny_whisper_dir, ctc_weight=0.0)
    with pytest.raises(EarlyExitConfigError, match="exit_ctc_vocabulary=.*single characters"):
        whisper_with_heads(tiny_whisper_dir, exit_ctc_vocabulary=["ab"])


def test_heads_train_while_the_frozen_path_stays_bit_identical(tiny_whisper_dir):
    """The frozen-path CTC config's freeze_param, applied as ESPnet does: a few steps lower the
    heads' CTC loss while every frozen parameter stays bit-identical."""
    model, tokens, _ = whisper_with_heads(tiny_whisper_dir, distill_weight=1.0)
    freeze = yaml.safe_load(FROZEN_PATH_CTC.read_text())["freeze_param"]
    for name, p in model.named_parameters():  # ESPnet's AbsTask.build_model
        if any(name.startswith(t + ".") or name == t for t in freeze):
            p.requires_grad = False
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("decoder.") for n in frozen)
    assert any(n.startswith("encoder.whisper.layers.") for n in frozen)
    heads = {n: p.detach().clone() for n, p in model.named_parameters()
             if n.startswith(("ctc.", "exit_ctcs."))}
    assert len(heads) == 8 and not any(n in frozen for n in heads)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.Adam(trainable, lr=1e-2)
    speech = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    text, lengths = text_batch(tokens, ["it's a truth", "a single man"])
    model.train()
    ctc_losses = []
    for _ in range(6):
        loss, stats, _ = model(speech, torch.tensor([16000, 16000]), text.clone(), lengths)
        optim.zero_grad()
        loss.backward()
        optim.step()
        ctc_losses.append([float(stats[f"loss_ctc_exit{k}"]) for k in model.exit_layers])
    first, last = np.array(ctc_losses[0]), np.array(ctc_losses[-1])
    assert (last < 0.8 * first).all(), ctc_losses  # every exit's head learns, the last one's too
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert all(not torch.equal(p, heads[n]) for n, p in model.named_parameters() if n in heads)


# ---------------------------------------------------------------------- inference
@pytest.fixture(scope="module")
def whisper_ctc_files(tiny_whisper_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("whisper_ctc")
    model, _, args = whisper_with_heads(tiny_whisper_dir)
    (out / "config.yaml").write_text(yaml.safe_dump(args))
    torch.save(model.state_dict(), out / "model.pth")
    return out


def speech2text(files, **kwargs):
    return EarlyExitSpeech2Text(asr_train_config=files / "config.yaml",
                                asr_model_file=files / "model.pth",
                                **{**dict(ctc_weight=0.0, beam_size=1, maxlenratio=0.2), **kwargs})


def count_decoder_calls(model):
    """Per exit, the batch sizes its decoder ran on (a hook on Whisper's final decoder norm: one
    call per teacher-forced forward or beam-search step)."""
    calls = {k: [] for k in model.exit_layers}
    for k in model.exit_layers:
        model.decoder_for_exit(k).whisper.layer_norm.register_forward_hook(
            lambda module, inputs, output, k=k: calls[k].append(inputs[0].size(0)))
    return calls


class StopAtSecondExit(ExitPolicy):
    """Records what it is shown; stops every utterance at the second exit."""

    name = "stop_at_second"

    def __init__(self):
        super().__init__(None)
        self.seen = []

    def decide(self, point):
        self.seen.append(point)
        return np.full(len(point.lengths), point.layer == 2), np.zeros(len(point.lengths))


def test_policies_read_the_character_heads_and_decode_only_the_stopping_exit(whisper_ctc_files):
    policy = StopAtSecondExit()
    s2t = speech2text(whisper_ctc_files, exit_policy=policy)
    model = s2t.asr_model
    calls = count_decoder_calls(model)
    speech = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([16000, 11000])
    decided = s2t.decode_batch(speech, lengths)
    assert [d.layer for d, _ in decided] == [2, 2]
    assert [p.layer for p in policy.seen] == [1, 2]
    with torch.no_grad():
        outs = {o.layer: o for o in model.encode_exits(speech, lengths)}
    for point in policy.seen:  # the exit's character head's log-posteriors, not a decoding
        assert point.hypotheses is None and point.log_probs.shape[-1] == 29
        with torch.no_grad():
            expected = model.ctc_for_exit(point.layer).log_softmax(outs[point.layer].hidden)
        np.testing.assert_allclose(point.log_probs, expected.numpy(), atol=1e-5)
        assert point.blank_id == 0
    # the decoder ran at exit 2 only (greedy: its steps, one utterance at a time), never to decide
    assert calls[1] == calls[3] == calls[4] == [] and len(calls[2]) >= 2
    assert s2t.policy_decodings == 0
    # the transcript is exit 2's decoder's greedy decoding, as a fixed exit 2 gives it
    fixed = speech2text(whisper_ctc_files, exit_layer=2)
    for b, (_, results) in enumerate(decided):
        alone = fixed(speech[b, : int(lengths[b])])
        assert list(results[0][3].yseq) == list(alone[0][3].yseq)


def test_a_real_policy_on_the_heads_stops_early_without_decoding_to_decide(whisper_ctc_files):
    """entropy at threshold 1 stops every utterance at the first exit: one decoding there."""
    s2t = speech2text(whisper_ctc_files, exit_policy=build_exit_policy("entropy", threshold=1.0))
    calls = count_decoder_calls(s2t.asr_model)
    speech = 0.1 * torch.randn(3, 12000, generator=torch.Generator().manual_seed(3))
    decided = s2t.decode_batch(speech, torch.tensor([12000, 12000, 9000]))
    assert [d.layer for d, _ in decided] == [1, 1, 1]
    assert calls[1] and not (calls[2] or calls[3] or calls[4]) and s2t.policy_decodings == 0
    # every exit's confidences from one pass: the heads', no decoding read by a policy
    s2t.decode_all_exits(speech[:1, :8000], torch.tensor([8000]))
    assert s2t.policy_decodings == 0


def test_heads_cannot_score_the_decoders_tokens(whisper_ctc_files):
    for kwargs in (dict(ctc_weight=0.3), dict(ctc_weight=1.0, ctc_greedy=True)):
        with pytest.raises(EarlyExitConfigError, match="model_conf.exit_ctc_vocabulary.*"
                                                       "--ctc_weight 0.0"):
            speech2text(whisper_ctc_files, **kwargs)


def test_a_policy_that_needs_ctc_heads_on_a_model_without_them_names_the_option(tiny_whisper_dir):
    tokens = [f"t{i}" for i in range(TINY_WHISPER["vocab_size"])]
    tokens[3], tokens[1] = "<|notimestamps|>", "<|endoftext|>"
    model = build_model(token_list=tokens, input_size=1, frontend=None, frontend_conf={},
                        specaug=None, normalize=None, encoder="eexit_whisper",
                        encoder_conf=dict(whisper_model=tiny_whisper_dir, exit_layers=[2, 4]),
                        decoder="eexit_whisper", decoder_conf=dict(whisper_model=tiny_whisper_dir),
                        model_conf=dict(ctc_weight=0.0, sym_sos="<|notimestamps|>",
                                        sym_eos="<|endoftext|>"))
    model.eval()
    policy = build_exit_policy("max_posterior", threshold=0.9).bind(model.exit_layers, 4)
    with pytest.raises(EarlyExitConfigError, match="no CTC heads.*model_conf.exit_ctc_vocabulary"):
        model.encode_with_policy(torch.randn(1, 8000), torch.tensor([8000]), policy)


def test_asr_inference_with_a_policy_on_the_heads(whisper_ctc_files, tmp_path):
    """``python -m espnet_eexit.bin.asr_inference --exit_policy ...``: every utterance stops at
    exit 1 (entropy <= 1 always holds) and no decoding was read to decide (exit_info)."""
    import soundfile

    from espnet_eexit.bin.asr_inference import main

    rng = np.random.default_rng(0)
    lines = []
    for key, seconds in (("a", 0.8), ("b", 0.5)):
        soundfile.write(tmp_path / f"{key}.wav", rng.normal(0, 0.1, int(16000 * seconds)), 16000)
        lines.append(f"{key} {tmp_path / f'{key}.wav'}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    out = tmp_path / "out"
    main(["--asr_train_config", str(whisper_ctc_files / "config.yaml"),
          "--asr_model_file", str(whisper_ctc_files / "model.pth"),
          "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
          "--output_dir", str(out), "--ctc_weight", "0.0", "--beam_size", "1",
          "--maxlenratio", "0.1", "--exit_policy", "entropy", "--exit_threshold", "1.0",
          "--batch_size", "2"])
    exits = dict(line.split(" ", 1) for line in (out / "exit").read_text().splitlines())
    assert sorted(exits) == ["a", "b"] and all(v.split()[0] == "1" for v in exits.values())
    info = (out / "exit_info").read_text()
    assert "entropy" in info and "decodings_per_utterance" not in info
    assert (out / "1best_recog" / "token_int").is_file()
