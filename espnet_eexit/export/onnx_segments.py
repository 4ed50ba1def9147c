"""An early-exit model cut at its exits into ONNX graphs that a device runs one after another.

    front_end.onnx   normalised features -> input of layer 1 (subsampling, positional scaling)
    exit<k>.onnx     one per exit: the layers after the previous exit up to layer k, returning the
                     hidden state for the next segment AND exit k's CTC log-posteriors
    frontend.npz     the STFT window and mel matrix of the model's front end (features in numpy;
                     a wav2vec2 / HuBERT model's front end starts from the waveform: no file)
    model.json       the manifest (:data:`MANIFEST`): exits, tokens, feature settings, files

A runtime runs ``front_end`` and ``exit<k1>``, lets the policy decide, and only then runs
``exit<k2>`` for the utterances still going: layers above the chosen exit never run, as in
PyTorch (:meth:`espnet_eexit.model.EarlyExitASRModel.encode_with_policy`).

Early-exit Whisper (an attention decoder per exit, no CTC head): ``front_end`` starts from
Whisper's log-mel features (computed in numpy from ``whisper_features.npz``), each ``exit<k>``
returns exit k's encoder output (``memory``) instead of CTC log-posteriors, and each exit's decoder
is exported for greedy decoding (:mod:`espnet_eexit.export.whisper_graphs`).

Batch and time are dynamic axes. Between segments the runtime carries ``hidden`` (B, T', D),
``lengths`` (B,) and, for layers with relative positions, ``pos_emb`` (1, P, D) from the front end
(P = 2T'-1 centred, or T'); the padding mask is rebuilt inside a segment from ``lengths``. So the
positions are computed once (in ``front_end``, from the input's length: no table is stored), and
the runtime drops utterances and cuts padding in numpy exactly as
:meth:`espnet_eexit.encoder.early_exit.EncoderState.select` does. Graphs come from the
TorchScript exporter (``dynamo=False``): ESPnet's encoders have data-dependent shapes that
``torch.export`` refuses.
"""
import contextlib
import hashlib
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.layers.global_mvn import GlobalMVN
from espnet2.layers.utterance_mvn import UtteranceMVN

from espnet_eexit.encoder.early_exit import EarlyExitEncoderMixin
from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.model import EarlyExitASRModel
from espnet_eexit.runtime.model import CONTROLLER, FORMAT, FORMAT_VERSION, MANIFEST  # the runtime's format

OPSET = 17
FEATURES_FILE = "frontend.npz"


class FrontEndGraph(torch.nn.Module):
    """Features -> the input of layer 1.

    Shapes: feats (B, T, F) log-mel (un-normalised), feats_lengths (B,) ->
    hidden (B, T', D), [pos_emb (1, P, D) for relative-position layers], lengths (B,).
    """

    def __init__(self, model: EarlyExitASRModel):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, feats_lengths: torch.Tensor):
        model = self.model
        if model.normalize is not None:
            feats, feats_lengths = model.normalize(feats, feats_lengths)
        state = model.encoder.start(feats, feats_lengths)
        if isinstance(state.xs, tuple):
            return state.xs[0], state.xs[1], state.lengths
        return state.hidden, state.lengths


class ExitSegmentGraph(torch.nn.Module):
    """Layers ``from_layer + 1 .. exit_layer`` and exit ``exit_layer``'s CTC head.

    Shapes: hidden (B, T', D), [pos_emb (1, P, D)], lengths (B,) -> hidden (B, T', D) after
    layer ``exit_layer`` (the next segment's input), log_probs (B, T', V) of the exit's CTC head
    (a model without CTC heads: memory (B, T', D), the exit's output for its decoder).
    """

    def __init__(self, model: EarlyExitASRModel, from_layer: int, exit_layer: int):
        super().__init__()
        self.model = model
        self.from_layer, self.exit_layer = from_layer, exit_layer

    def forward(self, hidden: torch.Tensor, *pos_emb_and_lengths: torch.Tensor):
        model = self.model
        lengths = pos_emb_and_lengths[-1]
        frames = torch.arange(hidden.size(1), device=hidden.device)
        masks = (frames[None, :] < lengths[:, None])[:, None, :]
        xs = (hidden, pos_emb_and_lengths[0]) if len(pos_emb_and_lengths) == 2 else hidden
        state = model.encoder.resume_state(xs, masks, self.from_layer)
        state = model.encoder.advance(state, self.exit_layer)
        out = model._post_encode(model.encoder.exit_output(state))
        head = model.ctc_for_exit(self.exit_layer)
        return state.hidden, out.hidden if head is None else head.log_softmax(out.hidden)


