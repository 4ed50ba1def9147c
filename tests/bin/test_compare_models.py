"""compare_models: several models' per-exit scores in one table (the paper's comparison)."""
import datetime

import pytest
import yaml
from espnet2.train.reporter import Reporter

from espnet_eexit.bin.compare_models import main
from espnet_eexit.bin.training_time import training_time

# the two summary lines of sclite -o all (percentages, then counts), as espnet_eexit.scoring reads them
SCLITE = """\
| SPKR   | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |
| Sum/Avg|   10    {n} | 50.0   30.0   20.0    {ins}   {err}  90.0 |
| SPKR   | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |
| Sum    |   10    {n} |   50     30     20     0   {count}     9 |
"""


def scored(root, exits, base):
    """A decode dir with sclite reports for ``exits``; WER = base + k, CER = (base + k) / 2."""
    for k in exits:
        for metric, err in (("wer", base + k), ("cer", (base + k) / 2)):
            d = root / "test" / f"exit{k}" / f"score_{metric}"
            d.mkdir(parents=True)
            (d / "result.txt").write_text(SCLITE.format(n=100, ins="0.0", err=f"{err:.1f}", count=round(err)))
    return root


def test_columns_merge_single_exit_baselines_and_leave_missing_exits_empty(tmp_path, capsys):
    ee = scored(tmp_path / "ee", (2, 4, 6), 10)
    s2 = scored(tmp_path / "s2", (2,), 20)
    s6 = scored(tmp_path / "s6", (6,), 30)
    md = tmp_path / "RESULTS.md"
    main(["--num_layers", "6", "--update_md", str(md), "--output_png", str(tmp_path / "c.png"),
          f"early-exit={ee}", f"single-exit={s2}", f"single-exit={s6}"])
    table = capsys.readouterr().out
    assert "| 2 | 0.33 | 12.0 / 6.0 | 22.0 / 11.0 |" in table
    assert "| 4 | 0.67 | 14.0 / 7.0 |  |" in table  # no 4-layer baseline
    assert "| 6 | 1.00 | 16.0 / 8.0 | 36.0 / 18.0 |" in table
    assert "## Early-exit vs single-exit vs fine-tuned" in md.read_text()
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_unscored_model_and_clashing_exits_are_clear_errors(tmp_path):
    ee = scored(tmp_path / "ee", (2, 4), 10)
    with pytest.raises(SystemExit, match="no scored exit"):
        main(["--num_layers", "4", f"a={ee}", f"b={tmp_path / 'missing'}"])
    with pytest.raises(SystemExit, match="two decodings give exit 2"):
        main(["--num_layers", "4", f"a={ee}", f"a={ee}"])
    with pytest.raises(SystemExit):
        main(["--num_layers", "4", "no-equals-sign"])


def model_dir(root, num_blocks, exits):
    """exp/asr_<tag>/ with the config.yaml of a Conformer of ``num_blocks`` layers."""
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(dict(
        encoder="eexit_conformer", model="eexit",
        encoder_conf=dict(num_blocks=num_blocks, exit_layers=list(exits)))))
    return root


def test_models_of_different_depths_meet_at_equal_relative_depth(tmp_path, capsys):
    deep = scored(model_dir(tmp_path / "asr_deep", 12, (6, 12)) / "decode", (6, 12), 10)
    shallow = scored(model_dir(tmp_path / "asr_shallow", 4, (1, 2, 3, 4)) / "decode", (1, 2, 3, 4), 20)
    main([f"deep={deep}", f"shallow={shallow}"])
    table = capsys.readouterr().out
    assert "| depth k/L | deep: test WER / CER | shallow: test WER / CER |" in table
    assert "| 0.25 |  | 21.0 / 10.5 (exit 1/4) |" in table
    assert "| 0.50 | 16.0 / 8.0 (exit 6/12) | 22.0 / 11.0 (exit 2/4) |" in table
    assert "| 1.00 | 22.0 / 11.0 (exit 12/12) | 24.0 / 12.0 (exit 4/4) |" in table
    assert "Training time" not in table  # no train.log
    # one L given for all: the old layout, and the shallow model's exits counted out of 12
    main(["--num_layers", "12", f"deep={deep}"])
    assert "| 6 | 0.50 | 16.0 / 8.0 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="config.yaml: missing"):
        main([f"x={scored(tmp_path / 'no_config' / 'decode', (2,), 0)}"])


def epoch_results_line(epoch, train_seconds, valid_seconds):
    """An ``<N>epoch results`` line as ESPnet's trainer logs it (its own Reporter's message)."""
    reporter = Reporter()
    reporter.set_epoch(epoch)  # as the trainer does: observe() with an epoch would clear the others
    for key, seconds in (("train", train_seconds), ("valid", valid_seconds)):
        with reporter.observe(key) as sub:
            sub.register({"loss": 1.5})
            sub.next()
        reporter.stats[epoch][key]["time"] = datetime.timedelta(seconds=seconds)
    return f"[vm] 2026-11-29 13:28:48,877 (trainer:394) INFO: {reporter.log_message()}\n"


def test_training_time_sums_each_epochs_train_and_valid_time_from_train_log(tmp_path, capsys):
    exp = model_dir(tmp_path / "asr_m", 4, (2, 4))
    log = exp / "train.log"
    log.write_text(
        "# python3 -m espnet_eexit.bin.asr_train ...\n"
        + epoch_results_line(1, 3725.5, 60.0)      # "1 hour, 2 minutes and 5.5 seconds"
        + epoch_results_line(2, 999.0, 1.0)        # this epoch was run again after a kill:
        + epoch_results_line(2, 500.25, 30.0)      # its last line counts
    )
    assert "1 hour, 2 minutes and 5.5 seconds" in log.read_text()
    assert training_time(exp).seconds == pytest.approx(3725.5 + 60 + 500.25 + 30)
    assert training_time(tmp_path / "missing") is None
    main([f"m={scored(exp / 'decode', (2, 4), 0)}"])
    assert f"| m | `asr_m` | {(3725.5 + 60 + 500.25 + 30) / 60:.1f} |" in capsys.readouterr().out
