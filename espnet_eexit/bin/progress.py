"""Short progress lines while asr.sh's training (stage 11, stage 7) or decoding (stage 12) runs.

    python -m espnet_eexit.bin.progress --pid PID train [--show REGEX] exp/asr_x/train.log
    python -m espnet_eexit.bin.progress --pid PID decode --total 500 --label "test, all exits" \
        "exp/asr_x/decode/test/logdir/asr_inference.*.log"

It reads the logs the jobs write and prints, at most every ``--interval`` seconds (30), one line:

    train:   epoch 2/6: batch 300/1200 | loss exit2 45.12 exit4 30.21 exit6 20.03 | ETA 0:14:10
    decode:  test, all exits: 150/500 utterances (30%) | ETA 0:02:20

and for training, as soon as an epoch ends, its validation figures (``--show``: a regular
expression, e.g. ``(cer_ctc_exit|acc_exit)\\d*=[\\d.]+``). Training lines come from ESPnet's
trainer: ``<N>/<M>epoch started``, ``<N>epoch:train:<a>-<b>batch: ... loss_exit<k>=...`` every
``--log_interval`` batches, ``[train] mini-batch sizes summary: N-batch=<n>`` (batches per epoch,
per rank; ``num_iters_per_epoch`` of the experiment's config.yaml replaces it) and ``<N>epoch
results``; decoding lines from ``espnet_eexit.bin.asr_inference`` (``decoded <n>/<m> utterances``).
ETA: at the pace of the current epoch's batches so far, and finished epochs' durations.

It ends when the process ``--pid`` has ended (a zombie counts as ended) and exits 0 whatever the
logs hold: asr.sh waits for the job itself afterwards, so the job's exit status is never the
follower's. ``--skip_inode``: the inode of a log the launcher has not rotated yet (ESPnet's
launcher renames train.log to train.1.log, then the new run writes a new train.log): not read.
"""
import argparse
import datetime
import glob
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_STARTED = re.compile(r"\b(\d+)/(\d+)epoch started")
_BATCH = re.compile(r"\b(\d+)epoch:train:(\d+)-(\d+)batch: (.*)$")
_SUMMARY = re.compile(r"\[train\] mini-batch sizes summary: N-batch=(\d+)")
_RESULTS = re.compile(r"\b(\d+)epoch results: (.*)$")
# not \b: ESPnet's SubReporter leaves out the ", " before the key at index == batch count
# ("loss_ctc_exit6=86.548loss_exit2=81.466" at batch 5 of a model with 5+ keys)
_LOSS_EXIT = re.compile(r"(?<![A-Za-z_])loss_exit(\d+)=([-+\d.e]+)")
_LOSS = re.compile(r"(?<![A-Za-z_])loss=([-+\d.e]+)")
_DECODED = re.compile(r"decoded (\d+)(?:/(\d+))? utterances")


def _stamp(line: str) -> Optional[datetime.datetime]:
    m = _STAMP.search(line)
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S") if m else None


def format_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