def sinusoids(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """ESPnet's sinusoid table (``PositionalEncoding.extend_pe``) of ``positions`` (P,): (1, P, D),
    sin(p w_i) at even and cos(p w_i) at odd channels, w_i = 10000^(-2i/D)."""
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
    angles = positions.to(torch.float32)[:, None] * div_term[None, :]  # (P, D/2)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(1, -1, d_model)


def _table_positions(module: torch.nn.Module, steps, stored: int) -> Optional[torch.Tensor]:
    """The positions of the rows ``module`` reads for an input of ``steps`` frames from the table
    it stores (``stored`` rows), None for a positional module this export does not know."""
    kind = type(module).__name__
    if kind == "RelPositionalEncoding":  # relative offsets T-1 .. -(T-1), centred
        return (steps - 1) - torch.arange(2 * steps - 1)
    if kind in ("PositionalEncoding", "ScaledPositionalEncoding", "LegacyRelPositionalEncoding"):
        # reverse (the legacy relative encoding): the table counts down from its last row, and
        # the module reads its first T rows
        return (stored - 1) - torch.arange(steps) if getattr(module, "reverse", False) else torch.arange(steps)
    return None


@contextlib.contextmanager
def sinusoids_in_graph(encoder: torch.nn.Module):
    """While the graphs are traced, the encoder's positional modules compute their sinusoid table
    from the input's length instead of reading the one ESPnet stores (5000 positions: 5.8 MB for
    d=144 relative positions, more than a 2-layer segment, and not int8-quantisable): the
    front-end graph then holds a few Sin/Cos nodes and no table."""
    hooks, saved = [], []

    stored = {}

    def table_for_input(module, args):
        positions = _table_positions(module, args[0].size(1), stored[module])
        module.pe = sinusoids(positions, module.d_model).to(args[0].dtype)

    for module in encoder.modules():
        if not torch.is_tensor(getattr(module, "pe", None)):
            continue
        stored[module] = module.pe.size(1)
        if _table_positions(module, 1, stored[module]) is None:
            logging.warning("export_onnx: %s's positional table is stored as it is (a kind this export "
                            "does not compute in the graph)", type(module).__name__)
            continue
        saved.append((module, module.pe))
        hooks.append(module.register_forward_pre_hook(table_for_input))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for module, pe in saved:
            module.pe = pe


def check_exportable(model: torch.nn.Module) -> None:
    """Raise one clear error naming what this exporter cannot handle."""
    if not isinstance(model, EarlyExitASRModel) or not isinstance(model.encoder, EarlyExitEncoderMixin):
        raise EarlyExitConfigError(
            f"export_onnx needs a model trained with model: eexit (got {type(model).__name__})"
        )
    if is_whisper(model):
        check_whisper_exportable(model)
        return
    if model.preencoder is not None or model.postencoder is not None:
        raise EarlyExitConfigError("export_onnx: a preencoder/postencoder is not supported")
    if not reads_waveforms(model):  # wav2vec2 / HuBERT / WavLM start from the waveform
        frontend = model.frontend
        # ESPnet builds a multi-channel enhancement Frontend by default; without WPE or a
        # beamformer it passes single-channel input through
        enhancement = getattr(frontend, "frontend", None)
        if enhancement is not None and (enhancement.use_wpe or enhancement.use_beamformer):
            raise EarlyExitConfigError(
                "export_onnx: frontend_conf.frontend_conf with WPE or a beamformer is not supported")
        if not isinstance(frontend, DefaultFrontend) or frontend.stft is None:
            raise EarlyExitConfigError(
                f"export_onnx: frontend {type(frontend).__name__} is not supported: the runtime computes "
                "ESPnet's default front end (STFT -> power -> mel -> log) in numpy"
            )
    if model.normalize is not None and not isinstance(model.normalize, (GlobalMVN, UtteranceMVN)):
        raise EarlyExitConfigError(
            f"export_onnx: normalize {type(model.normalize).__name__} is not supported "
            "(global_mvn, utterance_mvn or none)"
        )
    if model.ctc_weight == 0.0:
        raise EarlyExitConfigError(
            "export_onnx: the runtime decodes with each exit's CTC head, and this model has none "
            "(ctc_weight 0)"
        )


def reads_waveforms(model: EarlyExitASRModel) -> bool:
    """A model without a front end whose encoder reads raw waveforms (``input_size: 1``:
    ``eexit_hf_wav2vec2``); Whisper computes its own log-mel and is exported apart."""
    return model.frontend is None and not is_whisper(model)


def is_whisper(model: EarlyExitASRModel) -> bool:
    from espnet_eexit.encoder.whisper import EarlyExitWhisperEncoder

    return isinstance(model.encoder, EarlyExitWhisperEncoder)


def check_whisper_exportable(model: EarlyExitASRModel) -> None:
    """Early-exit Whisper: exported with its decoders (greedy decoding), not CTC heads."""
    from espnet_eexit.decoder.whisper import WhisperDecoder

    if model.ctc_weight != 0.0 or not isinstance(model.decoder, WhisperDecoder):
        raise EarlyExitConfigError(
            "export_onnx: an eexit_whisper model is exported with its decoders (decoder: eexit_whisper, "
            f"ctc_weight 0); this one has decoder {type(model.decoder).__name__} and ctc_weight "
            f"{model.ctc_weight}")
    if model.encoder.do_pad_trim:
        raise EarlyExitConfigError("export_onnx: encoder_conf.do_pad_trim true is not supported "
                                   "(the runtime feeds each utterance's own frames)")
    if model.preencoder is not None or model.postencoder is not None:
        raise EarlyExitConfigError("export_onnx: a preencoder/postencoder is not supported")


def encoder_window_seconds(model: EarlyExitASRModel) -> float:
    from espnet_eexit.encoder.whisper import SAMPLE_RATE

    return model.encoder.max_samples / SAMPLE_RATE


@contextlib.contextmanager
def whisper_eager_attention(encoder: torch.nn.Module):
    """Trace Whisper's layers with transformers' eager attention (plain matmuls, additive masks):
    the exporter then records the padding mask however the example batch is padded."""
    config = encoder.whisper.config
    saved = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = saved


def feature_settings(frontend: DefaultFrontend, fs: int) -> dict:
    stft, logmel = frontend.stft, frontend.logmel
    return dict(
        kind="espnet_default", fs=fs, n_fft=stft.n_fft, win_length=stft.win_length or stft.n_fft,
        hop_length=stft.hop_length, center=bool(stft.center), normalized=bool(stft.normalized),
        onesided=bool(stft.onesided), window=stft.window, log_base=logmel.log_base,
        n_mels=int(logmel.melmat.size(1)), file=FEATURES_FILE,
    )


def feature_arrays(frontend: DefaultFrontend) -> Dict[str, np.ndarray]:
    """The STFT window (as ESPnet builds it) and mel matrix (n_fft // 2 + 1, n_mels)."""
    stft = frontend.stft
    win_length = stft.win_length or stft.n_fft
    window = (np.ones(win_length, dtype=np.float32) if stft.window is None
              else getattr(torch, f"{stft.window}_window")(win_length).numpy())
    return dict(window=window, melmat=frontend.logmel.melmat.detach().cpu().numpy())


def _export(module: torch.nn.Module, args, path: Path, inputs: List[str], outputs: List[str],
            dynamic: Dict[str, Dict[int, str]]) -> None:
    module.eval()  # the exporter restores the wrapper's mode on every submodule when it is done
    with torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    import onnx

    onnx.checker.check_model(str(path))


class _QuantiserInfo(logging.Filter):
    """Drops the INFO/DEBUG records that onnxruntime's quantiser logs through the root logger
    (``logging.info`` per tensor: hundreds per graph); its warnings pass."""

    def __init__(self, package_dir: str):
        super().__init__()
        self.package_dir = package_dir

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.pathname.startswith(self.package_dir)


@contextlib.contextmanager
def quiet_quantiser():
    """While it is active, onnxruntime's quantiser logs warnings only (the root logger's filters
    and the ``onnxruntime.quantization`` logger's level are restored after)."""
    import os

    import onnxruntime.quantization

    package_dir = os.path.dirname(onnxruntime.quantization.__file__) + os.sep
    quiet, named = _QuantiserInfo(package_dir), logging.getLogger("onnxruntime.quantization")
    level = named.level
    logging.getLogger().addFilter(quiet)  # its module-level logging.info calls
    named.setLevel(logging.WARNING)  # its modules' own loggers
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)
        named.setLevel(level)


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation (weights int8, activations quantised on the fly), quietly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_quantiser():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def _describe(graph: dict, whisper: bool) -> str:
    """What a graph of the manifest holds, for the export's one line per graph."""
    if graph["name"] == "front_end":
        return "front end"
    if "exit_layer" in graph:
        head = "output for its decoder" if whisper else "CTC head"
        return f"layers {graph['from_layer'] + 1}-{graph['exit_layer']} and exit {graph['exit_layer']}'s {head}"
    if graph["name"].startswith("cross_kv"):
        return f"exit {graph['decoder_of']}'s decoder: cross-attention keys/values"
    return f"exit {graph['decoder_of']}'s decoder: one greedy step"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _export_graphs(model: EarlyExitASRModel, output_dir: Path, feats: torch.Tensor,
                   feats_lengths: torch.Tensor, quantize: Optional[str] = None) -> List[dict]:
    """Trace ``front_end.onnx`` and one ``exit<k>.onnx`` per exit from the example features
    (and, for Whisper, each exit's ``cross_kv<k>.onnx`` and ``decoder<k>.onnx``)."""
    graphs = []
    whisper = is_whisper(model)
    if whisper:
        from espnet_eexit.export.whisper_graphs import WhisperFrontEndGraph

        front = WhisperFrontEndGraph(model.encoder)
        front_axes = {"feats": {0: "batch", 2: "frames"}, "feats_lengths": {0: "batch"}}
    else:
        front = FrontEndGraph(model)
        front_axes = {"feats": {0: "batch", 1: "frames"}, "feats_lengths": {0: "batch"}}
    path = output_dir / "front_end.onnx"
    with torch.no_grad():
        carried = front(feats, feats_lengths)  # (hidden, [pos_emb], lengths)
    names = ["hidden", "pos_emb", "lengths"] if len(carried) == 3 else ["hidden", "lengths"]
    axes = {"hidden": {0: "batch", 1: "steps"}, "pos_emb": {1: "positions"}, "lengths": {0: "batch"}}
    logging.debug("exporting %s", path)
    _export(front, (feats, feats_lengths), path, ["feats", "feats_lengths"], names,
            {**front_axes, **{n: axes[n] for n in names}})
    graphs.append(dict(name="front_end", file=path.name))
    previous = 0
    exit_output = "memory" if whisper else "log_probs"
    for layer in model.exit_layers:
        segment = ExitSegmentGraph(model, previous, layer)
        path = output_dir / f"exit{layer}.onnx"
        logging.debug("exporting %s", path)
        _export(segment, tuple(carried), path, names, ["hidden_out", exit_output],
                {**{n: axes[n] for n in names},
                 "hidden_out": {0: "batch", 1: "steps"}, exit_output: {0: "batch", 1: "steps"}})
        graphs.append(dict(name=f"exit{layer}", file=path.name, from_layer=previous, exit_layer=layer))
        with torch.no_grad():
            hidden, memory = segment(*carried)
        if whisper:
            graphs += _export_whisper_decoder(model, layer, memory, carried[-1], output_dir, quantize)
        carried = (hidden, *carried[1:])
        previous = layer
    return graphs


