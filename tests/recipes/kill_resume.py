"""Kill-and-resume matrix of stage 11 (training) on the tiny mini_espeak recipe.

Usage (from the repository root; espeak-ng and sox installed, as for the recipe tests):

    tools/venv/bin/python tests/recipes/kill_resume.py                    # 6 kills, 4 epochs
    tools/venv/bin/python tests/recipes/kill_resume.py --kills 10 --max_epoch 4 --seed 2027
    tools/venv/bin/python tests/recipes/kill_resume.py --workdir /tmp/kr  # keep the runs there

It prepares a tiny corpus (stages 1-10), trains an uninterrupted reference (stage 11, in the
background, one thread) and meanwhile the same experiment again, killing ``./run.sh --stage 11``
with SIGKILL (its whole process group, the trainer included, as a user's ``kill -9`` or the OOM
killer would) at moments drawn from ``--seed``: during start-up, mid-epoch (after a random step:
ESPnet logs each one), while ``checkpoint.pth`` or ``<N>epoch.pth`` is being written (inotify
reports the first write), while the n-best average is written. After each kill it reruns
``./run.sh --stage 11``; a truncated ``checkpoint.pth`` is refused in one line, and the documented
recovery (move it away: training starts over) is then taken. Prints one row per kill (case and
where it landed, expected, observed), then compares every per-epoch value of ESPnet's reporter
(but timings) and the tensors of every kept ``<N>epoch.pth`` and of ``valid.loss.ave.pth`` with the
reference. Exits 1 if a row or a comparison fails. ``tests/recipes/test_kill_resume.py`` runs a
3-kill version with ``make test``.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import random
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from espnet_eexit.model_files import is_complete_checkpoint  # noqa: E402
from recipe_helpers import copy_recipe, run  # noqa: E402

# Short epochs: 24 utterances in batches of 8 are 3 steps, each logged (the mid-epoch kills wait for
# a step's line). Plots and tensorboard off: they only cost time here (nothing they write is compared).
NUM_TRAIN = 24
BATCH_SIZE = 8
TRAIN_ARGS = f"--batch_size {BATCH_SIZE} --log_interval 1 --num_att_plot 0 --use_matplotlib false --use_tensorboard false"
# One thread per training: the reference trains beside the killed series, and two runs of two
# OpenMP threads each on 2 cores spin against each other (see utils/run_local.sh). Both use the same
# thread count, so their float reductions are ordered alike.
THREADS = "1"
KINDS = ("startup", "mid_epoch", "checkpoint_save", "epoch_save", "averaging")
# Reporter keys that measure time, not training: they differ between any two runs.
TIME_KEY = re.compile(r"(^|_)time$")


@dataclass
class Kill:
    """One planned SIGKILL: its kind (one of KINDS), the epoch it aims at, for ``mid_epoch`` the
    step after which it comes (the last step: during validation), for ``startup`` the seconds
    after the run started."""

    kind: str
    epoch: int = 0
    step: int = 0
    seconds: float = 0.0

    def describe(self, max_epoch: int) -> str:
        if self.kind == "startup":
            return f"kill -9 {self.seconds:.1f} s into a run's start-up"
        if self.kind == "mid_epoch":
            return f"kill -9 in epoch {self.epoch} after step {self.step}"
        if self.kind == "checkpoint_save":
            return f"kill -9 while checkpoint.pth of epoch {self.epoch} is written"
        if self.kind == "epoch_save":
            return f"kill -9 while {self.epoch}epoch.pth is written"
        return f"kill -9 while valid.loss.ave_*best.pth is written (after epoch {max_epoch})"


@dataclass
class Row:
    """One line of the matrix."""

    case: str
    expected: str
    observed: str

    @property
    def ok(self) -> bool:
        return self.expected == self.observed


@dataclass
class Outcome:
    """One ``./run.sh --stage 11``: its return code, whether we killed it, its train.log."""

    rc: int
    killed: bool
    log: str

    @property
    def start_epoch(self) -> Optional[int]:
        m = re.search(r"\(trainer:\d+\) INFO: (\d+)/\d+epoch started", self.log)
        return int(m.group(1)) if m else None


@dataclass
class Plan:
    """The kills of one series, in the order a training passes them."""

    kills: List[Kill] = field(default_factory=list)


class DirWatch:
    """Names of the files written (inotify IN_MODIFY) in one directory: lets us kill while a given
    file is being written, a moment that polling the file system would almost always miss."""

    IN_MODIFY = 0x2

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, str(path).encode(), self.IN_MODIFY) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {path}")

    def written(self, timeout: float) -> List[str]:
        """Names written since the last call (waits up to ``timeout`` s for the first)."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        data, names, off = os.read(self.fd, 1 << 16), [], 0
        while off < len(data):
            size = struct.unpack_from("iIII", data, off)[3]
            names.append(data[off + 16: off + 16 + size].rstrip(b"\0").decode())
            off += 16 + size
        return names

    def close(self) -> None:
        os.close(self.fd)


