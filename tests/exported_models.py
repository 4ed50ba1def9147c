"""Tiny models built as asr_train builds them, exported with export_onnx's code (shared by the
export and runtime tests)."""
import warnings
from pathlib import Path

import numpy as np
import torch

from conftest import TOKENS, build_model

# encoder configs covering every positional scheme the segments carry: relative (centred 2T-1,
# "latest"), relative legacy (T), absolute (added once in the front end)
ENCODERS = {
    "conformer": dict(encoder="eexit_conformer",
                      encoder_conf=dict(output_size=32, attention_heads=2, linear_units=64, num_blocks=6,
                                        rel_pos_type="latest", pos_enc_layer_type="rel_pos",
                                        selfattention_layer_type="rel_selfattn", cnn_module_kernel=7)),
    "conformer_legacy": dict(encoder="eexit_conformer",
                             encoder_conf=dict(output_size=32, attention_heads=2, linear_units=64, num_blocks=6)),
    "transformer": dict(encoder="eexit_transformer",
                        encoder_conf=dict(output_size=32, attention_heads=2, linear_units=64, num_blocks=6)),
    "e_branchformer": dict(encoder="eexit_e_branchformer",
                           encoder_conf=dict(output_size=32, attention_heads=2, linear_units=64,
                                             cgmlp_linear_units=64, num_blocks=6)),
}


def global_mvn_stats(path: Path, dim: int = 16) -> Path:
    """A feats_stats.npz as ESPnet's collect-stats writes it (count, sum, sum_square)."""
    rng = np.random.default_rng(0)
    count = 1000
    mean, std = rng.normal(-8.0, 2.0, dim), rng.uniform(1.0, 3.0, dim)
    np.savez(path, count=np.array(count), sum=mean * count, sum_square=(std ** 2 + mean ** 2) * count)
    return path


# Hugging Face wav2vec2-style models (a tiny random one saved with save_pretrained): the front-end
# graph starts from the waveform; "group" (GroupNorm CNN, post-LN layers: wav2vec2-base, HuBERT)
# and "layer" (LayerNorm CNN, pre-LN layers with a final norm: wav2vec2-large-lv60)
HF_ENCODERS = {"hf_wav2vec2": ("wav2vec2", "group"), "hf_wav2vec2_stable": ("wav2vec2", "layer"),
               "hf_hubert": ("hubert", "group"), "hf_wavlm": ("wavlm", "group")}
HF_TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
               conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
               num_conv_pos_embedding_groups=2, hidden_dropout=0.0, attention_dropout=0.0,
               activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0)


def tiny_hf_model(name: str, tmp_path: Path) -> torch.nn.Module:
    """An ``eexit_hf_wav2vec2`` model with exits after layers 2 and 4 of a tiny random HF model."""
    from transformers import AutoConfig, AutoModel

    model_type, norm = HF_ENCODERS[name]
    extra = dict(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True) if norm == "layer" else {}
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.for_model(model_type, **HF_TINY, **extra)).save_pretrained(tmp_path / name)
    return build_model(input_size=1, frontend=None, frontend_conf={}, specaug=None, normalize=None,
                       encoder="eexit_hf_wav2vec2",
                       encoder_conf=dict(hf_model=str(tmp_path / name), exit_layers=[2, 4])).eval()


def tiny_model(name: str, tmp_path: Path, **overrides) -> torch.nn.Module:
    if name in HF_ENCODERS:
        return tiny_hf_model(name, tmp_path)
    config = dict(ENCODERS[name])
    config.update(normalize="global_mvn", normalize_conf=dict(stats_file=str(global_mvn_stats(tmp_path / "stats.npz"))))
    config.update(overrides)
    return build_model(**config).eval()


def export(model, out_dir: Path, quantize=None) -> Path:
    from espnet_eexit.export.onnx_segments import export_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(model, out_dir, token_list=list(TOKENS), fs=16000, quantize=quantize)
    return out_dir


def waveforms(lengths=(9000, 7400, 5200), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, generator=g) * 0.3).numpy() for n in lengths]


def whisper_tokens():
    """TINY_WHISPER's token list with Whisper's special tokens where its config puts them."""
    from conftest import TINY_WHISPER

    tokens = [f"t{i}" for i in range(TINY_WHISPER["vocab_size"])]
    tokens[3], tokens[1], tokens[4] = "<|notimestamps|>", "<|endoftext|>", "<unk>"
    return tokens


def tiny_whisper_export(tmp: Path, tiny_whisper_dir: str, maxlenratio: float, early_eos_exit: int,
                        waveform: np.ndarray):
    """A tiny early-exit Whisper (4 exits, a decoder per exit made different from the others; exit
    ``early_eos_exit``'s decoder ends every hypothesis at once), its config.yaml + model.pth, and its
    export: ``(model, tmp, tmp / "onnx")``."""
    import argparse

    import yaml

    from espnet_eexit.tasks.asr import EarlyExitASRTask

    args = vars(EarlyExitASRTask.get_parser().parse_args([]))
    args.update(token_list=whisper_tokens(), input_size=1, frontend=None, specaug=None, normalize=None,
                encoder="eexit_whisper", encoder_conf=dict(whisper_model=tiny_whisper_dir),
                decoder="eexit_whisper", decoder_conf=dict(whisper_model=tiny_whisper_dir),
                model="eexit", token_type="word",
                model_conf=dict(ctc_weight=0.0, sym_sos="<|notimestamps|>", sym_eos="<|endoftext|>"))
    torch.manual_seed(0)
    model = EarlyExitASRTask.build_model(argparse.Namespace(**args)).eval()
    with torch.no_grad():
        for k in model.exit_layers:  # decoders that differ, so that a mix-up between exits shows
            for p in model.decoder_for_exit(k).parameters():
                p.add_(torch.randn_like(p) * 0.01)
        # <eos> wins the first step of this exit: its embedding becomes the first step's winner's, scaled
        speech = torch.from_numpy(waveform)[None]
        out = model.encode_exits(speech, torch.tensor([speech.size(1)]))[early_eos_exit - 1]
        decoder = model.decoder_for_exit(early_eos_exit)
        logits, _ = decoder(out.hidden, out.lengths, torch.tensor([[model.sos]]), torch.tensor([1]))
        first = int(logits[0, -1].argmax())
        assert float(logits[0, -1, first]) > 0
        decoder.whisper.embed_tokens.weight[1] = decoder.whisper.embed_tokens.weight[first] * 3.0
    (tmp / "config.yaml").write_text(yaml.safe_dump(args))
    torch.save(model.state_dict(), tmp / "model.pth")
    from espnet_eexit.export.onnx_segments import export_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(model, tmp / "onnx", whisper_tokens(), 16000, token_type="word", maxlenratio=maxlenratio)
    return model, tmp, tmp / "onnx"