def _export_whisper_decoder(model: EarlyExitASRModel, layer: int, memory: torch.Tensor,
                            lengths: torch.Tensor, output_dir: Path, quantize: Optional[str]) -> List[dict]:
    """``cross_kv<k>.onnx`` and ``decoder<k>.onnx`` of exit ``layer``'s decoder (with int8, also the
    fp32 source of ``decoder<k>.int8.onnx``: the output layer in the form int8 quantisation needs)."""
    from espnet_eexit.export.whisper_graphs import CrossKeysValuesGraph, DecoderStepGraph

    decoder = model.decoder_for_exit(layer)
    kv_graph, step_graph = CrossKeysValuesGraph(decoder), DecoderStepGraph(decoder)
    kv_path, step_path = output_dir / f"cross_kv{layer}.onnx", output_dir / f"decoder{layer}.onnx"
    logging.debug("exporting %s and %s", kv_path, step_path)
    _export(kv_graph, (memory,), kv_path, ["memory"], ["cross_kv"],
            {"memory": {0: "batch", 1: "steps"}, "cross_kv": {2: "batch", 4: "steps"}})
    with torch.no_grad():
        cross_kv = kv_graph(memory)
    tokens = torch.tensor([[decoder.sot if decoder.sot is not None else model.sos, model.sos, 5]] * memory.size(0))
    step_args = ((tokens, cross_kv, lengths, torch.tensor(1)), ["tokens", "cross_kv", "memory_lengths", "start"],
                 ["log_probs"], {"tokens": {0: "batch", 1: "length"}, "cross_kv": {2: "batch", 4: "steps"},
                                 "memory_lengths": {0: "batch"}, "log_probs": {0: "batch", 1: "positions"}})
    _export(step_graph, step_args[0], step_path, *step_args[1:])
    step = dict(name=f"decoder{layer}", file=step_path.name, decoder_of=layer)
    if quantize == "int8":
        source = output_dir / f"decoder{layer}.int8_source.onnx"
        _export(DecoderStepGraph(decoder, transposed_output=True), step_args[0], source, *step_args[1:])
        step["int8_source"] = source.name
    return [dict(name=f"cross_kv{layer}", file=kv_path.name, decoder_of=layer), step]