class TrainProgress:
    """The state of one training run, fed its log lines in order."""

    def __init__(self, show: Optional[str] = None, batches_per_epoch: Optional[int] = None):
        self.show = re.compile(show) if show else None
        self.fixed_batches = batches_per_epoch  # num_iters_per_epoch
        self.summary_batches: Optional[int] = None
        self.epoch = 0
        self.max_epoch: Optional[int] = None
        self.epoch_start: Optional[datetime.datetime] = None
        self.batch = 0
        self.batch_time: Optional[datetime.datetime] = None
        self.losses: Dict[int, float] = {}
        self.loss: Optional[float] = None
        self.epoch_seconds: List[float] = []
        self.finished: List[str] = []  # epoch lines not printed yet
        self.changed = False  # batch progress since the last status line

    @property
    def batches_per_epoch(self) -> Optional[int]:
        return self.fixed_batches or self.summary_batches

    def feed(self, line: str) -> None:
        m = _SUMMARY.search(line)
        if m:
            self.summary_batches = int(m.group(1))
            return
        m = _STARTED.search(line)
        if m:
            self.epoch, self.max_epoch = int(m.group(1)), int(m.group(2))
            self.epoch_start, self.batch, self.losses, self.loss = _stamp(line), 0, {}, None
            return
        m = _BATCH.search(line)
        if m:
            self.epoch, self.batch = int(m.group(1)), int(m.group(3))
            self.batch_time = _stamp(line)
            self.losses = {int(k): float(v) for k, v in _LOSS_EXIT.findall(m.group(4))}
            loss = _LOSS.search(m.group(4))
            self.loss = float(loss.group(1)) if loss else None
            self.changed = True
            return
        m = _RESULTS.search(line)
        if m:
            epoch, results = int(m.group(1)), m.group(2)
            end = _stamp(line)
            if self.epoch_start is not None and end is not None and epoch == self.epoch:
                self.epoch_seconds.append((end - self.epoch_start).total_seconds())
            valid = results.split("[valid]", 1)[1] if "[valid]" in results else ""
            shown = " ".join(x.group(0) for x in self.show.finditer(valid)) if self.show else ""
            self.finished.append(f"epoch {epoch}: valid {shown}".rstrip())
            self.changed = False

    def eta_seconds(self) -> Optional[float]:
        total = self.batches_per_epoch
        if not (total and self.batch and self.epoch_start and self.batch_time and self.max_epoch):
            return None
        per_batch = (self.batch_time - self.epoch_start).total_seconds() / self.batch
        per_epoch = (sum(self.epoch_seconds) / len(self.epoch_seconds)) if self.epoch_seconds else total * per_batch
        return max(0, total - self.batch) * per_batch + (self.max_epoch - self.epoch) * per_epoch

    def status_line(self) -> Optional[str]:
        """The compact line, or None when no batch was logged since the last one."""
        if not self.changed:
            return None
        self.changed = False
        epoch = f"epoch {self.epoch}" + (f"/{self.max_epoch}" if self.max_epoch else "")
        total = self.batches_per_epoch
        parts = [f"{epoch}: batch {self.batch}" + (f"/{total}" if total else "")]
        if self.losses:
            parts.append("loss " + " ".join(f"exit{k} {v:.2f}" for k, v in sorted(self.losses.items())))
        elif self.loss is not None:
            parts.append(f"loss {self.loss:.2f}")
        eta = self.eta_seconds()
        if eta is not None:
            parts.append(f"ETA {format_eta(eta)}")
        return " | ".join(parts)


class DecodeProgress:
    """Utterances decoded by the jobs of one decoding run (their logs' last ``decoded n/m``)."""

    def __init__(self, label: str, total: Optional[int] = None):
        self.label, self.total = label, total
        self.started = time.monotonic()
        self.last = 0  # no line before the first utterance is decoded

    def status_line(self, log_texts: List[str]) -> Optional[str]:
        done, totals = 0, 0
        for text in log_texts:
            found = _DECODED.findall(text)
            if found:
                n, m = found[-1]
                done += int(n)
                totals += int(m or 0)
        if done == self.last:
            return None
        self.last = done
        total = self.total or totals or None
        line = f"{self.label}: {done}" + (f"/{total} utterances ({100 * done // total}%)" if total else " utterances")
        elapsed = time.monotonic() - self.started
        if total and done:
            line += f" | ETA {format_eta(elapsed / done * (total - done))}"
        return line


