"""ESPnet's ``asr_inference`` for early-exit models, plus ``--exit_layer``.

    python -m espnet_eexit.bin.asr_inference --exit_layer 4 \
        --asr_train_config exp/asr/config.yaml --asr_model_file exp/asr/valid.loss.best.pth \
        --data_path_and_name_and_type dump/raw/test/wav.scp,speech,sound --output_dir out ...

Every option of ``espnet2.bin.asr_inference`` works; the output layout is ESPnet's
(``<output_dir>/1best_recog/{text,token,token_int,score}``), plus ``<output_dir>/exit_info`` (the
exit and the encoder layers really computed per utterance, counted with hooks). With ``--exit_layer k`` only the
encoder layers up to k are computed and exit k's own CTC head / decoder score the hypotheses.
"""
import contextlib
import logging
import sys
from pathlib import Path
from typing import List, Optional

import espnet_eexit  # noqa: F401  (registers our classes)
from espnet2.bin import asr_inference as espnet_asr_inference
from espnet2.utils.types import int_or_none

from espnet_eexit.bin.cli import run_main
from espnet_eexit.inference import EarlyExitSpeech2Text


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


def _inference(cmd: Optional[List[str]]) -> None:
    print(" ".join(sys.argv if cmd is None else ["asr_inference.py"] + cmd), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    exit_layer = kwargs.pop("exit_layer")

    built = []

    class _Speech2Text(EarlyExitSpeech2Text):
        def __init__(self, *a, **kw):
            super().__init__(*a, exit_layer=exit_layer, **kw)
            built.append(self)

    with _speech2text_class(_Speech2Text):
        espnet_asr_inference.inference(**kwargs)
    if built and built[0].exit_layer is not None:
        summary = built[0].exit_summary()
        Path(args.output_dir, "exit_info").write_text(summary)
        logging.info("exit summary: %s", summary.replace("\n", "; "))


def main(cmd: Optional[List[str]] = None) -> None:
    run_main(_inference, cmd)


if __name__ == "__main__":
    main()
