"""Transcribe audio with an exported early-exit model (torch-free: numpy + onnxruntime).

    eexit-transcribe --model_dir exp/asr_x/onnx a.wav b.flac
    eexit-transcribe --model_dir DIR --policy entropy:0.3 --wav_scp wav.scp \
        --output_dir out/   # writes out/text, out/exit, out/exit_info (as asr_inference does)

(``eexit-transcribe`` is ``python -m eexit_runtime.transcribe``, also reachable as
``python -m espnet_eexit.runtime.transcribe``.)

Policies (``--policy``): ``fixed`` (last exit), ``fixed:K``, ``entropy:T``, ``max_posterior:T``,
``nbest_posterior:T``, ``agreement:P``, ``learned:T`` (the export's ``exit_controller.json`` or
``--exit_controller``), ``budget:R`` (relative depth) or ``budget:Nms`` (encoder wall time measured
here). Without ``--output_dir`` it prints ``utt<TAB>exit<TAB>text`` per utterance.
Audio must be at the model's sampling rate (one line says so otherwise); a multi-channel file is
read from its first channel, as ESPnet's front end does; a missing, empty or non-audio file, or one
longer than the export takes (``--max_input_seconds`` of export_onnx), gets a warning and an empty
result, and the others are transcribed.
"""
import argparse
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from eexit_runtime.cli import run_main
from eexit_runtime.errors import EarlyExitConfigError


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", type=Path, required=True, help="export_onnx's output directory")
    parser.add_argument("--policy", default=None,
                        help="exit policy spec (default: the export's default_policy, fixed = last exit unless set)")
    parser.add_argument("--exit_controller", type=Path, default=None,
                        help="learned policy: a controller file (default: the export's exit_controller.json)")
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    parser.add_argument("--num_threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--memory_arena", action="store_true",
                        help="onnxruntime's memory arena: ~2.4 x faster on large batches, ~1.8 x the peak memory")
    parser.add_argument("--wav_scp", type=Path, default=None, help="a Kaldi list: utt path")
    parser.add_argument("--output_dir", type=Path, default=None,
                        help="write text, exit (utt layer confidence) and exit_info here")
    parser.add_argument("audio", nargs="*", help="audio files (utterance id = file name without suffix)")
    return parser


def read_audio(path: str, fs: int) -> np.ndarray:
    import soundfile

    waveform, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if rate != fs:  # screened before; a pipe or ark entry is only known here
        raise EarlyExitConfigError(f"{path}: {rate} Hz, but the model takes {fs} Hz audio")
    return waveform[:, 0]


def transcribe(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    from eexit_runtime.audio_inputs import screen_audio
    from eexit_runtime.datadir import read_kaldi_text
    from eexit_runtime.exit_info import format_exit_info, summarise
    from eexit_runtime.model import EarlyExitRuntime

    if (args.wav_scp is None) == (not args.audio):
        raise EarlyExitConfigError("give audio files or --wav_scp (one of them)")
    if args.batch_size < 1 or args.num_threads < 1:
        raise EarlyExitConfigError("--batch_size and --num_threads must be >= 1")
    if args.wav_scp is not None:
        if not args.wav_scp.is_file():
            raise EarlyExitConfigError(f"--wav_scp {args.wav_scp}: no such file")
        entries: Dict[str, str] = dict(read_kaldi_text(args.wav_scp))
        source = str(args.wav_scp)
    else:
        entries = {Path(a).stem: a for a in args.audio}
        source = "the audio arguments"
    runtime = EarlyExitRuntime(args.model_dir, precision=args.precision, num_threads=args.num_threads,
                               memory_arena=args.memory_arena)
    policy = runtime.policy(args.policy, controller=args.exit_controller)
    bad = screen_audio(entries, runtime.fs, source, max_seconds=runtime.max_input_seconds)
    keys = [k for k in entries if k not in bad]

    texts: Dict[str, str] = {k: "" for k in bad}
    exits: Dict[str, str] = {k: "- nan" for k in bad}
    exit_counts: Dict[int, int] = {}
    start, total_audio_s = time.perf_counter(), 0.0
    for first in range(0, len(keys), args.batch_size):
        batch = keys[first: first + args.batch_size]
        waveforms = [read_audio(entries[k], runtime.fs) for k in batch]
        total_audio_s += sum(len(w) for w in waveforms) / runtime.fs
        for key, result in zip(batch, runtime.transcribe(waveforms, policy)):
            texts[key] = result.text
            exits[key] = f"{result.exit_layer} {result.confidence:.6g}"
            exit_counts[result.exit_layer] = exit_counts.get(result.exit_layer, 0) + 1
        done = min(first + args.batch_size, len(keys))
        if done % 100 < args.batch_size or done == len(keys):
            logging.info("%d/%d utterances", done, len(keys))
    elapsed = time.perf_counter() - start
    if keys:
        logging.info("%.1f s of audio in %.1f s (real-time factor %.3f, %s, %d thread(s))",
                     total_audio_s, elapsed, elapsed / max(total_audio_s, 1e-9), args.precision, args.num_threads)

    if args.output_dir is None:
        for key in entries:
            print(f"{key}\t{exits[key].split()[0]}\t{texts[key]}")
        return
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "text").write_text("".join(f"{k} {texts[k]}\n" for k in sorted(entries)), encoding="utf-8")
    (out / "exit").write_text("".join(f"{k} {exits[k]}\n" for k in sorted(entries)))
    if bad:
        (out / "bad_audio").write_text("".join(f"{k} {r}\n" for k, r in sorted(bad.items())))
    fixed = policy.name == "fixed"
    info = summarise(runtime.num_layers, len(keys), runtime.layers_computed,
                     exit_layer=policy.exit_layer if fixed else None,
                     policy=None if fixed else policy.describe(),
                     exit_counts=None if fixed else exit_counts)
    (out / "exit_info").write_text(format_exit_info(info))
    logging.info("wrote %s/{text,exit,exit_info}", out)


def main(cmd: Optional[List[str]] = None) -> None:
    run_main(transcribe, cmd)


if __name__ == "__main__":
    main()
