"""How long an ESPnet training took, over all the runs of a resumed training: the one count that
stage 13's RESULTS.md notes (``scripts/training_time.sh``) and ``compare_models`` give.

    python -m espnet_eexit.bin.training_time exp/asr_train   # -> 18 epochs in 152 min (3 runs: resumed 2×)

What is read: ESPnet's launcher (``espnet2.bin.launch``, asr.sh stage 11) rotates the log each time
it starts: ``train.log`` becomes ``train.1.log``, ``train.1.log`` becomes ``train.2.log`` ...
(newest first), so a training resumed by running stage 11 again (``--resume true``) leaves one log
per run. In each, ESPnet's trainer writes one ``<N>epoch results: [train] ... time=..., [valid]
... time=...`` line per finished epoch; ``time=`` is the section's duration as its Reporter
writes it (``humanfriendly.format_timespan``: "1 hour, 2 minutes and 5.5 seconds").

How it counts (``training_time``):

- Logs are read from the newest back to the run that started the training, the first whose
  first finished epoch is 1: older logs are those of an earlier training in the same directory.
- An epoch's time is the sum of the ``time=`` of its sections (train, valid, att_plot).
- Each epoch counts once, with its LAST run's time. A kill after ESPnet logged an epoch's results
  but before it saved ``checkpoint.pth`` makes the resumed run train that epoch again, and the
  model goes on from that second pass: the first was wasted work, not training of this model (the
  comparison of models at one training budget wants the latter). An epoch a kill interrupted has
  no results line and never counts.
- Not counted: start-up (model building, data loading set-up), checkpoint saving, the time
  between runs. So a resumed training reads as the same budget as one that ran straight through.
"""
import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

_EPOCH_RESULTS = re.compile(r"\(trainer:\d+\) INFO: (\d+)epoch results: (.*)$")
# humanfriendly.format_timespan (ESPnet's Reporter): "time=1 hour, 2 minutes and 5.3 seconds",
# "time=1 year, 5 weeks and 1 day", "time=0.5 seconds"
_UNIT = r"(?:year|week|day|hour|minute|second)s?"
_TIMESPAN = re.compile(rf"\btime=((?:[\d.]+ {_UNIT}(?:, | and )?)+)")
_TIMESPAN_PART = re.compile(r"([\d.]+) (year|week|day|hour|minute|second)s?\b")
_SECONDS = {"year": 52 * 7 * 86400.0, "week": 7 * 86400.0, "day": 86400.0, "hour": 3600.0,
            "minute": 60.0, "second": 1.0}


@dataclass
class TrainingTime:
    """``epochs``: the last finished epoch; ``seconds``: see the module's docstring (None if an
    epoch's results line has no ``time=``); ``runs``: the logs with a finished epoch, back to the
    training's start (runs - 1 = times resumed)."""

    epochs: int
    seconds: Optional[float]
    runs: int

    def summary(self) -> str:
        if self.runs == 0:
            return "no finished epoch"
        what = f"{self.epochs} epoch{'' if self.epochs == 1 else 's'}"
        what += " (no time= in train.log)" if self.seconds is None else f" in {int(self.seconds // 60)} min"
        return what + (f" ({self.runs} runs: resumed {self.runs - 1}×)" if self.runs > 1 else "")


def timespan_seconds(text: str) -> float:
    """Seconds of a ``humanfriendly.format_timespan`` text ("1 hour, 2 minutes and 5.5 seconds")."""
    return sum(float(n) * _SECONDS[unit] for n, unit in _TIMESPAN_PART.findall(text))


def epoch_seconds(log: Path) -> List[Tuple[int, Optional[float]]]:
    """``(epoch, seconds)`` of each ``<N>epoch results`` line of one ESPnet log, in order; seconds
    is the sum of its sections' ``time=`` (None without any)."""
    epochs = []
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _EPOCH_RESULTS.search(line)
            if m:
                spans = _TIMESPAN.findall(m.group(2))
                epochs.append((int(m.group(1)), sum(map(timespan_seconds, spans)) if spans else None))
    return epochs


def rotated_logs(exp_dir: Path, name: str = "train") -> List[Path]:
    """``<name>.log``, ``<name>.1.log``, ``<name>.2.log`` ... of ``exp_dir`` as ESPnet's launcher
    rotates them (newest first), up to the first missing one."""
    logs, i = [], 0
    while True:
        log = Path(exp_dir) / (f"{name}.log" if i == 0 else f"{name}.{i}.log")
        if not log.is_file():
            return logs
        logs.append(log)
        i += 1


def training_time(exp_dir: Path) -> Optional[TrainingTime]:
    """The training time of the ESPnet experiment ``exp_dir`` (its ``train.log`` and the rotated
    logs of earlier runs); None without ``train.log``."""
    logs = rotated_logs(exp_dir)
    if not logs:
        return None
    per_epoch: Dict[int, Optional[float]] = {}
    runs = 0
    for log in logs:  # newest first: an epoch seen already was trained again later
        epochs = epoch_seconds(log)
        if not epochs:
            continue
        runs += 1
        run: Dict[int, Optional[float]] = dict(epochs)  # within one log, too, the last line counts
        for epoch, seconds in run.items():
            per_epoch.setdefault(epoch, seconds)
        if epochs[0][0] == 1:  # this run started the training
            break
    if not per_epoch:
        return TrainingTime(0, None, 0)
    times = list(per_epoch.values())
    total = None if any(t is None for t in times) else sum(times)
    return TrainingTime(max(per_epoch), total, runs)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exp_dir", type=Path, help="the experiment directory (train.log, train.1.log ...)")
    args = parser.parse_args(argv)
    result = training_time(args.exp_dir)
    if result is None:
        sys.exit(f"training_time: {args.exp_dir / 'train.log'} not found")
    print(result.summary())


if __name__ == "__main__":
    main()
