"""The paper's configs (conf/paper = egs2/{librispeech,librispeech_100,tedlium3}/asr1/conf): each
builds through ESPnet's ASRTask from its YAML exactly as asr_train reads it, and trains one step
on a tiny batch; the CTC model's size against the paper's; the AED model decodes from two exits
with each exit's own decoder."""
import re
from pathlib import Path

import pytest
import torch
import yaml

from espnet_eexit.inference import EarlyExitSpeech2Text
from espnet_eexit.tasks.asr import EarlyExitASRTask
from recipe_helpers import REPO

CONF = REPO / "conf" / "paper"
TOKENS = ["<blank>", "<unk>"] + [f"t{i}" for i in range(253)] + ["<sos/eos>"]  # BPE 256's size
SYNTH_EN_CONF = REPO / "egs2" / "synth_en" / "asr1" / "conf"
# the paper's and, at CPU scale, synth_en's (default, single-exit baselines, AED)
CONFORMER_CONFIGS = sorted([*CONF.glob("train_asr_eexit_conformer_*.yaml"), *CONF.glob("tuning/*.yaml"),
                            *SYNTH_EN_CONF.glob("train_asr_eexit_conformer*.yaml"),
                            *SYNTH_EN_CONF.glob("tuning/*conformer*.yaml")])


def build(config: Path, **overrides) -> torch.nn.Module:
    args = EarlyExitASRTask.get_parser().parse_args(["--config", str(config)])
    args.token_list = list(TOKENS)
    for key, value in overrides.items():
        setattr(args, key, value)
    torch.manual_seed(0)
    return EarlyExitASRTask.build_model(args)


def tiny_batch():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([8000, 6400])
    speech = 0.1 * torch.randn(2, 8000, generator=g)
    text = torch.randint(2, 255, (2, 4), generator=g)
    return speech, lengths, text, torch.tensor([4, 3])


