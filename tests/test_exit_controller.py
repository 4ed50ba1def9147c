"""The learned exit controller: decisions from a fixed weight file, calibration error, clear errors."""
import json
import math

import numpy as np
import pytest

from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.exit_controller import FEATURES, ExitController, expected_calibration_error
from espnet_eexit.exit_policy import ExitPoint, build_exit_policy


def frames(labels, vocab=4):
    lp = np.full((len(labels), vocab), -9.0)
    lp[np.arange(len(labels)), labels] = 0.0
    return lp


def controller_file(tmp_path, exit_layers=(2, 4, 6)):
    """Weights on the agreement count only (unstandardised): p = sigmoid(4 * agreement - 6)."""
    weights = [4.0 if f == "agreement" else 0.0 for f in FEATURES]
    ExitController(weights, -6.0, [0.0] * 5, [1.0] * 5, list(exit_layers), 6).save(tmp_path / "c.json")
    return tmp_path / "c.json"


def test_learned_policy_stops_where_its_weights_say(tmp_path):
    """Two utterances whose greedy hypotheses at exits 2/4 are 'ab','ab' and 'ab','b': agreement
    1,2 and 1,1, so p = sigmoid(-2), sigmoid(2) and sigmoid(-2), sigmoid(-2)."""
    policy = build_exit_policy("learned", threshold=0.5, controller=controller_file(tmp_path)).bind([2, 4, 6], 6)
    ab, b = frames([1, 1, 0, 2]), frames([0, 2, 2, 0])
    lengths = np.array([4, 4])
    stop, p = policy.decide(ExitPoint(2, 4, 6, np.stack([ab, ab]), lengths))
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert stop.tolist() == [False, False] and p == pytest.approx([sig(-2), sig(-2)])
    stop, p = policy.decide(ExitPoint(4, 6, 6, np.stack([ab, b]), lengths))
    assert stop.tolist() == [True, False] and p == pytest.approx([sig(2), sig(-2)])


def test_features_are_the_policies_own_measures(tmp_path):
    """A controller reading only the entropy feature (weight -1, mean 0.5, std 0.25) gives
    sigmoid(-(H - 0.5) / 0.25) with H the entropy policy's value."""
    from espnet_eexit.exit_policy import mean_normalised_entropy

    weights = [-1.0 if f == "entropy" else 0.0 for f in FEATURES]
    ExitController(weights, 0.0, [0.5] * 5, [0.25] * 5, [2, 4, 6], 6).save(tmp_path / "e.json")
    policy = build_exit_policy("learned", threshold=0.5, controller=tmp_path / "e.json").bind([2, 4, 6], 6)
    rng = np.random.default_rng(0)
    lp = rng.normal(size=(3, 7, 5))
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    lengths = np.array([7, 5, 3])
    _, p = policy.decide(ExitPoint(2, 4, 6, lp, lengths))
    h = mean_normalised_entropy(lp, lengths)
    assert p == pytest.approx(1 / (1 + np.exp((h - 0.5) / 0.25)))


def test_expected_calibration_error_on_a_known_case():
    # bin 0.9: predicted 0.9, observed 0.5 (weight 1/2); bin 0.1: predicted 0.1, observed 0 (1/2)
    assert expected_calibration_error([0.9, 0.9, 0.1, 0.1], [1, 0, 0, 0]) == pytest.approx(0.25)
    assert expected_calibration_error([1.0, 0.0], [1, 0]) == pytest.approx(0.0)


def test_clear_errors(tmp_path):
    with pytest.raises(EarlyExitConfigError, match="needs a fitted controller"):
        build_exit_policy("learned", threshold=0.5).bind([2, 4, 6], 6)
    with pytest.raises(EarlyExitConfigError, match="no such file"):
        build_exit_policy("learned", threshold=0.5, controller=tmp_path / "none.json").bind([2, 4, 6], 6)
    other = controller_file(tmp_path, exit_layers=(3, 6))
    with pytest.raises(EarlyExitConfigError, match=r"fitted for exits \[3, 6\] of 6 layers, but the model has exits \[2, 4, 6\]"):
        build_exit_policy("learned", threshold=0.5, controller=other).bind([2, 4, 6], 6)
    data = json.loads(other.read_text())
    data["features"] = ["entropy"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(EarlyExitConfigError, match="old.json: an exit controller needs 1 weights"):
        ExitController.load(tmp_path / "old.json")
