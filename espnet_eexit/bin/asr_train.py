"""ESPnet's ``asr_train`` with the early-exit encoders and model registered.

    python -m espnet_eexit.bin.asr_train --config conf/train_asr_eexit_conformer.yaml ...

Every option of ``espnet2.bin.asr_train`` works (``--ngpu``, ``--multiprocessing_distributed``,
``--collect_stats``, ``--resume`` ...); ``encoder: eexit_conformer`` and ``model: eexit`` become
valid choices.

Before resuming, ``<output_dir>/checkpoint.pth`` is checked: ESPnet writes it in place, so a run
killed while saving leaves a truncated file, and the next ``--resume`` died in ``torch.load``
with a traceback naming no file. Now: one line naming the file and what to do.
"""
import zipfile
from pathlib import Path
from typing import List, Optional

from espnet_eexit.bin.cli import run_main
from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.tasks.asr import EarlyExitASRTask


def get_parser():
    return EarlyExitASRTask.get_parser()


def check_resumable(output_dir: Path) -> None:
    """Raise :class:`EarlyExitConfigError` if ``output_dir/checkpoint.pth`` exists but is not a
    complete ``torch.save`` archive (its zip directory, written last, is missing)."""
    checkpoint = Path(output_dir) / "checkpoint.pth"
    if not checkpoint.exists():
        return
    try:
        with zipfile.ZipFile(checkpoint):
            pass
    except (zipfile.BadZipFile, OSError) as e:
        epochs = sorted((int(p.name[: -len("epoch.pth")]), p) for p in Path(output_dir).glob("*epoch.pth")
                        if p.name[: -len("epoch.pth")].isdigit())
        restart = f"; or start from the last complete epoch's weights with --init_param {epochs[-1][1]}" if epochs else ""
        raise EarlyExitConfigError(
            f"{checkpoint} cannot be resumed from: it is incomplete ({e}; a run killed while saving "
            f"it?). Move it away to train from the start{restart}"
        )


def _train(cmd: Optional[List[str]]) -> None:
    args = get_parser().parse_args(cmd)
    if args.resume and not args.collect_stats and args.output_dir is not None:
        check_resumable(Path(args.output_dir))
    EarlyExitASRTask.main(args=args)


def main(cmd: Optional[List[str]] = None) -> None:
    run_main(_train, cmd)


if __name__ == "__main__":
    main()
