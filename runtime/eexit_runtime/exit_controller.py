"""A learned exit controller: the probability that going deeper will not change an exit's hypothesis.

A logistic regression over what is known at exit k (numpy only, shared by PyTorch decoding, the
sweep and the ONNX runtime):

    p(stop | exit k) = sigmoid(w . (x - mean) / std + b),   x = FEATURES at exit k

fitted on ``dev`` (``python -m espnet_eexit.bin.fit_exit_controller``) with the label "exit k's
hypothesis equals the last exit's". The ``learned`` policy stops at the first exit with
p >= threshold. The fitted model is a small JSON file. A controller may use a subset of the
features: those a model's decoding records (with greedy decoding of an attention decoder there is
no N-best posterior).
"""
import json
from pathlib import Path
from typing import Dict, Mapping, Sequence, Union

import numpy as np

from eexit_runtime.errors import EarlyExitConfigError

#: the inputs, in order: the confidences recorded per exit (exit<k>/confidence) + relative depth
FEATURES = ("entropy", "max_posterior", "nbest_posterior", "agreement", "depth")
FORMAT = "espnet_eexit.exit_controller"


def feature_matrix(measures: Mapping[str, Sequence[float]], depth: float) -> np.ndarray:
    """(N, F) controller inputs in :data:`FEATURES` order: ``measures`` holds N values of each
    measured feature (every one but ``depth``; other keys are ignored), ``depth`` is k / L."""
    columns = [np.asarray(measures[name], dtype=np.float64) for name in FEATURES if name != "depth"]
    return np.stack(columns + [np.full(len(columns[0]), depth)], axis=1)


class ExitController:
    """Logistic regression over :data:`FEATURES` (or a subset of them).

    Args:
        weights: (F',) one weight per feature used (of standardised features).
        bias: the intercept.
        mean, std: (F',) standardisation of the features used.
        exit_layers, num_layers: the model the controller was fitted for (checked when it is used).
        features: the features used, in :data:`FEATURES` order (default: all).
    """

    def __init__(self, weights: Sequence[float], bias: float, mean: Sequence[float], std: Sequence[float],
                 exit_layers: Sequence[int], num_layers: int, features: Sequence[str] = FEATURES):
        self.features = tuple(features)
        if not self.features or [f for f in FEATURES if f in self.features] != list(self.features):
            raise EarlyExitConfigError(
                f"an exit controller's features must be some of {list(FEATURES)}, in that order; got "
                f"{list(self.features)}")
        self.columns = [FEATURES.index(f) for f in self.features]
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = float(bias)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.exit_layers = [int(k) for k in exit_layers]
        self.num_layers = int(num_layers)
        if not (self.weights.shape == self.mean.shape == self.std.shape == (len(self.features),)):
            raise EarlyExitConfigError(
                f"an exit controller needs {len(self.features)} weights, means and stds (one per feature)")

    def probability(self, features: np.ndarray) -> np.ndarray:
        """(N, F) features (all of :data:`FEATURES`) -> (N,) probability that the hypothesis will
        not change deeper."""
        x = np.asarray(features, dtype=np.float64)[:, self.columns]
        z = (x - self.mean) / self.std @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def check_model(self, exit_layers: Sequence[int], num_layers: int, source: str = "controller") -> None:
        if list(exit_layers) != self.exit_layers or num_layers != self.num_layers:
            raise EarlyExitConfigError(
                f"{source}: fitted for exits {self.exit_layers} of {self.num_layers} layers, but the "
                f"model has exits {list(exit_layers)} of {num_layers}: fit one on this model's dev decoding")

    def to_dict(self) -> Dict:
        return dict(format=FORMAT, features=list(self.features), weights=self.weights.tolist(), bias=self.bias,
                    mean=self.mean.tolist(), std=self.std.tolist(), exit_layers=self.exit_layers,
                    num_layers=self.num_layers)

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ExitController":
        path = Path(path)
        if not path.is_file():
            raise EarlyExitConfigError(f"exit controller {path}: no such file (fit one with "
                                       "python -m espnet_eexit.bin.fit_exit_controller)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise EarlyExitConfigError(f"exit controller {path}: not valid JSON ({e})")
        features = data.get("features")
        if data.get("format") != FORMAT or not isinstance(features, list) or not set(features) <= set(FEATURES):
            raise EarlyExitConfigError(
                f"exit controller {path}: expected format {FORMAT!r} with features among {list(FEATURES)}, "
                f"got {data.get('format')!r} with {features}")
        try:
            return cls(data["weights"], data["bias"], data["mean"], data["std"], data["exit_layers"],
                       data["num_layers"], features)
        except (KeyError, TypeError, ValueError, EarlyExitConfigError) as e:
            raise EarlyExitConfigError(f"exit controller {path}: {e}")


def expected_calibration_error(probability: np.ndarray, label: np.ndarray, bins: int = 10) -> float:
    """ECE: the mean over equal-width probability bins (weighted by their share of the samples) of
    |mean predicted probability - observed frequency|."""
    probability, label = np.asarray(probability, dtype=np.float64), np.asarray(label, dtype=np.float64)
    index = np.minimum((probability * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            ece += in_bin.mean() * abs(probability[in_bin].mean() - label[in_bin].mean())
    return float(ece)
