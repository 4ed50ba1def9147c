"""show_exits: the exits a config lists are answered from it alone (no model, no Hub)."""
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from espnet_eexit.bin import show_exits
from espnet_eexit.encoder.hf_wav2vec2 import EarlyExitHFWav2Vec2Encoder
from espnet_eexit.encoder.whisper import EarlyExitWhisperEncoder
from espnet_eexit.errors import EarlyExitConfigError

MISSING_HUB_ID = "no-such-org-eexit/no-such-wav2vec2-model"


def write_config(path, encoder, **encoder_conf):
    path.write_text(yaml.safe_dump({"model": "eexit", "encoder": encoder, "input_size": 1,
                                    "encoder_conf": encoder_conf}))
    return path


@pytest.fixture
def no_backbone(monkeypatch):
    """Fail the test if a backbone's config (Hub or directory) is read or a model is built."""
    def refuse(*args, **kwargs):
        raise AssertionError("show_exits reached for the backbone's config")

    for cls in (EarlyExitHFWav2Vec2Encoder, EarlyExitWhisperEncoder):
        monkeypatch.setattr(cls, "layers_in_config", classmethod(refuse))
        monkeypatch.setattr(cls, "__init__", refuse)


@pytest.mark.parametrize("encoder,key", [("eexit_hf_wav2vec2", "hf_model"),
                                         ("eexit_whisper", "whisper_model")])
def test_listed_exits_of_a_hub_backbone_are_answered_from_the_config(
        encoder, key, tmp_path, capsys, no_backbone):
    config = write_config(tmp_path / "config.yaml", encoder, exit_layers=[3, 6, 12],
                          **{key: MISSING_HUB_ID})
    show_exits.main([str(config)])
    assert capsys.readouterr().out.split() == ["3", "6", "12"]
    # the layer count does need the backbone's config: asked for, it is read (here: refused)
    with pytest.raises(AssertionError, match="reached for the backbone"):
        show_exits.main(["--num_layers", str(config)])


def test_offline_command_answers_at_once_without_transformers(tmp_path):
    """The command itself, offline: no Hub retries, not even ``transformers`` imported."""
    config = write_config(tmp_path / "config.yaml", "eexit_hf_wav2vec2", hf_model=MISSING_HUB_ID,
                          exit_layers=[2, 4, 6])
    probe = ("import sys; from espnet_eexit.bin import show_exits; "
             f"show_exits.main([{str(config)!r}]); "
             "assert 'transformers' not in sys.modules, 'transformers imported'")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "4", "6"]
    # the old path tried AutoConfig on the Hub id: an error offline, 35 s of retries without HF_HUB_OFFLINE
    assert time.monotonic() - start < 30


def test_a_local_backbone_directory_gives_the_layer_count_from_its_config_json(tmp_path, capsys,
                                                                               no_backbone):
    backbone = tmp_path / "wav2vec2"
    backbone.mkdir()
    (backbone / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "num_hidden_layers": 6}))
    config = write_config(tmp_path / "config.yaml", "eexit_hf_wav2vec2", hf_model=str(backbone),
                          exit_layers=[2, 4, 6])
    show_exits.main(["--num_layers", str(config)])
    show_exits.main([str(config)])
    assert capsys.readouterr().out.split() == ["6", "2", "4", "6"]
    # with the count known, a listed exit above the top layer is still refused, naming the file
    bad = write_config(tmp_path / "bad.yaml", "eexit_hf_wav2vec2", hf_model=str(backbone),
                       exit_layers=[2, 8])
    with pytest.raises(EarlyExitConfigError, match=r"bad.yaml: exit_layers=\[2, 8\]: \[8\] out of range"):
        show_exits.exit_layers_of_config_file(bad)


def test_listed_exits_are_checked_without_the_layer_count(tmp_path, no_backbone):
    for exits, message in [([4, 2], "not sorted"), ([0, 2], "out of range"), ([2, "x"], "not integers"),
                           (6, "not a list")]:
        config = write_config(tmp_path / "config.yaml", "eexit_hf_wav2vec2", hf_model=MISSING_HUB_ID,
                              exit_layers=exits)
        with pytest.raises(EarlyExitConfigError, match=f"config.yaml: .*{message}"):
            show_exits.exit_layers_of_config_file(config)


def test_unlisted_exits_of_a_from_scratch_encoder_come_from_its_num_blocks(tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", "eexit_conformer", num_blocks=5)
    show_exits.main([str(config)])
    show_exits.main(["--num_layers", str(config)])
    assert capsys.readouterr().out.split() == ["2", "4", "5", "5"]
