"""ESPnet's ``asr_inference`` for early-exit models: a fixed exit, an exit policy, or every exit.

    # fixed exit: only layers 1..4 run (ESPnet's own inference loop)
    python -m espnet_eexit.bin.asr_inference --exit_layer 4 \
        --asr_train_config exp/asr/config.yaml --asr_model_file exp/asr/valid.loss.best.pth \
        --data_path_and_name_and_type dump/raw/test/wav.scp,speech,sound --output_dir out
    # dynamic exit: each utterance stops at the first exit whose confidence passes the threshold
    python -m espnet_eexit.bin.asr_inference --exit_policy entropy --exit_threshold 0.2 ...
    # every exit from one encoder pass, with every confidence measure (scoring, threshold sweeps)
    python -m espnet_eexit.bin.asr_inference --all_exits true ...

Every option of ``espnet2.bin.asr_inference`` works. Outputs (ESPnet's layout):

* fixed exit / policy: ``<output_dir>/1best_recog/{text,token,token_int,score}``, plus
  ``<output_dir>/exit_info`` (:mod:`espnet_eexit.exit_info`: exits used, encoder layers really
  computed per utterance, counted with hooks, share saved) and, for a policy,
  ``<output_dir>/exit`` (``utt layer confidence`` per utterance).
* ``--all_exits``: ``<output_dir>/exit<k>/1best_recog/...`` for every exit k and
  ``<output_dir>/exit<k>/confidence`` (``utt entropy max_posterior nbest_posterior agreement``).

With a policy or ``--all_exits``, ``--batch_size`` may exceed 1: utterances that exit drop out of
the batch and the rest go on.

The policies read each exit's CTC posteriors; on early-exit Whisper trained without CTC heads they
read each exit's decoding instead (a decoding per exit passed), and on one trained with
``model_conf.exit_ctc_vocabulary`` (character CTC heads) the heads, so that only the exit where an
utterance stops is decoded (decode such a model with ``--ctc_weight 0.0``).

Before decoding, the config must be an early-exit ASR model's (another project's or ESPnet task's
config: one line naming it), and every file of the list is checked
(:mod:`espnet_eexit.audio_inputs`): audio at another sample rate than the model's stops the run
with one line; a missing, empty or non-audio file, or one longer than the model takes (Whisper's
30-s window), gets one warning line and an empty result (``--bad_audio skip``, listed in
``<output_dir>/bad_audio``) or stops the run before decoding (``--bad_audio error``). A file of
several channels is decoded from its first (as ESPnet's front end does), with a warning.

A run writes into ``<output_dir>/incomplete/`` and moves its files into ``<output_dir>`` once it
has finished: a run that fails (e.g. on a full disk: one line, exit status 1) leaves no
half-written result there, and an earlier run's results in ``<output_dir>`` as they were.
"""
import contextlib
import errno
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import espnet_eexit  # noqa: F401  (registers our classes)
import numpy as np
import torch
from espnet2.bin import asr_inference as espnet_asr_inference
from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.tasks.asr import ASRTask
from espnet2.utils.types import float_or_none, int_or_none, str2bool, str_or_none
from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError

from espnet_eexit.audio_inputs import append_empty_results, model_sample_rate, screen_wav_scp
from espnet_eexit.bin.cli import run_main
from espnet_eexit.bin.show_exits import early_exit_model_config, exits_of_config, max_input_seconds_of_config
from espnet_eexit.datadir import read_kaldi_text
from espnet_eexit.errors import EarlyExitConfigError, EarlyExitRunError
from espnet_eexit.exit_policy import CONFIDENCE_POLICIES, EXIT_POLICIES, build_exit_policy
from espnet_eexit.inference import EarlyExitSpeech2Text, empty_results