def process_ended(pid: int) -> bool:
    """Whether ``pid`` has ended; a zombie (ended, not yet waited for by its parent) has."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class LogReader:
    """New complete lines of a file that may not exist yet, be replaced (rotation) or truncated."""

    def __init__(self, path: Path, skip_inode: Optional[int] = None):
        self.path, self.skip_inode = Path(path), skip_inode
        self.inode: Optional[int] = None
        self.offset, self.partial = 0, ""

    def lines(self) -> List[str]:
        try:
            stat = self.path.stat()
        except OSError:
            return []
        if stat.st_ino == self.skip_inode:
            return []  # the previous run's log, not rotated yet
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            self.inode, self.offset, self.partial = stat.st_ino, 0, ""
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self.offset)
            text = self.partial + f.read()
            self.offset = f.tell()
        *complete, self.partial = text.split("\n")
        return complete


def _say(text: str) -> None:
    print(f"{datetime.datetime.now():%Y-%m-%dT%H:%M:%S} (progress)   {text}", flush=True)


def _batches_from_config(config: Path) -> Optional[int]:
    """``num_iters_per_epoch`` of the experiment's config.yaml (ESPnet writes it at the start).

    Read from its one top-level line, not by parsing the YAML: a Whisper model's config.yaml holds
    a 51,864-entry token list, which takes seconds of CPU to parse, and this runs beside training."""
    try:
        with open(config, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("num_iters_per_epoch:"):
                    value = line.split(":", 1)[1].strip()
                    return int(value) if value.isdigit() else None
    except OSError:
        pass
    return None


def _mtime(path: Path) -> Optional[float]:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def follow_training(log: Path, pid: int, interval: float, show: Optional[str], skip_inode: Optional[int],
                    poll: float = 2.0) -> None:
    reader, state = LogReader(log, skip_inode), TrainProgress(show)
    last_status = time.monotonic()
    config_mtime: Optional[float] = None
    while True:
        ended = process_ended(pid)
        for line in reader.lines():
            state.feed(line)
        config = log.parent / "config.yaml"
        if state.fixed_batches is None and _mtime(config) != config_mtime:
            config_mtime = _mtime(config)  # read again only when ESPnet writes it again
            state.fixed_batches = _batches_from_config(config)
        for line in state.finished:
            _say(line)
        state.finished.clear()
        if time.monotonic() - last_status >= interval:
            status = state.status_line()
            if status:
                _say(status)
                last_status = time.monotonic()
        if ended:
            return
        time.sleep(poll)


def follow_decoding(pattern: str, pid: int, interval: float, label: str, total: Optional[int],
                    poll: float = 2.0) -> None:
    state = DecodeProgress(label, total)
    last_status = time.monotonic()
    while True:
        ended = process_ended(pid)
        if time.monotonic() - last_status >= interval or ended:
            texts = []
            for path in sorted(glob.glob(pattern)):
                try:
                    texts.append(Path(path).read_text(encoding="utf-8", errors="replace"))
                except OSError:
                    pass
            status = state.status_line(texts)
            if status and not ended:  # the stage itself reports the finished run
                _say(status)
                last_status = time.monotonic()
        if ended:
            return
        time.sleep(poll)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pid", type=int, required=True, help="follow until this process has ended")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between progress lines (30)")
    sub = parser.add_subparsers(dest="kind", required=True)
    train = sub.add_parser("train", help="ESPnet's train.log")
    train.add_argument("log", type=Path)
    train.add_argument("--show", default=None, help="regular expression of the valid figures shown per epoch")
    train.add_argument("--skip_inode", type=int, default=None,
                       help="inode of the log before the launcher rotated it (not read)")
    decode = sub.add_parser("decode", help="asr_inference job logs")
    decode.add_argument("logs", help="glob pattern of the job logs")
    decode.add_argument("--label", default="decoding")
    decode.add_argument("--total", type=int, default=None, help="utterances in all")
    args = parser.parse_args(argv)
    try:
        if args.kind == "train":
            follow_training(args.log, args.pid, args.interval, args.show, args.skip_inode)
        else:
            follow_decoding(args.logs, args.pid, args.interval, args.label, args.total)
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - never the reason a stage fails
        print(f"progress: stopped following ({type(e).__name__}: {e})", file=sys.stderr)


if __name__ == "__main__":
    main()
