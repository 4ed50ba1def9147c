"""The exporter: one graph per exit span, a manifest, int8, and clear refusals."""
import json
import logging
import os
import subprocess
import sys

import onnx
import pytest

from conftest import build_model
from espnet_eexit.errors import EarlyExitConfigError
from exported_models import export, tiny_model


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def exported_and_log(tmp_path_factory):
    """The int8 export of a tiny model and what it logged at INFO and above (as export_onnx shows)."""
    tmp = tmp_path_factory.mktemp("export")
    model = tiny_model("conformer", tmp)
    root, handler = logging.getLogger(), Records()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        out = export(model, tmp / "onnx", quantize="int8")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return model, out, handler.records


@pytest.fixture(scope="module")
def exported(exported_and_log):
    return exported_and_log[:2]


def test_the_export_logs_one_line_per_graph_and_no_quantiser_info(exported_and_log):
    model, out, records = exported_and_log
    import onnxruntime.quantization

    quantiser = os.path.dirname(onnxruntime.quantization.__file__)
    assert not [r.getMessage() for r in records if r.pathname.startswith(quantiser) and r.levelno < logging.WARNING]
    manifest = json.loads((out / "model.json").read_text())
    lines = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert len(lines) == len(manifest["graphs"]) == 1 + len(model.exit_layers)
    for line, graph in zip(lines, manifest["graphs"]):
        assert line.startswith(f"wrote {out / graph['file']} (") and f"int8: {graph['int8_file']} " in line
    assert "(layers 3-4 and exit 4's CTC head)" in lines[2]
    # the quiet is for the export only: the root logger and onnxruntime's logger are as they were
    assert not logging.getLogger().filters
    assert logging.getLogger("onnxruntime.quantization").level == logging.NOTSET


def test_one_checked_graph_per_exit_span_and_a_manifest(exported):
    model, out = exported
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["exit_layers"] == model.exit_layers == [2, 4, 6]
    assert manifest["num_layers"] == 6 and manifest["blank_id"] == model.blank_id
    spans = [(g["from_layer"], g["exit_layer"]) for g in manifest["graphs"][1:]]
    assert manifest["graphs"][0]["name"] == "front_end" and spans == [(0, 2), (2, 4), (4, 6)]
    for graph in manifest["graphs"]:
        proto = onnx.load(str(out / graph["file"]))
        onnx.checker.check_model(proto)
        assert graph["bytes"] == (out / graph["file"]).stat().st_size
        names = [i.name for i in proto.graph.input]
        if graph["name"] == "front_end":
            assert names == ["feats", "feats_lengths"]
        else:  # relative positions travel from the front end; segments rebuild the mask only
            assert names == ["hidden", "pos_emb", "lengths"]
            assert [o.name for o in proto.graph.output] == ["hidden_out", "log_probs"]
            # batch and time are dynamic
            dims = proto.graph.input[0].type.tensor_type.shape.dim
            assert dims[0].dim_param and dims[1].dim_param


def test_no_graph_stores_the_positional_table(exported):
    """The sinusoid table (ESPnet keeps 5000 positions) is stored by no graph: the front end
    computes the positions; every graph of 2 tiny layers, the front end too, is smaller than the
    table alone would be."""
    model, out = exported
    manifest = json.loads((out / "model.json").read_text())
    table_bytes = model.encoder.embed.out[-1].pe.numel() * 4
    for graph in manifest["graphs"]:
        assert graph["bytes"] < table_bytes, graph["name"]


@pytest.mark.parametrize("kind", ["RelPositionalEncoding", "PositionalEncoding", "ScaledPositionalEncoding",
                                  "LegacyRelPositionalEncoding"])
def test_the_computed_table_is_espnets(kind):
    """What the front-end graph computes for T frames equals the part of ESPnet's stored table
    that the module reads for T frames (bit for bit in PyTorch)."""
    import torch
    from espnet.nets.pytorch_backend.transformer import embedding

    from espnet_eexit.export.onnx_segments import _table_positions, sinusoids

    module = getattr(embedding, kind)(16, 0.0, max_len=100)
    for steps in (1, 7, 50):
        table = sinusoids(_table_positions(module, steps, module.pe.size(1)), 16)
        if kind == "RelPositionalEncoding":
            centre = module.pe.size(1) // 2
            expected = module.pe[:, centre - steps + 1: centre + steps]
        else:
            expected = module.pe[:, :steps]
        assert torch.equal(table, expected), (kind, steps)


def test_int8_graphs_are_quantised(exported):
    _, out = exported
    for graph in json.loads((out / "model.json").read_text())["graphs"][1:]:
        ops = {n.op_type for n in onnx.load(str(out / graph["int8_file"])).graph.node}
        assert "DynamicQuantizeLinear" in ops and "MatMulInteger" in ops, ops
        assert graph["int8_bytes"] < graph["bytes"]


def test_what_cannot_run_is_refused_with_one_clear_error(tmp_path, tiny_whisper_dir):
    from espnet_eexit.export.onnx_segments import export_model

    aed = build_model(decoder="transformer", decoder_conf=dict(num_blocks=1, linear_units=32, attention_heads=2),
                      model_conf=dict(ctc_weight=0.0))
    with pytest.raises(EarlyExitConfigError, match="ctc_weight 0"):
        export_model(aed, tmp_path, ["a"], 16000)
    whisper = build_model(input_size=1, frontend=None, frontend_conf={}, normalize=None,
                          encoder="eexit_whisper", encoder_conf=dict(whisper_model=tiny_whisper_dir))
    with pytest.raises(EarlyExitConfigError, match="eexit_whisper model is exported with its decoders "
                       r"\(decoder: eexit_whisper, ctc_weight 0\); this one has decoder NoneType and ctc_weight 1.0"):
        export_model(whisper, tmp_path, ["a"], 16000)
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_cli_names_a_missing_checkpoint_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "espnet_eexit.bin.export_onnx", "--asr_train_config",
                           str(tmp_path / "config.yaml"), "--asr_model_file", str(tmp_path / "m.pth"),
                           "--output_dir", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(f"error: {tmp_path / 'config.yaml'}: no such file")