def get_parser():
    parser = espnet_asr_inference.get_parser()
    group = parser.add_argument_group("Early exit related")
    group.add_argument(
        "--exit_layer",
        type=int_or_none,
        default=None,
        help="Decode from the exit after this encoder layer (one of the model's exit_layers); "
        "layers above it are not computed. Default: the last exit.",
    )
    group.add_argument(
        "--exit_policy",
        type=str_or_none,
        default=None,
        help=f"Choose the exit per utterance: one of {sorted(EXIT_POLICIES)} "
        "(see espnet_eexit.exit_policy). Default: none (a fixed exit, --exit_layer).",
    )
    group.add_argument(
        "--exit_threshold",
        type=float_or_none,
        default=None,
        help="Threshold of the policy: entropy stops when the normalised entropy <= it; "
        "max_posterior and nbest_posterior when the confidence >= it (all in [0, 1]); "
        "agreement: the patience p >= 2 (exits in a row with the same greedy CTC hypothesis); "
        "budget: the relative encoder depth allowed, in (0, 1].",
    )
    group.add_argument(
        "--exit_nbest",
        type=int,
        default=8,
        help="N of the N-best list of nbest_posterior (and of the confidence --all_exits records).",
    )
    group.add_argument(
        "--exit_budget_ms",
        type=float_or_none,
        default=None,
        help="budget policy: encoder wall-time budget per batch in ms (instead of --exit_threshold).",
    )
    group.add_argument(
        "--exit_controller",
        type=str_or_none,
        default=None,
        help="learned policy: the controller fitted on dev (python -m espnet_eexit.bin.fit_exit_controller).",
    )
    group.add_argument(
        "--ctc_greedy",
        type=str2bool,
        default=False,
        help="Decode with the best path of the exit's CTC head (frame argmax) instead of ESPnet's "
        "beam search: ~9x faster on a small CPU model; needs --ctc_weight 1.0 and no LM (--beam_size unused).",
    )
    group.add_argument(
        "--bad_audio",
        choices=("skip", "error"),
        default="skip",
        help="A missing, empty or non-audio file in the list: skip = warn, write an empty result "
        "for it and decode the rest (listed in <output_dir>/bad_audio); error = stop before decoding.",
    )
    group.add_argument(
        "--all_exits",
        type=str2bool,
        default=False,
        help="Decode every exit from one encoder pass into <output_dir>/exit<k>/ and record every "
        "confidence measure per exit.",
    )
    return parser


@contextlib.contextmanager
def _speech2text_class(cls):
    """ESPnet's ``inference()`` builds ``Speech2Text`` by its module-level name: bind ours there
    for the duration of the call, so ESPnet's own data loader and writers do the rest."""
    original = espnet_asr_inference.Speech2Text
    espnet_asr_inference.Speech2Text = cls
    try:
        yield
    finally:
        espnet_asr_inference.Speech2Text = original


# Options of ESPnet's inference() that Speech2Text does not take (the loop's own).
_LOOP_OPTIONS = ("output_dir", "seed", "num_workers", "log_level", "data_path_and_name_and_type",
                 "key_file", "allow_variable_data_keys", "ngpu", "model_tag",
                 "word_lm_train_config", "word_lm_file")


def _write_nbest(writer: DatadirWriter, key: str, results, nbest: int) -> None:
    """ESPnet's n-best layout: ``<n>best_recog/{token,token_int,score,text}``."""
    for n, (text, token, token_int, hyp) in zip(range(1, nbest + 1), results):
        best = writer[f"{n}best_recog"]
        best["token"][key] = " ".join(token)
        best["token_int"][key] = " ".join(map(str, token_int))
        best["score"][key] = str(float(hyp.score))
        if text is not None:
            best["text"][key] = text


