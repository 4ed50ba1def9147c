"""Export a trained early-exit model to ONNX, cut at its exits, for the torch-free runtime.

    python -m espnet_eexit.bin.export_onnx --asr_train_config exp/asr_x/config.yaml \
        --asr_model_file exp/asr_x/valid.loss.ave.pth --output_dir exp/asr_x/onnx [--quantize int8]

Writes ``front_end.onnx``, one ``exit<k>.onnx`` per exit (layers after the previous exit + exit
k's CTC head), ``frontend.npz`` (STFT window, mel matrix), ``bpe.model`` for BPE tokens and the
manifest ``model.json`` (:mod:`espnet_eexit.export.onnx_segments`); for early-exit Whisper also each
exit's decoder (``cross_kv<k>.onnx``, ``decoder<k>.onnx``), ``whisper_features.npz`` and
``tokenizer.json``; with ``--quantize int8`` also ``*.int8.onnx`` (onnxruntime's dynamic int8
quantisation). It logs one line per graph written (onnxruntime's quantiser, which logs every
tensor, is kept to its warnings). Then:

    python -m espnet_eexit.runtime.transcribe --model_dir exp/asr_x/onnx --policy entropy:0.3 a.wav
"""
import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from espnet_eexit.bin.cli import run_main
from espnet_eexit.errors import EarlyExitConfigError


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, required=True, help="the model's config.yaml")
    parser.add_argument("--asr_model_file", type=Path, required=True, help="the checkpoint (.pth)")
    parser.add_argument("--output_dir", type=Path, required=True, help="where the graphs and model.json go")
    parser.add_argument("--quantize", choices=["none", "int8"], default="none",
                        help="also write dynamically int8-quantised graphs (*.int8.onnx)")
    parser.add_argument("--default_policy", default="fixed",
                        help="the runtime's policy when it is given none, e.g. entropy:0.3 (default: fixed = last exit)")
    parser.add_argument("--max_input_seconds", type=float, default=30.0,
                        help="the longest audio the runtime accepts (it refuses longer input; "
                        "Whisper takes at most 30 s)")
    parser.add_argument("--maxlenratio", type=float, default=0.2,
                        help="models with decoders (Whisper): at most this many tokens per encoder frame "
                        "(ESPnet's beam-search option; conf/decode_whisper.yaml: 0.2)")
    parser.add_argument("--inference_config", type=Path, default=None,
                        help="an ESPnet decoding config (e.g. conf/decode_whisper.yaml): its maxlenratio "
                        "replaces --maxlenratio")
    parser.add_argument("--exit_controller", type=Path, default=None,
                        help="the learned policy's controller (fit_exit_controller) to ship with the graphs")
    return parser


def _export(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    for path in (args.asr_train_config, args.asr_model_file):
        if not path.is_file():
            raise EarlyExitConfigError(f"{path}: no such file")
    from espnet_eexit.bin.show_exits import early_exit_model_config

    # a config of another project or task: one line now, not a traceback from ESPnet's builder
    config = early_exit_model_config(args.asr_train_config)
    import yaml

    import espnet_eexit  # noqa: F401  (registers the plugin)
    from espnet_eexit.audio_inputs import model_sample_rate
    from espnet_eexit.export.onnx_segments import export_model
    from espnet_eexit.model_files import loading_model_file
    from espnet_eexit.tasks.asr import EarlyExitASRTask

    if args.inference_config is not None:
        if not args.inference_config.is_file():
            raise EarlyExitConfigError(f"--inference_config {args.inference_config}: no such file")
        decoding = yaml.safe_load(args.inference_config.read_text()) or {}
        args.maxlenratio = float(decoding.get("maxlenratio", 0.0))  # ESPnet's default: 0
    with loading_model_file(args.asr_train_config, args.asr_model_file):
        model, train_args = EarlyExitASRTask.build_model_from_file(args.asr_train_config, args.asr_model_file, "cpu")
    bpemodel = getattr(train_args, "bpemodel", None)
    with warnings.catch_warnings():
        # the TorchScript exporter warns about every Python-level shape expression it traces
        warnings.simplefilter("ignore")
        manifest = export_model(
            model, args.output_dir, token_list=list(train_args.token_list), fs=model_sample_rate(config),
            token_type=train_args.token_type, bpemodel=Path(bpemodel) if bpemodel else None,
            quantize=None if args.quantize == "none" else args.quantize, default_policy=args.default_policy,
            exit_controller=args.exit_controller, max_input_seconds=args.max_input_seconds,
            maxlenratio=args.maxlenratio,
        )
    logging.info("wrote %s/model.json: exits %s, %d graphs", args.output_dir, manifest["exit_layers"],
                 len(manifest["graphs"]))


def main(cmd: Optional[List[str]] = None) -> None:
    run_main(_export, cmd)


if __name__ == "__main__":
    sys.exit(main())
