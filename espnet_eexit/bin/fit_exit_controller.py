"""Fit the learned exit controller on a dev decoding of every exit, and report its calibration.

    python -m espnet_eexit.bin.fit_exit_controller exp/asr/decode/dev --num_layers 12 \
        --output exp/asr/exit_controller.json [--evaluate exp/asr/decode/test]

Reads ``<dir>/exit<k>/{text,confidence}`` (``asr_inference --all_exits``, stage 12). One sample per
utterance and exit below the last: the features of :mod:`espnet_eexit.exit_controller` and the
label "exit k's hypothesis equals the last exit's". Fits a logistic regression (scikit-learn) on
standardised features and writes the controller (JSON). A feature the decoding did not record for
any utterance (the N-best posterior of a greedy attention decoder) is left out. Prints, for the fitting set and each
``--evaluate`` set: samples, the share of positive labels, accuracy at 0.5 and the expected
calibration error (ECE, 10 bins) of "this exit's hypothesis will not change".
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.exit_controller import FEATURES, ExitController, expected_calibration_error, feature_matrix
from espnet_eexit.exit_policy import CONFIDENCE_POLICIES


def samples(decode_dir: Path, num_layers: int) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """(N, F) features, (N,) labels of every utterance at every exit below the last."""
    from espnet_eexit.bin.exit_sweep import read_exit_decodings

    try:
        layers, texts, conf = read_exit_decodings(decode_dir)
    except FileNotFoundError as e:
        raise EarlyExitConfigError(str(e))
    if len(layers) < 2:
        raise EarlyExitConfigError(f"{decode_dir}: needs exit<k>/ directories of at least two exits "
                                   "(asr_inference --all_exits)")
    last = texts[layers[-1]]
    rows, labels = [], []
    for k in layers[:-1]:
        keys = [key for key in conf[k] if key in last]
        rows.append(feature_matrix({m: [conf[k][key][m] for key in keys] for m in CONFIDENCE_POLICIES},
                                   k / num_layers))
        labels += [float(" ".join(texts[k].get(key, "").split()) == " ".join(last[key].split()))
                   for key in keys]
    x, y = np.concatenate(rows), np.asarray(labels)
    # NaN: not decoded (bad audio), written before the agreement column existed, or a feature this
    # decoding does not give (a whole column: left out of the fit)
    recorded = ~np.isnan(x).all(axis=0)
    complete = ~np.isnan(x[:, recorded]).any(axis=1)
    if not complete.any():
        raise EarlyExitConfigError(f"{decode_dir}: no utterance has every feature (re-decode with this version)")
    return x[complete], y[complete], layers


def report(name: str, controller: ExitController, x: np.ndarray, y: np.ndarray) -> str:
    p = controller.probability(x)
    return (f"{name}: {len(y)} samples, {y.mean():.3f} unchanged deeper, accuracy {np.mean((p >= 0.5) == y):.3f}, "
            f"ECE {expected_calibration_error(p, y):.4f}")


def fit(x: np.ndarray, y: np.ndarray, layers: List[int], num_layers: int) -> ExitController:
    """A controller over the features recorded (the columns of ``x`` that are not NaN)."""
    from sklearn.linear_model import LogisticRegression

    used = ~np.isnan(x).any(axis=0)
    x = x[:, used]
    mean, std = x.mean(0), x.std(0)
    std[std < 1e-9] = 1.0  # a constant feature (e.g. every agreement 1) gets weight ~0
    if y.min() == y.max():
        raise EarlyExitConfigError("every label is the same: the exits always (or never) agree with the last")
    regression = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / std, y)
    return ExitController(regression.coef_[0], regression.intercept_[0], mean, std, layers, num_layers,
                          [f for f, u in zip(FEATURES, used) if u])


def main(cmd: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decode_dir", type=Path, help="the dev decoding: exit<k>/{text,confidence}")
    parser.add_argument("--num_layers", type=int, required=True, help="L, the encoder's layers")
    parser.add_argument("--output", type=Path, required=True, help="the controller file (JSON)")
    parser.add_argument("--evaluate", type=Path, action="append", default=[],
                        help="another decoding to report the controller's calibration on (e.g. test)")
    args = parser.parse_args(cmd)
    try:
        x, y, layers = samples(args.decode_dir, args.num_layers)
        controller = fit(x, y, layers, args.num_layers)
        controller.save(args.output)
        print(report(str(args.decode_dir), controller, x, y))
        for other in args.evaluate:
            xo, yo, other_layers = samples(other, args.num_layers)
            controller.check_model(other_layers, args.num_layers, str(other))
            print(report(str(other), controller, xo, yo))
    except EarlyExitConfigError as e:
        parser.error(str(e))
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