# an exit<k>/confidence line for an utterance that was not decoded: '-' for every measure
NO_CONFIDENCE = " ".join("-" for _ in CONFIDENCE_POLICIES)


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def _first_channel(preprocess_fn: Optional[Callable], names: List[str]) -> Callable:
    """``preprocess_fn``, then the first channel of a multi-channel audio input ``names``: ESPnet's
    collate cannot pad a mono and a stereo utterance into one batch, so the loader reads the
    channel the model reads at inference (the first: ESPnet's DefaultFrontend, ``as_waveforms``)."""
    def preprocess(uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if preprocess_fn is not None:
            data = preprocess_fn(uid, data)
        for name in names:
            if name in data and data[name].ndim == 2:  # (samples, channels)
                data[name] = data[name][:, 0]
        return data

    return preprocess


def _own_loop(args, speech2text: EarlyExitSpeech2Text) -> None:
    """Batched decoding under an exit policy, or of every exit: ESPnet's data loader and writer."""
    sound = [name for _, name, kind in args.data_path_and_name_and_type if kind == "sound"]
    loader = ASRTask.build_streaming_iterator(
        args.data_path_and_name_and_type,
        dtype=args.dtype,
        batch_size=args.batch_size,
        key_file=args.key_file,
        num_workers=args.num_workers,
        preprocess_fn=_first_channel(ASRTask.build_preprocess_fn(speech2text.asr_train_args, False), sound),
        collate_fn=ASRTask.build_collate_fn(speech2text.asr_train_args, False),
        allow_variable_data_keys=args.allow_variable_data_keys,
        inference=True,
    )
    out = Path(args.output_dir)
    layers = speech2text.asr_model.exit_layers
    writers = ({k: DatadirWriter(out / f"exit{k}") for k in layers} if args.all_exits
               else {None: DatadirWriter(out)})
    done, total_keys, started = 0, None, time.perf_counter()
    logged = started
    if args.key_file:
        total_keys = sum(1 for line in open(args.key_file) if line.strip())
    with contextlib.ExitStack() as stack:
        for w in writers.values():
            stack.enter_context(w)
        for keys, batch in loader:
            speech, lengths = batch["speech"], batch["speech_lengths"]
            try:
                if args.all_exits:
                    for k, per_utt in speech2text.decode_all_exits(speech, lengths).items():
                        for key, (conf, results) in zip(keys, per_utt):
                            _write_nbest(writers[k], key, results, args.nbest)
                            writers[k]["confidence"][key] = " ".join(_fmt(v) for v in conf)
                else:
                    for key, (decision, results) in zip(keys, speech2text.decode_batch(speech, lengths)):
                        _write_nbest(writers[None], key, results, args.nbest)
                        writers[None]["exit"][key] = f"{decision.layer} {_fmt(decision.confidence)}"
            except TooShortUttError as e:
                # as ESPnet does: an empty result, and the run goes on
                logging.warning(f"Utterance {keys} {e}")
                for key in keys:
                    for k, w in writers.items():
                        _write_nbest(w, key, empty_results(args.nbest), args.nbest)
                        if args.all_exits:
                            w["confidence"][key] = NO_CONFIDENCE
                        else:
                            w["exit"][key] = f"{layers[0]} -"
            done += len(keys)
            # every 50 utterances and at least every 20 s: asr.sh's progress lines read these
            if done % 50 < len(keys) or done == total_keys or time.perf_counter() - logged >= 20:
                logged = time.perf_counter()
                logging.info(
                    f"decoded {done}{'/' + str(total_keys) if total_keys else ''} utterances "
                    f"({time.perf_counter() - started:.0f} s)"
                )


def _screen_audio(args, kwargs, action: str, train_config: Optional[dict]) -> Optional[dict]:
    """Check the list's audio files (:mod:`espnet_eexit.audio_inputs`) before decoding, against
    the model's sample rate and longest input (Whisper: 30 s). With bad files, the decoding runs
    on the others (a key file in the output dir); returns None if all are fine, else
    ``{"bad": {utt: reason}, "decodable": [keys]}``."""
    sound = [(path, name) for path, name, kind in args.data_path_and_name_and_type if kind == "sound"]
    if not sound or train_config is None:
        return None
    fs = model_sample_rate(train_config)
    max_seconds = max_input_seconds_of_config(train_config)
    wanted = list(read_kaldi_text(Path(args.key_file))) if args.key_file else None
    bad: Dict[str, str] = {}
    for path, _ in sound:
        bad.update(screen_wav_scp(Path(path), fs, wanted, max_seconds,
                                  then="--bad_audio error stops the run" if action == "error"
                                  else "writing an empty result"))
    if not bad:
        return None
    if action == "error":
        first = next(iter(bad))
        raise EarlyExitConfigError(f"{len(bad)} utterance(s) cannot be decoded, e.g. {first}: {bad[first]} "
                                   "(--bad_audio skip decodes the others)")
    keys = wanted if wanted is not None else list(read_kaldi_text(Path(sound[0][0])))
    decodable = [k for k in keys if k not in bad]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "keys.decodable").write_text("".join(f"{k} {k}\n" for k in decodable))
    args.key_file = kwargs["key_file"] = str(out / "keys.decodable")
    return {"bad": bad, "decodable": decodable}


def _write_bad(args, bad: Dict[str, str], all_exits: bool, policy, layers: List[int]) -> None:
    """Empty results for the utterances that could not be decoded, in each output layout."""
    out = Path(args.output_dir)
    if all_exits:
        for k in layers:
            append_empty_results(out / f"exit{k}", bad, args.nbest, {"confidence": NO_CONFIDENCE})
    elif policy is not None:
        append_empty_results(out, bad, args.nbest, {"exit": f"{layers[0]} -"})
    else:
        append_empty_results(out, bad, args.nbest)


# Where a run writes until it has finished: <output_dir>/incomplete/, then moved into <output_dir>
STAGING = "incomplete"


def _commit_outputs(staging: Path, out: Path) -> None:
    """Move a finished run's files from ``staging`` into ``out``, replacing an earlier run's files
    of the same names, as ESPnet does. The directories come first (they may need space); the files
    then move by renames on one file system, which take none."""
    files = [path.relative_to(staging) for path in sorted(staging.rglob("*")) if path.is_file()]
    for name in files:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
    for name in files:
        os.replace(staging / name, out / name)
    shutil.rmtree(staging)


