"""fit_exit_controller on a decoding whose exits agree with the last exactly when their agreement
count is 2: the fitted controller separates them, and the sweep gains the learned curve."""
import numpy as np
import pytest

from espnet_eexit.bin import exit_sweep, fit_exit_controller
from espnet_eexit.exit_controller import ExitController


def decoding(root, n=40, seed=0):
    """exit2/4/6 with text and confidence: the last exit says 'the end'; utterance i's exit 4 agrees
    with it for odd i (agreement 2 there), exit 2 never does; other measures are noise."""
    rng = np.random.default_rng(seed)
    refs = {f"u{i:02d}": "the end" for i in range(n)}
    for k in (2, 4, 6):
        out = root / f"exit{k}"
        out.mkdir(parents=True)
        text, conf = [], []
        for i, key in enumerate(refs):
            same = k == 6 or (k == 4 and i % 2 == 1)
            text.append(f"{key} {'the end' if same else 'a bend'}")
            agreement = 2 if (k == 4 and same) or k == 6 else 1
            conf.append(f"{key} {rng.uniform():.4f} {rng.uniform():.4f} {rng.uniform():.4f} {agreement}")
        (out / "text").write_text("\n".join(text) + "\n")
        (out / "confidence").write_text("\n".join(conf) + "\n")
    return refs


def test_fit_separates_and_reports(tmp_path, capsys):
    decoding(tmp_path / "dev")
    decoding(tmp_path / "test", seed=1)
    out = tmp_path / "controller.json"
    fit_exit_controller.main([str(tmp_path / "dev"), "--num_layers", "6", "--output", str(out),
                              "--evaluate", str(tmp_path / "test")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'dev'}: 80 samples, 0.250 unchanged deeper, accuracy 1.000")
    assert lines[1].startswith(f"{tmp_path / 'test'}: 80 samples, 0.250 unchanged deeper, accuracy 1.000")
    controller = ExitController.load(out)
    x, y, layers = fit_exit_controller.samples(tmp_path / "test", 6)
    p = controller.probability(x)
    assert layers == [2, 4, 6] and p[y == 1].min() > 0.5 > p[y == 0].max()


def test_the_sweep_adds_the_learned_curve(tmp_path):
    from espnet_eexit.scoring import WordScorer, find_sclite

    refs = decoding(tmp_path / "test")
    x, y, _ = fit_exit_controller.samples(tmp_path / "test", 6)
    controller = fit_exit_controller.fit(x, y, [2, 4, 6], 6)
    (tmp_path / "sc").mkdir()
    scorer = WordScorer(refs, find_sclite(), tmp_path / "sc")
    rows = exit_sweep.sweep(tmp_path / "test", 6, scorer, controller=controller)
    learned = [r for r in rows if r.policy == "learned"]
    assert learned
    # a threshold where the odd utterances stop at exit 4 and the rest go on: depth (4 + 6) / 2 / 6,
    # no word error (exit 4 agrees with the last exit wherever it stops)
    assert any(r.avg_depth == pytest.approx(10 / 12) and r.wer == 0.0 for r in learned)


def test_a_feature_no_utterance_recorded_is_left_out(tmp_path):
    """Greedy decoding of an attention decoder records no N-best posterior ('-' everywhere): the
    controller is fitted on the other features, saved with their names, and still separates."""
    decoding(tmp_path / "dev")
    for k in (2, 4, 6):
        path = tmp_path / "dev" / f"exit{k}" / "confidence"
        lines = [line.split() for line in path.read_text().splitlines()]
        path.write_text("".join(f"{u} {e} {m} - {a}\n" for u, e, m, _, a in lines))
    out = tmp_path / "controller.json"
    fit_exit_controller.main([str(tmp_path / "dev"), "--num_layers", "6", "--output", str(out)])
    controller = ExitController.load(out)
    assert controller.features == ("entropy", "max_posterior", "agreement", "depth")
    x, y, _ = fit_exit_controller.samples(tmp_path / "dev", 6)
    assert len(y) == 80 and np.isnan(x[:, 2]).all()
    p = controller.probability(x)
    assert not np.isnan(p).any() and p[y == 1].min() > 0.5 > p[y == 0].max()


def test_a_controller_with_unknown_features_is_refused(tmp_path):
    import json

    from espnet_eexit.errors import EarlyExitConfigError

    path = tmp_path / "c.json"
    data = ExitController([1.0], 0.0, [0.0], [1.0], [2, 4, 6], 6, ["entropy"]).to_dict()
    path.write_text(json.dumps(dict(data, features=["loudness"])))
    with pytest.raises(EarlyExitConfigError, match="features among"):
        ExitController.load(path)
