"""progress: asr.sh's short lines while training and decoding run, read from the jobs' logs (fake
logs in ESPnet's own format here: no training runs)."""
import datetime
import re
import subprocess
import sys
import time
from pathlib import Path

from espnet2.train.reporter import Reporter

from espnet_eexit.bin.progress import DecodeProgress, TrainProgress, format_eta
from espnet_eexit.bin import progress

ASR_SH = Path(__file__).resolve().parents[2] / "egs2" / "TEMPLATE" / "asr1" / "asr.sh"
T0 = datetime.datetime(2026, 12, 2, 10, 0, 0)


def stamped(seconds, text, where="trainer:336"):
    return f"[vm] {T0 + datetime.timedelta(seconds=seconds):%Y-%m-%d %H:%M:%S},123 ({where}) INFO: {text}"


def batch_lines(epoch, batches, log_interval, losses):
    """ESPnet's per-``log_interval`` lines of one epoch (its SubReporter's own messages)."""
    reporter = Reporter()
    reporter.set_epoch(epoch)
    lines = []
    with reporter.observe("train") as sub:
        for i in range(1, batches + 1):
            sub.register({"loss_ctc_exit2": losses[2] + 1, "loss_exit2": losses[2], "loss_exit4": losses[4],
                          "loss": losses[2] + losses[4]})
            sub.next()
            if i % log_interval == 0:
                lines.append(sub.log_message(-log_interval))
    return lines


def results_line(epoch, cer):
    reporter = Reporter()
    reporter.set_epoch(epoch)
    for key, values in (("train", {"loss": 9.0, "cer_ctc_exit2": 0.9}),
                        ("valid", {"loss": 8.0, "cer_ctc_exit2": cer[2], "cer_ctc_exit4": cer[4]})):
        with reporter.observe(key) as sub:
            sub.register(values)
            sub.next()
    return reporter.log_message()


def asr_sh_show_pattern():
    """The valid figures asr.sh's stage 11 shows per epoch (its launch_training argument)."""
    m = re.search(r'launch_training "\$\{asr_exp\}" 11 "([^"]+)"', ASR_SH.read_text())
    return m.group(1)


def fake_train_log():
    """Epoch 1 of 3 done in 600 s, then 200 of 400 batches of epoch 2 in 250 s."""
    lines = [stamped(0, "[train] mini-batch sizes summary: N-batch=400, mean=8.0, min=2, max=9", "abs_task:1887"),
             stamped(0, "[valid] mini-batch sizes summary: N-batch=20, mean=8.0, min=2, max=9", "abs_task:1887"),
             stamped(1, "1/3epoch started")]
    lines += [stamped(1 + 100 * (i + 1), x, "trainer:811")
              for i, x in enumerate(batch_lines(1, 400, 100, {2: 80.0, 4: 70.0}))]
    lines += [stamped(601, results_line(1, {2: 0.61, 4: 0.43}), "trainer:394"),
              stamped(605, "2/3epoch started. Estimated time to finish: 20 minutes")]
    lines += [stamped(605 + 125 * (i + 1), x, "trainer:811")
              for i, x in enumerate(batch_lines(2, 200, 100, {2: 45.123, 4: 30.21}))]
    return lines


def test_a_training_line_has_epoch_batches_loss_per_exit_and_eta():
    state = TrainProgress(show=asr_sh_show_pattern())
    assert state.status_line() is None  # nothing logged yet
    for line in fake_train_log():
        state.feed(line)
    assert state.finished == ["epoch 1: valid cer_ctc_exit2=0.610 cer_ctc_exit4=0.430"]
    # the rest of epoch 2 at its pace (200 batches, 1.25 s each) + epoch 3 as long as epoch 1 (600 s)
    assert state.status_line() == "epoch 2/3: batch 200/400 | loss exit2 45.12 exit4 30.21 | ETA 0:14:10"
    assert state.status_line() is None  # no new batch since: no line
    # num_iters_per_epoch (config.yaml) replaces the sampler's count
    fixed = TrainProgress(batches_per_epoch=250)
    for line in fake_train_log():
        fixed.feed(line)
    assert fixed.status_line().startswith("epoch 2/3: batch 200/250 |")


def test_a_key_espnet_glues_to_the_one_before_is_read():
    """ESPnet's SubReporter omits the ", " before the key whose index equals the batch count (a
    line of a real mini_espeak run, batch 5: exit 2's loss was missing from the progress line)."""
    state = TrainProgress()
    state.feed(stamped(0, "2epoch:train:5-5batch: iter_time=0.003, forward_time=0.285, loss_ctc_exit2=81.466, "
                          "loss_ctc_exit4=93.892, loss_ctc_exit6=86.548loss_exit2=81.466, loss_exit4=93.892, "
                          "loss_exit6=86.548, loss_ctc=86.548, loss=261.906, backward_time=0.227", "trainer:811"))
    assert state.status_line() == "epoch 2: batch 5 | loss exit2 81.47 exit4 93.89 exit6 86.55"


