"""Kill -9 stage 11 at random moments, rerun it: training resumes from the last checkpoint and ends
with the uninterrupted run's losses and weights, bit for bit.

The tiny mini_espeak model (24 utterances, 3 steps an epoch, 3 epochs) is trained once without a
break (in the background), and again while ``./run.sh --stage 11``'s whole process group (the
trainer included) is killed with SIGKILL three times: in epoch 1 after step 1 or 2; while epoch
1's ``checkpoint.pth`` or ``1epoch.pth`` is written (the kill follows the first write inotify
reports); in epoch 2 or 3 after step 1, 2 or 3 (3: while validating). The moments come from a seed
printed at the start (``KILL_RESUME_SEED=<seed>`` replays them). A bigger matrix:
``tests/recipes/kill_resume.py`` (its docstring says how).
"""
import os
import random

import pytest

from kill_resume import Kill, Plan, matrix, prepare, table
from recipe_helpers import require_tools

MAX_EPOCH = 3


@pytest.fixture(autouse=True, scope="module")
def tts_engine():
    require_tools("espeak-ng", "sox")


def test_killed_training_resumes_to_the_uninterrupted_runs_model(tmp_path):
    seed = int(os.environ.get("KILL_RESUME_SEED") or random.SystemRandom().randrange(10 ** 6))
    print(f"KILL_RESUME_SEED={seed}")
    rng = random.Random(seed)
    plan = Plan([Kill("mid_epoch", 1, step=rng.randint(1, 2)),
                 Kill(rng.choice(["checkpoint_save", "epoch_save"]), 1),
                 Kill("mid_epoch", rng.randint(2, MAX_EPOCH), step=rng.randint(1, 3))])
    rows = matrix(prepare(tmp_path), MAX_EPOCH, plan)
    report = f"KILL_RESUME_SEED={seed}\n{table(rows)}"
    print(report)
    kills = rows[:3]
    # each kill landed where it was aimed: the mid-epoch ones after their step, the save one after
    # epoch 1's results (with checkpoint.pth or 1epoch.pth cut short, or just complete)
    assert len(kills) == 3 and all("[landed" in r.case for r in kills), report
    for row, kill in zip(kills, plan.kills):
        where = f"in epoch {kill.epoch} after step {kill.step};" if kill.kind == "mid_epoch" else \
            "after epoch 1's results;"
        assert f"[landed {where}" in row.case, report
    # each rerun did what the files left by the kill call for (resume at the next epoch, restore an
    # epoch file cut short, or refuse a truncated checkpoint.pth in one line and, moved away, train
    # anew); then the losses of every epoch and every tensor equal the uninterrupted run's
    assert all(r.ok for r in rows), report
    assert len(rows) == 3 + 1 + MAX_EPOCH + 1, report  # 3 kills, the curves, 3 epoch files, the average
