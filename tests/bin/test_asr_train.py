"""asr_train: a checkpoint left truncated by a kill during its save is named, not a torch traceback;
an epoch file a kill left missing or truncated after a complete checkpoint is restored from it."""
from pathlib import Path

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


def test_the_complete_file_check_is_model_files_one(tmp_path, monkeypatch):
    """One zip check (model_files.is_complete_checkpoint), also for the epoch file offered instead:
    a truncated last epoch file is not offered."""
    import inspect

    assert "zipfile" not in inspect.getsource(asr_train)
    _checkpoint(tmp_path / "cut", truncate=True)
    data = (tmp_path / "cut" / "10epoch.pth").read_bytes()
    (tmp_path / "cut" / "10epoch.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(EarlyExitConfigError, match=f"--init_param {tmp_path / 'cut' / '2epoch.pth'}$"):
        asr_train.check_resumable(tmp_path / "cut")
    _checkpoint(tmp_path / "ok", truncate=False)
    monkeypatch.setattr(asr_train, "is_complete_checkpoint", lambda path: False)
    with pytest.raises(EarlyExitConfigError, match="checkpoint.pth cannot be resumed from"):
        asr_train.check_resumable(tmp_path / "ok")


def test_asr_train_refuses_to_resume_from_a_truncated_checkpoint_in_one_line(tmp_path, capsys):
    _checkpoint(tmp_path / "cut", truncate=True)
    with pytest.raises(SystemExit) as err:
        asr_train.main(["--output_dir", str(tmp_path / "cut"), "--resume", "true"])
    assert err.value.code == 2
    stderr = capsys.readouterr().err
    assert "checkpoint.pth cannot be resumed from" in stderr and "Traceback" not in stderr


def _killed_after_checkpoint(out, epoch_file: str):
    """What a kill between ESPnet's two saves of epoch 2 leaves: checkpoint.pth complete (epoch 2
    done, epoch 1 the best by valid loss), 2epoch.pth ``missing`` or ``truncated``, the links
    still pointing at epoch 1."""
    out.mkdir(parents=True, exist_ok=True)
    weights = {"w": torch.randn(64, 64), "n": torch.tensor(7)}
    stats = {1: {"valid": {"loss": 1.0}}, 2: {"valid": {"loss": 2.0}}}
    torch.save({"model": weights, "reporter": {"epoch": 2, "stats": stats}}, out / "checkpoint.pth")
    torch.save({"w": torch.zeros(64, 64)}, out / "1epoch.pth")
    if epoch_file == "truncated":
        torch.save(weights, out / "2epoch.pth")
        data = (out / "2epoch.pth").read_bytes()
        (out / "2epoch.pth").write_bytes(data[: len(data) // 2])
    (out / "latest.pth").symlink_to("1epoch.pth")
    (out / "valid.loss.best.pth").symlink_to("2epoch.pth")  # wrong: epoch 1 is the best
    return weights


@pytest.mark.parametrize("epoch_file", ["missing", "truncated"])
def test_an_epoch_file_lost_to_a_kill_after_the_checkpoint_is_restored_from_it(tmp_path, epoch_file, capsys):
    """Else the resumed run never writes 2epoch.pth again and its n-best averaging dies at the end."""
    weights = _killed_after_checkpoint(tmp_path, epoch_file)
    changed = asr_train.restore_epoch_files(tmp_path, [["valid", "loss", "min"]])
    restored = torch.load(tmp_path / "2epoch.pth")
    assert set(restored) == set(weights) and all(torch.equal(restored[k], weights[k]) for k in weights)
    assert (tmp_path / "latest.pth").readlink() == Path("2epoch.pth")
    assert (tmp_path / "valid.loss.best.pth").readlink() == Path("1epoch.pth")
    assert set(changed) == {tmp_path / n for n in ("2epoch.pth", "latest.pth", "valid.loss.best.pth")}
    assert f"{tmp_path / '2epoch.pth'} was {'incomplete' if epoch_file == 'truncated' else 'missing'}" \
        in capsys.readouterr().err
    assert not list(tmp_path.glob("*.partial"))
    # a second resume finds everything in place: nothing is rewritten
    assert asr_train.restore_epoch_files(tmp_path, [["valid", "loss", "min"]]) == []