def test_a_model_without_per_exit_losses_shows_its_loss():
    """Stage 7's language model: ``loss=`` only, and what ESPnet logs before the first batch."""
    state = TrainProgress(show="loss=[0-9.]+")
    state.feed(stamped(0, "1/2epoch started"))
    assert state.status_line() is None
    state.feed(stamped(50, "1epoch:train:1-10batch: iter_time=1.0, loss=5.5, optim0_lr0=1.0e-03", "trainer:811"))
    assert state.status_line() == "epoch 1/2: batch 10 | loss 5.50"


def test_decoding_lines_add_up_the_jobs():
    state = DecodeProgress("test, each of exits 2 4", total=100)
    assert state.status_line(["", "x"]) is None  # nothing decoded yet
    job1 = "INFO: decoded 20/50 utterances (10 s)\nINFO: decoded 40/50 utterances (20 s)\n"
    line = state.status_line([job1, "INFO: decoded 35/50 utterances (20 s)\n"])
    assert re.fullmatch(r"test, each of exits 2 4: 75/100 utterances \(75%\) \| ETA 0:00:\d\d", line)
    assert state.status_line([job1, "INFO: decoded 35/50 utterances (20 s)\n"]) is None  # unchanged


def test_format_eta():
    assert format_eta(59.6) == "0:01:00" and format_eta(3 * 3600 + 5) == "3:00:05" and format_eta(-3) == "0:00:00"


def _follow(tmp_path, script):
    """``script`` (bash, set -euo pipefail) with PY set; returns its result."""
    return subprocess.run(["bash", "-c", "set -euo pipefail\nPY=" + sys.executable + "\n" + script],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_the_training_follower_ends_with_the_job_and_keeps_its_exit_status(tmp_path):
    """As asr.sh's launch_training: the previous run's train.log is rotated away by the "launcher"
    (its epoch line is not shown again), the job writes its log and fails with status 3."""
    old = tmp_path / "train.log"
    old.write_text(stamped(0, results_line(7, {2: 0.99, 4: 0.98}), "trainer:394") + "\n")
    (tmp_path / "new.log").write_text("\n".join(fake_train_log()) + "\n")
    start = time.monotonic()
    done = _follow(tmp_path, f"""
old_log=$(stat -c %i train.log 2>/dev/null || echo -1)
( sleep 1; mv train.log train.1.log; cp new.log train.log; sleep 1; exit 3 ) &
pid=$!
"$PY" -m espnet_eexit.bin.progress --pid "$pid" --interval 0 train --show '{asr_sh_show_pattern()}' \\
    --skip_inode "$old_log" train.log || echo "follower failed"
status=0
wait "$pid" || status=$?
echo "job status $status"
""")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.strip().endswith("job status 3") and "follower failed" not in out
    assert "epoch 1: valid cer_ctc_exit2=0.610 cer_ctc_exit4=0.430" in out
    assert "epoch 7" not in out  # the previous run's log
    assert "epoch 2/3: batch 200/400 | loss exit2 45.12 exit4 30.21 | ETA 0:14:10" in out
    assert time.monotonic() - start < 30  # it ended with the job (polls every 2 s)


def test_the_decoding_follower_ends_with_the_job_and_keeps_its_exit_status(tmp_path):
    done = _follow(tmp_path, """
mkdir logdir
( echo "INFO: decoded 5/10 utterances (1 s)" > logdir/asr_inference.1.log
  echo "INFO: decoded 4/10 utterances (1 s)" > logdir/asr_inference.2.log; sleep 3; exit 0 ) &
pid=$!
"$PY" -m espnet_eexit.bin.progress --pid "$pid" --interval 0 decode --label "test, each of exits 2 4" \\
    --total 20 "logdir/asr_inference.*.log" || echo "follower failed"
wait "$pid"
echo "job status $?"
""")
    assert done.returncode == 0, done.stderr
    assert "test, each of exits 2 4: 9/20 utterances (45%)" in done.stdout
    assert done.stdout.strip().endswith("job status 0")
    # a bad --pid (no such process) ends at once
    gone = _follow(tmp_path, '"$PY" -m espnet_eexit.bin.progress --pid 999999999 decode "none*"; echo rc=$?')
    assert gone.stdout.strip() == "rc=0"


def test_batches_per_epoch_come_from_the_config_line_not_a_yaml_parse(tmp_path):
    # a Whisper config.yaml holds a 51,864-entry token list; the follower reads the one line it needs
    config = tmp_path / "config.yaml"
    tokens = "".join(f"- tok{i}\n" for i in range(51864))
    config.write_text(f"token_list:\n{tokens}num_iters_per_epoch: 467\nother: 1\n")
    assert progress._batches_from_config(config) == 467
    config.write_text(f"token_list:\n{tokens}num_iters_per_epoch: null\n")
    assert progress._batches_from_config(config) is None
    assert progress._batches_from_config(tmp_path / "missing.yaml") is None
