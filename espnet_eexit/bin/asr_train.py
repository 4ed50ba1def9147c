"""ESPnet's ``asr_train`` with the early-exit encoders and model registered.

    python -m espnet_eexit.bin.asr_train --config conf/train_asr_eexit_conformer.yaml ...

Every option of ``espnet2.bin.asr_train`` works (``--ngpu``, ``--multiprocessing_distributed``,
``--collect_stats``, ``--resume`` ...); ``encoder: eexit_conformer`` and ``model: eexit`` become
valid choices.

Before resuming, ``<output_dir>/checkpoint.pth`` is checked: ESPnet writes it in place, so a run
killed while saving leaves a truncated file, and the next ``--resume`` died in ``torch.load``
with a traceback naming no file. Now: one line naming the file and what to do.

A complete ``checkpoint.pth`` says epoch N is done, but ESPnet writes ``<N>epoch.pth`` (and the
``latest.pth`` / ``<phase>.<key>.best.pth`` links) only after it: a kill in between left that file
missing or truncated, the resumed run never wrote it again, and its final n-best averaging died in
``torch.load`` (a traceback, after all the epochs). It is restored from ``checkpoint.pth``'s model,
the very state dict ESPnet saves into both, and the links are redone, before ESPnet resumes.
"""
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from espnet_eexit.bin.cli import run_main
from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.model_files import is_complete_checkpoint
from espnet_eexit.tasks.asr import EarlyExitASRTask


def get_parser():
    return EarlyExitASRTask.get_parser()


def check_resumable(output_dir: Path) -> None:
    """Raise :class:`EarlyExitConfigError` if ``output_dir/checkpoint.pth`` exists but is not a
    complete ``torch.save`` archive (its zip directory, written last, is missing)."""
    checkpoint = Path(output_dir) / "checkpoint.pth"
    if not checkpoint.exists() or is_complete_checkpoint(checkpoint):
        return
    epochs = sorted((int(p.name[: -len("epoch.pth")]), p) for p in Path(output_dir).glob("*epoch.pth")
                    if p.name[: -len("epoch.pth")].isdigit() and is_complete_checkpoint(p))
    restart = f"; or start from the last complete epoch's weights with --init_param {epochs[-1][1]}" if epochs else ""
    raise EarlyExitConfigError(
        f"{checkpoint} cannot be resumed from: it is incomplete (no zip directory, which torch.save "
        f"writes last: a run killed while saving it?). Move it away to train from the start{restart}"
    )


def restore_epoch_files(output_dir: Path, best_model_criterion: Sequence[Sequence[str]]) -> List[Path]:
    """After :func:`check_resumable`: write ``<N>epoch.pth`` of the epoch N that the complete
    ``checkpoint.pth`` records if it is missing or truncated, and point ``latest.pth`` and the
    ``<phase>.<key>.best.pth`` links where ESPnet's trainer would have. Returns what was changed."""
    import torch
    from espnet2.train.reporter import Reporter

    output_dir = Path(output_dir)
    checkpoint = output_dir / "checkpoint.pth"
    if not checkpoint.exists():
        return []
    states = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    reporter = Reporter()
    reporter.load_state_dict(states["reporter"])
    epoch = reporter.get_epoch()
    if epoch < 1:
        return []
    changed = []
    epoch_file = output_dir / f"{epoch}epoch.pth"
    if not is_complete_checkpoint(epoch_file):
        what = "incomplete" if epoch_file.exists() else "missing"
        partial = epoch_file.with_name(epoch_file.name + ".partial")
        torch.save(states["model"], partial)
        os.replace(partial, epoch_file)  # a kill now leaves the old file or the whole new one
        print(f"asr_train: {epoch_file} was {what} (a run killed while saving it?): restored from {checkpoint}",
              file=sys.stderr)
        changed.append(epoch_file)
    links = {output_dir / "latest.pth": epoch_file.name}
    for phase, key, mode in best_model_criterion:
        if reporter.has(phase, key):
            best = f"{reporter.get_best_epoch(phase, key, mode)}epoch.pth"
            if (output_dir / best).exists():
                links[output_dir / f"{phase}.{key}.best.pth"] = best
    for link, target in links.items():
        if not link.is_symlink() or os.readlink(link) != target:
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target)
            changed.append(link)
    return changed


def _train(cmd: Optional[List[str]]) -> None:
    args = get_parser().parse_args(cmd)
    if args.resume and not args.collect_stats and args.output_dir is not None:
        check_resumable(Path(args.output_dir))
        if os.environ.get("RANK", "0") == "0":  # torchrun: one rank writes (ESPnet saves on rank 0)
            restore_epoch_files(Path(args.output_dir), args.best_model_criterion)
    EarlyExitASRTask.main(args=args)
    leave_process_group()


def leave_process_group() -> None:
    """End the torch.distributed group ESPnet joined (torchrun's env:// mode), which ESPnet leaves
    open: gloo's threads are then joined before the interpreter exits. Left to the exit, one rank
    of a 2-process CPU run here died of SIGABRT ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # no rank tears down while another still talks to it
        dist.destroy_process_group()


def main(cmd: Optional[List[str]] = None) -> None:
    run_main(_train, cmd)


if __name__ == "__main__":
    main()
