"""Measure the ONNX runtime of an exported model, in one run: latency to each exit against the full
model and the ideal, against PyTorch eager on the same exit, fp32 against int8, peak memory and
the size a device ships per exit.

    python -m espnet_eexit.bin.benchmark_runtime --model_dir exp/asr_x/onnx \
        --asr_train_config exp/asr_x/config.yaml --asr_model_file exp/asr_x/valid.loss.ave.pth \
        [--batch_sizes 1 8] [--lengths 5 15] [--threads 1 2] [--steps 10]

For every precision x threads x batch size x audio length (random noise at the model's rate):
* ``to exit k``: median wall time of ``transcribe(policy=fixed:k)`` (features, segments up to k,
  greedy CTC) and its ratio to the last exit;
* ``ideal``: (features + front end + segments up to k) / (all of them), from the medians of each
  piece timed alone, and measured / ideal;
* ``PyTorch``: the same exit with ESPnet's model in eager mode (``encode`` up to the exit, CTC
  head, argmax) at the same thread count, in a process of its own, and runtime / PyTorch (with
  ``--asr_train_config``);
then, per exit, the bytes of front end + segments up to it (fp32, int8) and the peak resident
memory of a fresh runtime process transcribing the longest audio (VmHWM).
Timings interleave the exits step by step, so drift hits every exit alike.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np


def interleaved_ms(fns: Dict[str, Callable[[], object]], steps: int) -> Dict[str, float]:
    """Median ms of each function, the functions called round-robin (one warm-up round)."""
    for fn in fns.values():
        fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def peak_rss_mb(model_dir: Path, precision: str, seconds: float, threads: int, memory_arena: bool) -> float:
    """Peak resident memory (VmHWM: this process's own, not inherited through fork as ru_maxrss
    is) of a fresh process that loads the runtime and transcribes once."""
    code = (
        "import numpy as np\n"
        "from espnet_eexit.runtime import EarlyExitRuntime\n"
        f"rt = EarlyExitRuntime({str(model_dir)!r}, precision={precision!r}, num_threads={threads}, "
        f"memory_arena={memory_arena})\n"
        f"w = (np.random.default_rng(0).standard_normal(int({seconds} * rt.fs)) * 0.1).astype('float32')\n"
        "rt.transcribe([w])\n"
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def pytorch_ms(args, threads: int, waveforms, exit_layers) -> Dict[int, float]:
    """PyTorch eager, in a process of its own (its OpenMP threads spin after each call and would
    take cores from onnxruntime's): median ms to decode the batch greedily from each exit."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_pytorch_ms, (args.asr_train_config, args.asr_model_file, threads, waveforms,
                                        exit_layers, args.steps))


def _pytorch_ms(config, model_file, threads, waveforms, exit_layers, steps):
    fns = pytorch_exit_fns(config, model_file, threads, waveforms, exit_layers)
    return interleaved_ms(fns, steps)


def pytorch_exit_fns(config, model_file, threads: int, waveforms, exit_layers):
    """PyTorch eager: ``{k: fn}`` decoding the batch greedily from exit k."""
    import torch

    import espnet_eexit  # noqa: F401
    from espnet_eexit.model_files import loading_model_file
    from espnet_eexit.tasks.asr import EarlyExitASRTask

    torch.set_num_threads(threads)
    with loading_model_file(config, model_file):
        model, _ = EarlyExitASRTask.build_model_from_file(config, model_file, "cpu")
    model.eval()
    lengths = torch.tensor([len(w) for w in waveforms])
    speech = torch.nn.utils.rnn.pad_sequence([torch.tensor(w) for w in waveforms], batch_first=True)

    def decode(k):
        def fn():
            with torch.no_grad():
                model.inference_exit_layer = k
                hidden, _ = model.encode(speech, lengths)
                model.ctc_for_exit(k).log_softmax(hidden).argmax(-1)
        return fn

    return {k: decode(k) for k in exit_layers}