def checkpoint_epoch(exp: Path) -> Optional[int]:
    """The epoch ``exp/checkpoint.pth`` records as done; None if there is none; -1 if truncated."""
    ckpt = exp / "checkpoint.pth"
    if not ckpt.exists():
        return None
    if not is_complete_checkpoint(ckpt):
        return -1
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)["reporter"]["epoch"])


def start_stage11(recipe: Path, tag: str, max_epoch: int) -> subprocess.Popen:
    """Start ``./run.sh --stage 11 --stop_stage 11`` for ``exp/asr_<tag>`` in a process group of
    its own (a kill of the group reaches asr.sh, ESPnet's launcher and the trainer)."""
    exp = recipe / "exp" / f"asr_{tag}"
    exp.mkdir(parents=True, exist_ok=True)
    if (exp / "train.log").exists():  # keep each run's log; the watcher must read only this run's
        (exp / "train.log").rename(exp / f"train.log.{len(list(exp.glob('train.log.*'))) + 1}")
    cmd = ["./run.sh", "--stage", "11", "--stop_stage", "11", "--asr_tag", tag,
           "--asr_args", f"--max_epoch {max_epoch} {TRAIN_ARGS}"]
    return subprocess.Popen(cmd, cwd=recipe, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=dict(os.environ, OMP_NUM_THREADS=THREADS))


def finish(proc: subprocess.Popen, exp: Path, killed: bool = False, timeout: float = 1200) -> Outcome:
    """Wait for a run (killing it after ``timeout`` s: a hung run fails instead of blocking)."""
    try:
        proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = exp / "train.log"
    return Outcome(proc.returncode, killed, log.read_text(errors="replace") if log.exists() else "")


def stage11(recipe: Path, tag: str, max_epoch: int, kill: Optional[Kill] = None) -> Outcome:
    """Run stage 11 for ``exp/asr_<tag>``; with ``kill``, SIGKILL its whole process group at that
    moment (if the run gets there)."""
    exp = recipe / "exp" / f"asr_{tag}"
    exp.mkdir(parents=True, exist_ok=True)
    watch = DirWatch(exp)
    t0 = time.monotonic()
    proc = start_stage11(recipe, tag, max_epoch)
    killed = False
    try:
        while kill is not None and not killed and proc.poll() is None:
            names = watch.written(0.02)
            log = (exp / "train.log").read_text(errors="replace") if (exp / "train.log").exists() else ""
            started = f"INFO: {kill.epoch}/{max_epoch}epoch started" in log
            if kill.kind == "startup":
                fire = time.monotonic() - t0 >= kill.seconds
            elif kill.kind == "mid_epoch":
                fire = f"INFO: {kill.epoch}epoch:train:{kill.step}-{kill.step}batch:" in log
            elif kill.kind == "checkpoint_save":
                fire = started and "checkpoint.pth" in names
            elif kill.kind == "epoch_save":
                fire = started and f"{kill.epoch}epoch.pth" in names
            else:  # averaging
                fire = any(re.fullmatch(r"valid\.loss\.ave_\d+best\.pth", n) for n in names)
            if fire:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
    finally:
        watch.close()
    return finish(proc, exp, killed)


