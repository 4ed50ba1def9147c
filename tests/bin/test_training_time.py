"""training_time: one count of an ESPnet training's time, over the logs ESPnet's launcher rotates
on a resume; scripts/training_time.sh (stage 13's RESULTS.md) and compare_models give the same."""
import datetime
import subprocess
import sys
from pathlib import Path

import humanfriendly
import pytest
from espnet2.train.reporter import Reporter

from espnet_eexit.bin.compare_models import timing_markdown
from espnet_eexit.bin.training_time import TrainingTime, timespan_seconds, training_time

TEMPLATE = Path(__file__).resolve().parents[2] / "egs2" / "TEMPLATE" / "asr1"


def epoch_results(epoch, train_seconds, valid_seconds=60.0):
    """An ``<N>epoch results`` line as ESPnet's trainer logs it (its own Reporter's message)."""
    reporter = Reporter()
    reporter.set_epoch(epoch)
    for key, seconds in (("train", train_seconds), ("valid", valid_seconds)):
        with reporter.observe(key) as sub:
            sub.register({"loss": 1.5, "loss_exit2": 2.5})
            sub.next()
        reporter.stats[epoch][key]["time"] = datetime.timedelta(seconds=seconds)
    return f"[vm] 2026-12-02 10:00:00,000 (trainer:394) INFO: {reporter.log_message()}"


def launch_run(exp: Path, tmp_path: Path, lines):
    """One run of stage 11 as asr.sh starts it: ESPnet's launcher (which rotates train.log) with
    utils/run_local.sh, the "training" printing ``lines`` as the trainer would log them."""
    out = tmp_path / f"lines{len(list(tmp_path.glob('lines*')))}.txt"
    out.write_text("".join(f"{line}\n" for line in ["[vm] 2026-12-02 10:00:00,000 (asr:1) INFO: start", *lines]))
    cmd = f"{TEMPLATE / 'utils' / 'run_local.sh'} --name {exp / 'train.log'}"
    done = subprocess.run(
        [sys.executable, "-m", "espnet2.bin.launch", "--cmd", cmd, "--log", str(exp / "train.log"),
         "--ngpu", "0", "--num_nodes", "1", "--multiprocessing_distributed", "true", "--",
         # the "training" prints the file (and ignores the --ngpu ... the launcher appends)
         sys.executable, "-c", "import sys; sys.stdout.write(open(sys.argv[1]).read())", str(out)],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def script(exp):
    return subprocess.run([str(TEMPLATE / "scripts" / "training_time.sh"), "--python", sys.executable, str(exp)],
                          capture_output=True, text=True)


def test_timespans_as_espnets_reporter_writes_them():
    for seconds in (0.5, 5.25, 65, 3725.5, 8 * 86400 + 5, 400 * 86400):
        text = humanfriendly.format_timespan(datetime.timedelta(seconds=seconds))
        assert timespan_seconds(text) == pytest.approx(seconds, rel=0.01), text


def test_a_resumed_training_counts_each_epoch_once_over_the_rotated_logs(tmp_path):
    exp = tmp_path / "asr_x"
    exp.mkdir()
    # an earlier training in the same directory (started over since): not counted
    launch_run(exp, tmp_path, [epoch_results(1, 9999)])
    # run 1: epochs 1-2, then epoch 3's results were logged but a kill came before checkpoint.pth
    launch_run(exp, tmp_path, [epoch_results(1, 600), epoch_results(2, 500), epoch_results(3, 7777)])
    # run 2 resumes from epoch 2's checkpoint: epoch 3 again (this pass is the model's), then 4;
    # killed during epoch 5 (no results line)
    launch_run(exp, tmp_path, [epoch_results(3, 400), epoch_results(4, 300),
                               "[vm] 2026-12-02 11:00:00,000 (trainer:336) INFO: 5/6epoch started"])
    # run 3: killed while starting (no epoch); run 4: epoch 5
    launch_run(exp, tmp_path, [])
    launch_run(exp, tmp_path, [epoch_results(5, 200, 30)])
    # the launcher kept every run: train.log is the newest
    assert sorted(p.name for p in exp.glob("train*.log")) == [
        "train.1.log", "train.2.log", "train.3.log", "train.4.log", "train.log"]
    expected = (600 + 500 + 400 + 300) + 4 * 60 + 200 + 30  # epoch 3 once: run 2's
    assert training_time(exp) == TrainingTime(epochs=5, seconds=pytest.approx(expected), runs=3)
    summary = f"5 epochs in {expected // 60} min (3 runs: resumed 2×)"
    done = script(exp)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == training_time(exp).summary() == summary
    # compare_models lists the same seconds
    assert f"| {expected / 60:.1f} |" in timing_markdown([("m", exp / "decode")])


def test_a_run_straight_through_and_an_unfinished_one(tmp_path):
    exp = tmp_path / "asr_y"
    exp.mkdir()
    launch_run(exp, tmp_path, ["[vm] 2026-12-02 10:00:00,000 (trainer:336) INFO: 1/2epoch started"])
    assert training_time(exp).summary() == script(exp).stdout.strip() == "no finished epoch"
    launch_run(exp, tmp_path, [epoch_results(1, 3725.5, 60), epoch_results(2, 120, 0.5)])
    assert training_time(exp) == TrainingTime(2, pytest.approx(3725.5 + 60 + 120 + 0.5), 1)
    assert script(exp).stdout.strip() == "2 epochs in 65 min"
    # an epoch line without time= (not ESPnet's format): no made-up number
    (exp / "train.log").write_text("[vm] 2026-12-02 (trainer:394) INFO: 1epoch results: [train] loss=1.0\n")
    assert script(exp).stdout.strip() == "1 epoch (no time= in train.log)"


def test_no_train_log_is_a_clear_error(tmp_path):
    assert training_time(tmp_path) is None
    done = script(tmp_path)
    assert done.returncode != 0 and f"{tmp_path / 'train.log'} not found" in done.stderr
    assert timing_markdown([("m", tmp_path / "decode")]) == ""
