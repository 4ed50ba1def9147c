"""asr_train: a checkpoint left truncated by a kill during its save is named, not a torch traceback."""
import pytest
import torch

from espnet_eexit.bin import asr_train
from espnet_eexit.errors import EarlyExitConfigError


def _checkpoint(out, truncate: bool):
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.randn(256, 256)}}, out / "checkpoint.pth")
    if truncate:
        data = (out / "checkpoint.pth").read_bytes()
        (out / "checkpoint.pth").write_bytes(data[: len(data) // 2])
    for n in (1, 2, 10):
        torch.save({"w": torch.zeros(1)}, out / f"{n}epoch.pth")


def test_complete_checkpoint_passes_truncated_one_is_named_with_what_to_do(tmp_path):
    _checkpoint(tmp_path / "ok", truncate=False)
    asr_train.check_resumable(tmp_path / "ok")
    asr_train.check_resumable(tmp_path / "fresh")  # nothing to resume: fine
    _checkpoint(tmp_path / "cut", truncate=True)
    with pytest.raises(EarlyExitConfigError) as err:
        asr_train.check_resumable(tmp_path / "cut")
    message = str(err.value)
    assert f"{tmp_path / 'cut' / 'checkpoint.pth'} cannot be resumed from: it is incomplete" in message
    assert f"--init_param {tmp_path / 'cut' / '10epoch.pth'}" in message


def test_asr_train_refuses_to_resume_from_a_truncated_checkpoint_in_one_line(tmp_path, capsys):
    _checkpoint(tmp_path / "cut", truncate=True)
    with pytest.raises(SystemExit) as err:
        asr_train.main(["--output_dir", str(tmp_path / "cut"), "--resume", "true"])
    assert err.value.code == 2
    stderr = capsys.readouterr().err
    assert "checkpoint.pth cannot be resumed from" in stderr and "Traceback" not in stderr