def landed(exp: Path, out: Outcome) -> str:
    """Where a kill landed, from the log and the files it left."""
    started = [int(e) for e in re.findall(r"(\d+)/\d+epoch started", out.log)]
    done = [int(e) for e in re.findall(r"(\d+)epoch results", out.log)]
    steps = re.findall(r"(\d+)epoch:train:\d+-(\d+)batch:", out.log)
    if not started and "already reached at max_epoch" in out.log:
        phase = "after the last epoch (nothing left to train)"
    elif not started:
        phase = "before an epoch started"
    elif not done or done[-1] < started[-1]:
        step = [int(k) for e, k in steps if int(e) == started[-1]]
        phase = f"in epoch {started[-1]} after step {step[-1]}" if step else f"in epoch {started[-1]} before step 1"
    else:
        phase = f"after epoch {done[-1]}'s results"
    ckpt = checkpoint_epoch(exp)
    files = "no checkpoint.pth" if ckpt is None else "checkpoint.pth truncated" if ckpt == -1 else \
        f"checkpoint.pth of epoch {ckpt}"
    if ckpt and ckpt > 0 and not is_complete_checkpoint(exp / f"{ckpt}epoch.pth"):
        files += f", {ckpt}epoch.pth {'truncated' if (exp / f'{ckpt}epoch.pth').exists() else 'missing'}"
    return f"{phase}; {files}"


def expected_after(exp: Path) -> str:
    """What the rerun must do, given what the kill left on disk."""
    ckpt = checkpoint_epoch(exp)
    if ckpt is None:
        return "rerun starts at epoch 1"
    if ckpt == -1:
        return "rerun refused in one line naming checkpoint.pth; moved away: starts at epoch 1"
    note = "" if is_complete_checkpoint(exp / f"{ckpt}epoch.pth") else f", restores {ckpt}epoch.pth"
    return f"rerun resumes at epoch {ckpt + 1}{note}"


def observed_after(out: Outcome, refusal: Optional[Outcome], max_epoch: int) -> str:
    """What the rerun did, from its train.log (``refusal``: a rerun that stopped on a truncated
    checkpoint.pth; ``out`` is then the run after moving it away)."""
    said = ""
    if refusal is not None:
        one_line = re.search(r"error: \S*checkpoint\.pth cannot be resumed from: it is incomplete", refusal.log)
        said = "refused in one line naming checkpoint.pth; moved away: " if one_line and \
            "Traceback" not in refusal.log else f"failed (rc {refusal.rc}, no one-line error); moved away: "
    if out.rc != 0 and not out.killed:
        line = next((l for l in out.log.splitlines()[::-1] if "rror" in l), "?")
        return f"rerun {said}failed (rc {out.rc}): {line.strip()[:150]}"
    resumed = "The training was resumed using" in out.log
    restored = re.search(r"(\d+)epoch\.pth was \w+ .*restored from", out.log)
    note = f", restores {restored.group(1)}epoch.pth" if restored else ""
    start = out.start_epoch
    if start is None and resumed and f"already reached at max_epoch: {max_epoch + 1}" in out.log:
        start = max_epoch + 1
    if start is None:
        return f"rerun {said}killed again before it started an epoch"
    return f"rerun {said}{'resumes' if resumed else 'starts'} at epoch {start}{note}"


