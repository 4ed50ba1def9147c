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


def tiny_model(name: str, tmp_path: Path, **overrides) -> torch.nn.Module:
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
