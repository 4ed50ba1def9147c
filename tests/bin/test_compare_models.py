"""compare_models: several models' per-exit scores in one table (the paper's comparison)."""
import pytest

from espnet_eexit.bin.compare_models import main

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