def main(cmd: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--asr_train_config", type=Path, default=None, help="compare with PyTorch eager")
    parser.add_argument("--asr_model_file", type=Path, default=None)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--lengths", type=float, nargs="+", default=[5.0, 15.0], help="seconds")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--memory_arena", action="store_true", help="onnxruntime's memory arena on (as transcribe's)")
    args = parser.parse_args(cmd)
    if (args.asr_train_config is None) != (args.asr_model_file is None):
        parser.error("--asr_train_config and --asr_model_file go together")
    from espnet_eexit.runtime import EarlyExitRuntime

    manifest = json.loads((args.model_dir / "model.json").read_text())
    if manifest.get("decoder"):
        parser.error(f"{args.model_dir} decodes with decoders (early-exit Whisper), whose time depends on "
                     "what is said: measure it on real audio with python -m espnet_eexit.bin.compare_faster_whisper")
    exits, num_layers = manifest["exit_layers"], manifest["num_layers"]
    print(f"# {args.model_dir}: exits {exits} of {num_layers} layers; median of {args.steps} steps")
    print("| precision | threads | batch | audio s | exit | ms | / last | ideal | / ideal | PyTorch ms | / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for threads in args.threads:
        for batch_size in args.batch_sizes:
            for seconds in args.lengths:
                fs = manifest["features"]["fs"]
                waveforms = [(rng.standard_normal(int(seconds * fs)) * 0.1).astype(np.float32)
                             for _ in range(batch_size)]
                torch_ms = pytorch_ms(args, threads, waveforms, exits) if args.asr_train_config else {}
                for precision in args.precisions:
                    rt = EarlyExitRuntime(args.model_dir, precision=precision, num_threads=threads,
                                          memory_arena=args.memory_arena)
                    carried = {0: rt.front_end(waveforms)}
                    for k in exits:
                        carried[k] = rt.segment(k, carried[max(c for c in carried if c < k)])[0]
                    previous = dict(zip(exits, [0] + exits[:-1]))
                    pieces = {"front": lambda: rt.front_end(waveforms)}
                    pieces.update({f"seg{k}": (lambda k=k: rt.segment(k, carried[previous[k]]))
                                   for k in exits})
                    pieces.update({f"exit{k}": (lambda k=k: rt.transcribe(waveforms, f"fixed:{k}"))
                                   for k in exits})
                    ms = interleaved_ms(pieces, args.steps)
                    total_pieces = ms["front"] + sum(ms[f"seg{k}"] for k in exits)
                    last = ms[f"exit{exits[-1]}"]
                    for k in exits:
                        ideal = (ms["front"] + sum(ms[f"seg{j}"] for j in exits if j <= k)) / total_pieces
                        ratio = ms[f"exit{k}"] / last
                        pt = torch_ms.get(k)
                        pt_cells = f"{pt:.1f} | {ms[f'exit{k}'] / pt:.2f}" if pt else "- | -"
                        print(f"| {precision} | {threads} | {batch_size} | {seconds:g} | {k} | "
                              f"{ms[f'exit{k}']:.1f} | {ratio:.2f} | {ideal:.2f} | {ratio / ideal:.2f} | {pt_cells} |")
                    sys.stdout.flush()
    print()
    print("| exit | fp32 MB up to it | int8 MB up to it | int8 / fp32 |")
    print("|---|---|---|---|")
    fp32 = EarlyExitRuntime(args.model_dir)
    int8 = EarlyExitRuntime(args.model_dir, precision="int8") if "int8" in args.precisions else None
    for k in exits:
        a = fp32.bytes_up_to_exit(k) / 1e6
        b = int8.bytes_up_to_exit(k) / 1e6 if int8 else float("nan")
        print(f"| {k} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    print()
    longest = max(args.lengths)
    for precision in args.precisions:
        rss = peak_rss_mb(args.model_dir, precision, longest, 1, args.memory_arena)
        print(f"peak RSS, runtime process transcribing {longest:g} s ({precision}, 1 thread): {rss:.0f} MB")


if __name__ == "__main__":
    main()