def test_every_paper_experiment_has_its_config():
    names = {p.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml")}
    expected = {"train_asr_eexit_conformer_ctc.yaml", "train_asr_eexit_conformer_aed.yaml",
                "train_asr_eexit_wav2vec2_ctc.yaml", "train_asr_eexit_wavlm_ctc.yaml",
                "decode_asr_ctc.yaml", "decode_asr_aed.yaml"}
    expected |= {f"tuning/train_asr_conformer_single_exit_l{k}.yaml" for k in (2, 4, 6, 8, 10, 12)}
    assert expected <= names, expected - names
    for recipe in ("librispeech", "librispeech_100", "tedlium3"):
        conf = REPO / "egs2" / recipe / "asr1" / "conf"
        assert conf.resolve() == CONF.resolve(), recipe
    # librispeech_100 runs librispeech's run.sh with its own data and schedule
    assert "exec ../../librispeech/asr1/run.sh --train_subsets train-clean-100" in (
        REPO / "egs2" / "librispeech_100" / "asr1" / "run.sh").read_text()
    for recipe in ("librispeech", "tedlium3"):
        run_sh = (REPO / "egs2" / recipe / "asr1" / "run.sh").read_text()
        for name in sorted(expected - {"decode_asr_ctc.yaml"}):
            stem = re.sub(r"_l\d+\.yaml$", "_l${k}.yaml", name)  # the baselines: one for-loop line
            assert f"conf/{stem}" in run_sh, (recipe, name)  # the header lists every experiment


@pytest.mark.parametrize("config", CONFORMER_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_builds_and_trains_one_step(config):
    conf = yaml.safe_load(config.read_text())
    model = build(config)
    exits = conf["encoder_conf"]["exit_layers"]
    assert model.exit_layers == exits
    assert model.encoder.num_layers == conf["encoder_conf"]["num_blocks"]
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = model.ctc_for_exit(exits[0]).ctc_lo.weight.detach().clone()
    loss, stats, _ = model(*tiny_batch())
    loss.backward()
    optim.step()
    assert torch.isfinite(loss)
    for k in exits:
        assert torch.isfinite(stats[f"loss_ctc_exit{k}"]), k
        if conf["model_conf"]["ctc_weight"] < 1.0:
            assert torch.isfinite(stats[f"loss_att_exit{k}"]), k
    assert not torch.equal(before, model.ctc_for_exit(exits[0]).ctc_lo.weight)


def test_paper_ctc_model_is_espnets_conformer_plus_exit_heads_and_norms():
    """The early-exit model of the paper's CTC config has exactly the parameters of ESPnet's own
    Conformer-CTC built from the same config (encoder: conformer, one CTC head) plus, for each of
    the 5 intermediate exits, a CTC head (d x V + V) and a LayerNorm (2 d). The total is printed
    next to the paper's ~31.5 M (ESPnet's conv2d subsampling and relative-position projections
    are extra there)."""
    model = build(CONF / "train_asr_eexit_conformer_ctc.yaml")
    config = yaml.safe_load((CONF / "train_asr_eexit_conformer_ctc.yaml").read_text())
    encoder_conf = {k: v for k, v in config["encoder_conf"].items() if k not in ("exit_layers", "exit_norm")}
    reference = build(CONF / "train_asr_eexit_conformer_ctc.yaml", model="espnet", encoder="conformer",
                      encoder_conf=encoder_conf,
                      model_conf={k: v for k, v in config["model_conf"].items()
                                  if k not in ("share_ctc_head", "exit_loss_weights", "decoder_per_exit")})
    assert type(reference.encoder).__name__ == "ConformerEncoder"
    total = sum(p.numel() for p in model.parameters())
    d, vocab = model.encoder.output_size(), len(TOKENS)
    assert model.exit_layers == [2, 4, 6, 8, 10, 12]
    assert len({id(model.ctc_for_exit(k)) for k in model.exit_layers}) == 6  # 6 own CTC heads
    assert total == sum(p.numel() for p in reference.parameters()) + 5 * (d * vocab + vocab) + 5 * 2 * d
    print(f"paper CTC config: {total / 1e6:.2f} M parameters (the paper: ~31.5 M without ESPnet's "
          f"conv2d subsampling, {sum(p.numel() for p in model.encoder.embed.parameters()) / 1e6:.2f} M)")


def test_paper_aed_decodes_two_exits_with_their_own_decoders(tmp_path):
    config = CONF / "train_asr_eexit_conformer_aed.yaml"
    model = build(config)
    # config.yaml as asr_train dumps it: every option, from the YAML over ESPnet's defaults
    conf = vars(EarlyExitASRTask.get_parser().parse_args(["--config", str(config)]))
    conf.update(token_list=list(TOKENS), token_type="bpe", config=None)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    speech = tiny_batch()[0][0, :6400]
    for k in (2, 6):
        s2t = EarlyExitSpeech2Text(asr_train_config=tmp_path / "config.yaml",
                                   asr_model_file=tmp_path / "model.pth", exit_layer=k,
                                   beam_size=2, ctc_weight=0.3, maxlenratio=0.1)
        calls = {}
        for layer in s2t.asr_model.exit_layers:
            decoder = s2t.asr_model.decoder_for_exit(layer)
            decoder.batch_score = _counting(decoder.batch_score, calls, layer)
        layers_run = []
        for i, block in enumerate(s2t.asr_model.encoder.encoders, 1):
            block.register_forward_hook(lambda *a, i=i: layers_run.append(i))
        results = s2t(speech)
        assert len(results) >= 1
        assert set(calls) == {k}, calls  # only exit k's decoder scored hypotheses
        assert sorted(set(layers_run)) == list(range(1, k + 1))  # layers above exit k never ran


def _counting(fn, calls, layer):
    def wrapper(*args, **kwargs):
        calls[layer] = calls.get(layer, 0) + 1
        return fn(*args, **kwargs)
    return wrapper


@pytest.mark.parametrize("name", ["wav2vec2", "wavlm"])
def test_pretrained_backbone_config_fine_tunes_with_exits(name, tmp_path):
    """The wav2vec2/WavLM configs, with their hub model swapped for a tiny random 12-layer model of
    the same type saved here (no download): 6 exits train, the CNN and (for the first
    freeze_transformer_steps updates) the transformer stay frozen, only the exit heads learn."""
    from transformers import AutoModel, Wav2Vec2Config, WavLMConfig

    tiny = dict(hidden_size=32, num_hidden_layers=12, num_attention_heads=2, intermediate_size=64,
                conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2),
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    config_class = Wav2Vec2Config if name == "wav2vec2" else WavLMConfig
    AutoModel.from_config(config_class(**tiny)).save_pretrained(tmp_path / name)
    config = CONF / f"train_asr_eexit_{name}_ctc.yaml"
    conf = yaml.safe_load(config.read_text())
    encoder_conf = dict(conf["encoder_conf"], hf_model=str(tmp_path / name))
    model = build(config, encoder_conf=encoder_conf)
    model.train()
    assert model.exit_layers == [2, 4, 6, 8, 10, 12]
    loss, stats, _ = model(*tiny_batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(stats[f"loss_ctc_exit{k}"]) for k in model.exit_layers)
    hf = model.encoder.hf
    assert all(p.grad is None for p in hf.feature_extractor.parameters())
    assert all(p.grad is None for p in hf.encoder.layers.parameters())  # frozen for 10000 steps
    assert all(model.ctc_for_exit(k).ctc_lo.weight.grad is not None for k in model.exit_layers)


def build_synth_en_whisper(config: str, monkeypatch):
    """A synth_en Whisper config as asr_train reads it in the recipe directory (its whisper_model
    paths are relative to it), on the tiny.en that tools/install.sh converts: (args, model)."""
    monkeypatch.chdir(SYNTH_EN_CONF.parent)
    tokens = (REPO / "tools/pretrained/whisper-tiny.en/tokenizer_lowercase/tokens.txt")
    assert tokens.is_file(), f"{tokens}: missing (run tools/install.sh)"
    args = EarlyExitASRTask.get_parser().parse_args(["--config", config])
    args.token_list = tokens.read_text(encoding="utf-8").splitlines()
    return args, EarlyExitASRTask.build_model(args)


def freeze_as_espnet(model, freeze_param):
    """ESPnet's AbsTask.main_worker rule for freeze_param (a name prefix, or the whole name); each
    prefix must name a parameter, since a typo would silently freeze nothing."""
    names = [n for n, _ in model.named_parameters()]
    for prefix in freeze_param:
        assert any(n.startswith(prefix + ".") or n == prefix for n in names), prefix
    for name, p in model.named_parameters():
        if any(name.startswith(t + ".") or name == t for t in freeze_param):
            p.requires_grad = False


@pytest.mark.parametrize("config, exits, per_exit", [
    ("conf/train_asr_eexit_whisper.yaml", [1, 2, 3, 4], True),
    ("conf/tuning/train_asr_eexit_whisper_specaug.yaml", [1, 2, 3, 4], True),
    ("conf/tuning/train_asr_whisper_single_exit_l4.yaml", [4], False),
    ("conf/tuning/train_asr_whisper_single_exit_l2.yaml", [2], False)])
def test_synth_en_whisper_configs_fine_tune_tiny_en(config, exits, per_exit, monkeypatch):
    """synth_en's Whisper configs as asr_train reads them in the recipe directory (their
    whisper_model paths are relative to it), on the tiny.en that tools/install.sh converts."""
    args, model = build_synth_en_whisper(config, monkeypatch)
    assert model.exit_layers == exits and model.ctc is None
    decoders = [model.decoder_for_exit(k) for k in model.exit_layers]
    if per_exit:  # each exit its own copy of the pretrained decoder
        assert len({id(d) for d in decoders}) == len(exits)
        assert all(torch.equal(d.whisper.embed_tokens.weight, decoders[-1].whisper.embed_tokens.weight)
                   for d in decoders)
    else:
        assert all(d is model.decoder for d in decoders)
    assert args.token_list[model.sos] == "<|notimestamps|>" and args.token_list[model.eos] == "<|endoftext|>"
    speech, lengths, _, _ = tiny_batch()
    text = torch.tensor([[340, 338, 257, 3872], [340, 318, 257, -1]])  # " it's a truth", " it is a"
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss, stats, _ = model(speech, lengths, text, torch.tensor([4, 3]))
    loss.backward()
    optim.step()
    assert torch.allclose(loss, sum(stats[f"loss_att_exit{k}"] for k in exits))
    assert model.encoder.whisper.conv1.weight.grad is None  # freeze_front_end: true
    assert model.encoder.encoders[0].fc1.weight.grad.abs().sum() > 0
    above_last_exit = model.encoder.encoders[exits[-1]:]  # never run: no gradient
    assert all(p.grad is None for p in above_last_exit.parameters())


@pytest.mark.parametrize("config, last_decoder_trains", [
    ("conf/tuning/train_asr_eexit_whisper_frozen_path.yaml", False),
    ("conf/tuning/train_asr_eexit_whisper_frozen_encoder.yaml", True)])
def test_frozen_whisper_configs_train_only_cross_attention_and_exit_norms(config, last_decoder_trains,
                                                                         monkeypatch):
    """synth_en's frozen Whisper configs: ESPnet's freeze_param (applied as ESPnet's
    AbsTask.main_worker applies it: by name prefix) leaves Whisper's encoder and every decoder's
    language model (embeddings, self-attention, feed-forward) bit-identical; the lower exits learn
    their norms and their decoders' cross-attention, the last exit's cross-attention too with
    frozen_encoder (with frozen_path the last exit stays the untouched tiny.en)."""
    args, model = build_synth_en_whisper(config, monkeypatch)
    names = [n for n, _ in model.named_parameters()]
    freeze_as_espnet(model, args.freeze_param)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    speech, lengths, _, _ = tiny_batch()
    text = torch.tensor([[340, 338, 257, 3872], [340, 318, 257, -1]])
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        optim.zero_grad()
        loss, stats, _ = model(speech, lengths, text, torch.tensor([4, 3]))
        loss.backward()
        optim.step()
    assert stats["loss_distill_exit1"] > 0  # the lower exits also learn the last exit's distributions
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "nothing trained"
    encoder = [n for n in names if n.startswith("encoder.whisper.")]
    assert len(encoder) > 50 and not changed & set(encoder)
    assert all(n.startswith("encoder.exit_norms.") or ".encoder_attn" in n for n in changed), \
        sorted(changed - {n for n in changed if ".encoder_attn" in n})[:5]
    for k in (1, 2, 3):  # each lower exit: its norm and its decoder's cross-attention learn
        assert any(n.startswith(f"encoder.exit_norms.{k}.") for n in changed)
        assert any(n.startswith(f"exit_decoders.{k}.") and ".encoder_attn." in n for n in changed)
    last = {n for n in changed if n.startswith("decoder.")}
    assert bool(last) == last_decoder_trains and all(".encoder_attn" in n for n in last)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable < 0.1 * sum(p.numel() for p in model.parameters())


def test_synth_en_whisper_frozen_path_ctc_config_trains_character_heads_only_around_the_frozen_path(
        monkeypatch):
    """The frozen-path config with character CTC heads, on the real tiny.en, frozen as asr_train
    freezes it (freeze_param): one step gives every exit's head a gradient (the last exit's too)
    and none to the frozen path; each exit's loss is 0.3 CTC over characters + 0.7 attention."""
    args, model = build_synth_en_whisper("conf/tuning/train_asr_eexit_whisper_frozen_path_ctc.yaml",
                                         monkeypatch)
    freeze_as_espnet(model, args.freeze_param)
    heads = [model.ctc_for_exit(k) for k in model.exit_layers]
    assert model.ctc_weight == 0.3 and len({id(h) for h in heads}) == 4
    assert all(h.ctc_lo.weight.shape == (29, 384) and h.ctc_lo.weight.requires_grad for h in heads)
    speech, lengths, _, _ = tiny_batch()
    text = torch.tensor([[340, 338, 257, 3872], [340, 318, 257, -1]])  # " it's a truth", " it is a"
    targets, target_lengths = model.ctc_targets(text, torch.tensor([4, 3]))
    assert model.exit_ctc_vocabulary.decode(targets[0, : target_lengths[0]]) == "it's a truth"
    loss, stats, _ = model(speech, lengths, text, torch.tensor([4, 3]))
    loss.backward()
    for i, k in enumerate(model.exit_layers):
        joint = 0.3 * stats[f"loss_ctc_exit{k}"] + 0.7 * stats[f"loss_att_exit{k}"]
        distill = stats[f"loss_distill_exit{k}"] if i < 3 else 0.0
        assert torch.allclose(stats[f"loss_exit{k}"], joint + distill, rtol=1e-5), k
        assert heads[i].ctc_lo.weight.grad.abs().sum() > 0, k
    assert all(p.grad is None for p in model.decoder.parameters())
    assert all(p.grad is None for p in model.encoder.whisper.parameters())