def make_plan(rng: random.Random, kills: int, max_epoch: int, steps: int, kinds: Sequence[str] = KINDS) -> Plan:
    """``kills`` random kills (each kind at least once when there are enough) in the order a
    training passes them: by epoch (a start-up kill hits the run that resumes at or before that
    epoch), in an epoch its steps, then its saves; the averaging last."""
    order = {"startup": 0, "mid_epoch": 1, "checkpoint_save": 2, "epoch_save": 3, "averaging": 4}
    drawn = rng.sample(list(kinds), min(kills, len(kinds)))
    again = [k for k in kinds if k != "averaging"] or list(kinds)  # one kill of the last write is enough
    drawn += [rng.choice(again) for _ in range(kills - len(drawn))]
    plan = []
    for kind in drawn:
        plan.append(Kill(kind, rng.randint(1, max_epoch) if kind != "averaging" else max_epoch,
                         rng.randint(1, steps), round(rng.uniform(0.5, 8.0), 1)))
    plan.sort(key=lambda k: (k.epoch, order[k.kind], k.step))
    return Plan(plan)


def killed_series(recipe: Path, tag: str, max_epoch: int, plan: Plan, say=print) -> List[Row]:
    """Train ``exp/asr_<tag>`` to the end through the kills of ``plan``: after each kill the next
    ``./run.sh --stage 11`` (itself maybe killed by the next kill) shows what the rerun does. One
    Row per kill."""
    exp = recipe / "exp" / f"asr_{tag}"
    rows: List[Row] = []
    pending = list(plan.kills)
    waiting: List[Tuple[str, str]] = []  # (case, expected) of kills the next run will show

    def add(row: Row) -> None:
        rows.append(row)
        say(f"  {row.case} | {row.expected} | {row.observed}")

    while True:
        ckpt = checkpoint_epoch(exp)
        resume_at = 1 if ckpt is None or ckpt < 0 else ckpt + 1
        while pending and pending[0].kind in ("mid_epoch", "checkpoint_save", "epoch_save") \
                and pending[0].epoch < resume_at:  # an earlier kill landed past it
            add(Row(pending.pop(0).describe(max_epoch), "-", "not reached: training resumes past it"))
        kill = pending[0] if pending else None
        out = stage11(recipe, tag, max_epoch, kill)
        refusal = None
        if not out.killed and out.rc != 0 and checkpoint_epoch(exp) == -1:
            # the documented recovery: move the truncated checkpoint away, train from the start
            (exp / "checkpoint.pth").rename(exp / "checkpoint.pth.incomplete")
            refusal, out = out, stage11(recipe, tag, max_epoch, kill)
        if waiting and (not out.killed or out.start_epoch is not None or "already reached" in out.log):
            for case, expected in waiting:
                add(Row(case, expected, observed_after(out, refusal, max_epoch)))
            waiting = []
        if out.killed:
            pending.pop(0)
            waiting.append((f"{kill.describe(max_epoch)} [landed {landed(exp, out)}]", expected_after(exp)))
            continue
        if kill is not None:
            add(Row(pending.pop(0).describe(max_epoch), "-", "not reached: training ended first"))
        if out.rc != 0:
            raise AssertionError(f"stage 11 failed (rc {out.rc}):\n{out.log[-3000:]}")
        if not pending:
            return rows


def reporter_curve(exp: Path) -> Dict[Tuple[int, str, str], float]:
    """(epoch, phase, key) -> value of ESPnet's reporter in checkpoint.pth, without timings."""
    import torch

    stats = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]["stats"]
    return {(e, ph, k): float(v) for e, phases in stats.items() for ph, kv in phases.items()
            if ph in ("train", "valid") for k, v in kv.items() if not TIME_KEY.search(k)}