def _inference(cmd: Optional[List[str]]) -> None:
    print(" ".join(sys.argv if cmd is None else ["asr_inference.py"] + cmd), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    # A config of another project or ESPnet task: one line now, not a traceback from the builder
    train_config = (None if args.asr_train_config is None
                    else early_exit_model_config(Path(args.asr_train_config)))
    # Every output is written under <output_dir>/incomplete/ and moved into <output_dir> only
    # once the run has finished: a run that fails (a full disk, an error, a kill) leaves no
    # half-written result that reads as complete, only incomplete/ (removed unless killed).
    out = Path(args.output_dir)
    staging = out / STAGING
    created = not out.exists()
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run
    staging.mkdir(parents=True)
    args.output_dir = str(staging)
    try:
        _decode(args, train_config)
        _commit_outputs(staging, out)
    except BaseException as e:
        shutil.rmtree(out if created else staging, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise EarlyExitRunError(
                f"{out}: no space left on device while decoding into it; nothing of this run was "
                f"written there (its partial outputs were removed): free space and run again"
            ) from e
        raise


def _decode(args, train_config: Optional[dict]) -> None:
    """Decode as the options say into ``args.output_dir``."""
    kwargs = vars(args).copy()
    kwargs.pop("config", None)
    exit_layer = kwargs.pop("exit_layer")
    policy_name = kwargs.pop("exit_policy")
    threshold = kwargs.pop("exit_threshold")
    nbest_conf = kwargs.pop("exit_nbest")
    budget_ms = kwargs.pop("exit_budget_ms")
    controller = kwargs.pop("exit_controller")
    all_exits = kwargs.pop("all_exits")
    ctc_greedy = kwargs.pop("ctc_greedy")
    bad_audio_action = kwargs.pop("bad_audio")

    policy = None
    if policy_name is not None:
        if all_exits:
            raise EarlyExitConfigError("--all_exits decodes every exit: it takes no --exit_policy")
        policy = build_exit_policy(policy_name, threshold=threshold, exit_layer=exit_layer,
                                   nbest=nbest_conf, budget_ms=budget_ms, controller=controller)
        exit_layer = None
    elif threshold is not None or budget_ms is not None:
        raise EarlyExitConfigError("--exit_threshold/--exit_budget_ms need --exit_policy")
    if all_exits and exit_layer is not None:
        raise EarlyExitConfigError("--all_exits decodes every exit: it takes no --exit_layer")

    bad = _screen_audio(args, kwargs, bad_audio_action, train_config)
    if bad is not None and not bad["decodable"]:
        _write_bad(args, bad["bad"], all_exits, policy, exits_of_config(train_config)[0])
        return
    if policy is None and not all_exits:
        built = []

        class _Speech2Text(EarlyExitSpeech2Text):
            def __init__(self, *a, **kw):
                super().__init__(*a, exit_layer=exit_layer, ctc_greedy=ctc_greedy, **kw)
                built.append(self)

        with _speech2text_class(_Speech2Text):
            espnet_asr_inference.inference(**kwargs)
        speech2text = built[0]
    else:
        logging.basicConfig(
            level=args.log_level,
            format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
        )
        if args.ngpu > 1:
            raise EarlyExitConfigError("only --ngpu 0 or 1 is supported")
        torch.manual_seed(args.seed)
        s2t_kwargs = {k: v for k, v in kwargs.items() if k not in _LOOP_OPTIONS}
        s2t_kwargs["device"] = "cuda" if args.ngpu >= 1 else "cpu"
        # The loader batches the encoder; the beam search then runs per utterance, so build it as
        # ESPnet does for batch_size 1 (its vectorised BatchBeamSearch when every scorer allows)
        s2t_kwargs["batch_size"] = 1
        if args.model_tag is not None:
            raise EarlyExitConfigError("give --asr_train_config/--asr_model_file, not --model_tag")
        if args.word_lm_train_config is not None:
            raise EarlyExitConfigError("word LMs are not supported (nor by ESPnet's inference)")
        speech2text = EarlyExitSpeech2Text(
            exit_policy=policy, confidence_nbest=nbest_conf, ctc_greedy=ctc_greedy, **s2t_kwargs
        )
        _own_loop(args, speech2text)
    if bad is not None:
        _write_bad(args, bad["bad"], all_exits, policy, speech2text.asr_model.exit_layers)
    if not all_exits:
        summary = speech2text.exit_summary()
        Path(args.output_dir, "exit_info").write_text(summary)
        logging.info("exit summary: %s", summary.replace("\n", "; "))


def main(cmd: Optional[List[str]] = None) -> None:
    run_main(_inference, cmd)


if __name__ == "__main__":
    main()