def export_model(
    model: EarlyExitASRModel,
    output_dir: Path,
    token_list: List[str],
    fs: int,
    token_type: str = "char",
    bpemodel: Optional[Path] = None,
    quantize: Optional[str] = None,
    default_policy: str = "fixed",
    exit_controller: Optional[Path] = None,
    max_input_seconds: float = 30.0,
    maxlenratio: float = 0.2,
) -> dict:
    """Write the graphs, feature arrays and manifest of ``model`` into ``output_dir``.

    ``default_policy`` (a spec such as ``entropy:0.3``, checked against the model's exits) is what
    the runtime uses when it is given none; ``exit_controller`` (the learned policy's, fitted on
    dev) is copied next to the graphs. The runtime refuses audio longer than ``max_input_seconds``
    (a device's memory budget; Whisper's window is 30 s). A model with decoders
    (Whisper) decodes greedily, at most ``maxlenratio`` tokens per encoder frame (as ESPnet's beam
    search option). Returns the manifest.
    """
    check_exportable(model)
    from espnet_eexit.exit_controller import ExitController
    from espnet_eexit.exit_policy import parse_policy_spec

    if exit_controller is not None:  # the learned policy's, checked against this model
        ExitController.load(exit_controller).check_model(model.exit_layers, model.encoder.num_layers,
                                                          str(exit_controller))
    parse_policy_spec(default_policy, controller=exit_controller).bind(model.exit_layers, model.encoder.num_layers)
    if quantize not in (None, "int8"):
        raise EarlyExitConfigError(f"--quantize {quantize}: only int8 is supported")
    # every check before the first file is written
    whisper = is_whisper(model)
    tokenizer_file = Path(bpemodel or "") / "tokenizer.json"
    if token_type == "bpe" and (bpemodel is None or not Path(bpemodel).is_file()):
        raise EarlyExitConfigError(f"--bpemodel {bpemodel}: token_type bpe needs the model's BPE model file")
    if token_type == "hugging_face" and not tokenizer_file.is_file():
        raise EarlyExitConfigError(
            f"{tokenizer_file}: no such file; token_type hugging_face needs the tokenizer directory "
            "(the model's bpemodel) with its tokenizer.json")
    if token_type not in ("bpe", "char", "word", "hugging_face"):
        raise EarlyExitConfigError(
            f"--token_type {token_type}: the runtime turns tokens into text for bpe, char, word or hugging_face"
        )
    if whisper and max_input_seconds > encoder_window_seconds(model):
        raise EarlyExitConfigError(
            f"--max_input_seconds {max_input_seconds:g}: Whisper takes at most {encoder_window_seconds(model):g} s")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    encoder = model.encoder

    # an example input long enough for any subsampling (2 s of noise); shapes stay dynamic
    torch.manual_seed(0)
    speech = torch.randn(2, 2 * fs) * 0.1
    speech_lengths = torch.tensor([2 * fs, 2 * fs - fs // 4])
    if whisper:
        from espnet_eexit.export.whisper_graphs import WHISPER_FEATURES_FILE, whisper_feature_arrays

        np.savez(output_dir / WHISPER_FEATURES_FILE, **whisper_feature_arrays(encoder))
        with torch.no_grad(), whisper_eager_attention(encoder):
            feats, feats_lengths = encoder.log_mel(speech, speech_lengths)
            graphs = _export_graphs(model, output_dir, feats, feats_lengths, quantize)
        features = dict(kind="whisper_log_mel", fs=fs, n_mels=int(feats.size(1)), file=WHISPER_FEATURES_FILE)
    elif reads_waveforms(model):
        # (B, S, 1) waveforms: the example batch is padded, so that the graph holds the path that
        # keeps padding out of the feature encoder's normalisation (``_feature_encoder``)
        graphs = _export_graphs(model, output_dir, speech[..., None], speech_lengths)
        features = dict(kind="waveform", fs=fs)
    else:
        np.savez(output_dir / FEATURES_FILE, **feature_arrays(model.frontend))
        with torch.no_grad():
            feats, feats_lengths = model._extract_feats(speech, speech_lengths)
        with sinusoids_in_graph(encoder):
            graphs = _export_graphs(model, output_dir, feats, feats_lengths)
        features = feature_settings(model.frontend, fs)

    for graph in graphs:
        path = output_dir / graph["file"]
        graph["bytes"] = path.stat().st_size
        graph["sha256"] = _sha256(path)
        int8_note = ""
        if quantize == "int8":
            int8 = path.with_name(path.stem + ".int8.onnx")
            source = output_dir / graph.pop("int8_source", graph["file"])
            quantize_int8(source, int8)
            if source != path:
                source.unlink()
            graph["int8_file"], graph["int8_bytes"] = int8.name, int8.stat().st_size
            int8_note = f"; int8: {int8.name} {graph['int8_bytes'] / 1e6:.2f} MB"
        # one line per graph (onnxruntime's quantiser would log hundreds per graph: quiet_quantiser)
        logging.info("wrote %s (%s): %.2f MB%s", path, _describe(graph, whisper), graph["bytes"] / 1e6, int8_note)

    if token_type == "bpe":
        shutil.copyfile(bpemodel, output_dir / "bpe.model")
    if token_type == "hugging_face":
        shutil.copyfile(tokenizer_file, output_dir / "tokenizer.json")
    manifest = dict(
        format=FORMAT, version=FORMAT_VERSION, opset=OPSET,
        num_layers=encoder.num_layers, exit_layers=list(model.exit_layers),
        blank_id=int(model.blank_id), token_type=token_type,
        bpemodel={"bpe": "bpe.model", "hugging_face": "tokenizer.json"}.get(token_type),
        token_list=list(token_list),
        features=features,
        graphs=graphs,
        quantized=quantize,
        default_policy=default_policy,
        max_input_seconds=max_input_seconds,
    )
    if whisper:
        decoder = model.decoder
        manifest["decoder"] = dict(
            kind="greedy", prompt=([decoder.sot] if decoder.sot is not None else []) + [int(model.sos)],
            eos=int(model.eos), max_output_length=int(decoder.max_output_length), maxlenratio=maxlenratio)
    if exit_controller is not None:
        shutil.copyfile(exit_controller, output_dir / CONTROLLER)
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