def compare(ref: Path, exp: Path) -> List[Row]:
    """Rows comparing ``exp`` with the reference ``ref``: the reporter's curves, then the tensors
    of every kept <N>epoch.pth and of valid.loss.ave.pth."""
    import torch

    rows = []
    a, b = reporter_curve(ref), reporter_curve(exp)
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    epochs = sorted({e for e, _, _ in a})
    valid = [a[(e, "valid", "loss")] for e in epochs]
    rows.append(Row(f"per-epoch train/valid values of the reporter, timings aside (valid loss "
                    f"{', '.join(f'{v:.3f}' for v in valid)})",
                    "equal to the uninterrupted run's",
                    "equal to the uninterrupted run's" if not differ else
                    f"{len(differ)} differ, e.g. {differ[0]}: {a.get(differ[0])} vs {b.get(differ[0])}"))
    names = sorted(p.name for p in ref.glob("*epoch.pth")) + ["valid.loss.ave.pth"]
    for name in names:
        if not (exp / name).exists():
            rows.append(Row(name, "every tensor equal (torch.equal)", "missing"))
            continue
        sa = torch.load(ref / name, map_location="cpu", weights_only=False)
        sb = torch.load(exp / name, map_location="cpu", weights_only=False)
        unequal = [k for k in sa if k not in sb or not torch.equal(sa[k], sb[k])]
        worst = max((float((sa[k].double() - sb[k].double()).abs().max()) for k in unequal if k in sb), default=0.0)
        rows.append(Row(f"{name} ({len(sa)} tensors)", "every tensor equal (torch.equal)",
                        "every tensor equal (torch.equal)" if not unequal and set(sa) == set(sb) else
                        f"{len(unequal)} differ (max |diff| {worst:.3g}), e.g. {unequal[:1]}"))
    return rows


def prepare(root: Path, num_train: int = NUM_TRAIN) -> Path:
    """A copy of the mini_espeak recipe in ``root`` with its tiny corpus through stage 10."""
    recipe = copy_recipe(root, "mini_espeak")
    run(recipe, "--local_data_opts", f"--num_train {num_train} --num_dev 4 --num_test 1",
        "--test_sets", "dev", "--stop_stage", "10")
    return recipe


def matrix(recipe: Path, max_epoch: int, plan: Plan, say=print) -> List[Row]:
    """The uninterrupted reference (``exp/asr_reference``, trained meanwhile in the background)
    and the killed series (``exp/asr_killed``): the kill rows, then the comparison rows."""
    reference = start_stage11(recipe, "reference", max_epoch)
    try:
        rows = killed_series(recipe, "killed", max_epoch, plan, say)
    finally:
        out = finish(reference, recipe / "exp" / "asr_reference")
    if out.rc != 0:
        raise AssertionError(f"the reference training failed:\n{out.log[-3000:]}")
    return rows + compare(recipe / "exp" / "asr_reference", recipe / "exp" / "asr_killed")


def table(rows: Sequence[Row]) -> str:
    lines = ["| case | expected | observed | |", "|---|---|---|---|"]
    lines += [f"| {r.case} | {r.expected} | {r.observed} | {'ok' if r.ok else 'FAIL'} |" for r in rows]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    intro, usage = __doc__.split("\n\n")[0], "\n\n".join(__doc__.split("\n\n")[1:3])
    parser = argparse.ArgumentParser(description=intro, epilog=usage,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=6, help="number of kills (default 6)")
    parser.add_argument("--max_epoch", type=int, default=4, help="epochs of each training (default 4)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill moments (default: random, printed)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"kinds of kills to draw from (default {','.join(KINDS)})")
    parser.add_argument("--num_train", type=int, default=NUM_TRAIN, help=f"training utterances (default {NUM_TRAIN})")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to run, kept afterwards (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if args.kills < 1 or args.max_epoch < 1 or not set(kinds) <= set(KINDS):
        parser.error(f"--kills and --max_epoch must be >= 1, --kinds a subset of {','.join(KINDS)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10 ** 6)
    print(f"kill_resume: seed {seed} (rerun with --seed {seed})", flush=True)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="kill_resume."))
    try:
        t0 = time.monotonic()
        recipe = prepare(root, args.num_train)
        print(f"kill_resume: tiny corpus ready in {recipe}", flush=True)
        plan = make_plan(random.Random(seed), args.kills, args.max_epoch, -(-args.num_train // BATCH_SIZE), kinds)
        rows = matrix(recipe, args.max_epoch, plan)
        print(table(rows))
        print(f"kill_resume: seed {seed}, {time.monotonic() - t0:.0f} s", flush=True)
        return 0 if all(r.ok or r.expected == "-" for r in rows) else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
