"""exit_sweep: policy thresholds -> (average depth, WER) from per-exit decodings, scored by sclite."""
import pytest

from espnet_eexit.bin import exit_sweep, prepare_scoring
from espnet_eexit.scoring import find_sclite, read_sclite


def test_sclite_is_installed():
    """tools/install.sh installs sctk; without it every WER test below fails, none is skipped."""
    assert find_sclite() is not None, "sclite not found: run tools/install.sh (Debian package sctk)"

REFS = {"u1": "A B C D", "u2": "E F G H", "u3": "I J K L", "u4": "M N O P"}
# exit 2 gets u1, u2 right; exit 4 also u3; exit 6 everything but one word of u4.
HYPS = {
    2: {"u1": "A B C D", "u2": "E F G H", "u3": "I X", "u4": "M"},
    4: {"u1": "A B C D", "u2": "E F G X", "u3": "I J K L", "u4": "M N"},
    6: {"u1": "A B C D", "u2": "E F G H", "u3": "I J K L", "u4": "M N O X"},
}
# (entropy, max_posterior, nbest_posterior) per exit: confident where the exit is right
CONF = {
    2: {"u1": (0.1, 0.9, 0.95), "u2": (0.2, 0.8, 0.9), "u3": (0.6, 0.4, 0.3), "u4": (0.7, 0.3, 0.2)},
    4: {"u1": (0.1, 0.9, 0.95), "u2": (0.5, 0.5, 0.5), "u3": (0.15, 0.85, 0.9), "u4": (0.6, 0.4, 0.3)},
    6: {"u1": (0.1, 0.9, 0.9), "u2": (0.1, 0.9, 0.9), "u3": (0.1, 0.9, 0.9), "u4": (0.3, 0.7, 0.6)},
}


@pytest.fixture
def decoded(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("".join(f"{k} {v}\n" for k, v in REFS.items()))
    dec = tmp_path / "decode" / "test"
    for k in HYPS:
        d = dec / f"exit{k}"
        d.mkdir(parents=True)
        (d / "text").write_text("".join(f"{u} {t}\n" for u, t in HYPS[k].items()))
        (d / "confidence").write_text("".join(f"{u} {' '.join(map(str, c))}\n" for u, c in CONF[k].items()))
    return data, dec


def test_sweep_points_fixed_exits_and_oracle(decoded, tmp_path):
    data, dec = decoded
    md = tmp_path / "table.md"
    exit_sweep.main([str(dec), "--data_dir", str(data), "--num_layers", "6", "--output_md", str(md)])
    rows = (dec / "exit_sweep.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    table = [dict(zip(header, r.split("\t"))) for r in rows[1:]]
    fixed = {int(float(r["threshold"])): float(r["wer"]) for r in table if r["policy"] == "fixed"}
    # 16 reference words: exit 2 has 2 del + 1 sub (u3) + 3 del (u4) = 6 errors -> 37.5 %
    assert fixed == {2: pytest.approx(37.5), 4: pytest.approx(18.75), 6: pytest.approx(6.25)}
    for policy in ("entropy", "max_posterior", "nbest_posterior"):
        pts = [r for r in table if r["policy"] == policy]
        depths = {round(float(r["avg_depth"]), 4) for r in pts}
        assert round(2 / 6, 4) in depths and 1.0 in depths  # from 'all stop at 2' to 'all go to 6'
    # entropy 0.2: u1, u2 stop at 2, u3 at 4 (0.15), u4 at 6 -> mean exit 3.5, one error (u4)
    hit = [r for r in table if r["policy"] == "entropy" and abs(float(r["avg_depth"]) - 3.5 / 6) < 1e-4]
    assert hit and min(float(r["wer"]) for r in hit) == pytest.approx(6.25)
    oracle0 = next(r for r in table if r["policy"] == "oracle" and r["threshold"] == "0")
    assert float(oracle0["wer"]) <= fixed[6] and float(oracle0["mean_exit"]) == pytest.approx(3.5)
    text = md.read_text()
    assert "| test | entropy |" in text and "| 0.583 | 0.417 | 3.50 | 6.2 | 6.2 |" in text
    assert (dec / "exit_sweep.png").stat().st_size > 1000


def test_choose_exits_follows_the_threshold_direction():
    conf = {k: {u: dict(zip(("entropy", "max_posterior", "nbest_posterior"), c)) for u, c in v.items()}
            for k, v in CONF.items()}
    keys = sorted(REFS)
    assert exit_sweep.choose_exits("entropy", 0.0, keys, [2, 4, 6], conf) == {k: 6 for k in keys}
    assert exit_sweep.choose_exits("max_posterior", 0.0, keys, [2, 4, 6], conf) == {k: 2 for k in keys}
    assert exit_sweep.choose_exits("nbest_posterior", 0.9, keys, [2, 4, 6], conf) == \
        {"u1": 2, "u2": 2, "u3": 4, "u4": 6}


def test_missing_confidence_is_a_clear_error(decoded, capsys):
    data, dec = decoded
    (dec / "exit4" / "confidence").unlink()
    with pytest.raises(SystemExit):
        exit_sweep.main([str(dec), "--data_dir", str(data), "--num_layers", "6"])
    assert "exit4/confidence is missing" in capsys.readouterr().err


def test_sweep_scores_fixed_exits_exactly_as_stage_13(tmp_path):
    """One scoring path: with a hypothesis cleaner (a lower-case model, punctuation), the sweep's
    fixed-exit WERs equal what stage 13 (prepare_scoring + sclite) writes for each exit."""
    data = tmp_path / "data"
    data.mkdir()
    refs = {"u1": "IT'S A B", "u2": "C D E F", "u3": "G H"}
    (data / "text").write_text("".join(f"{k} {v}\n" for k, v in refs.items()))
    (data / "utt2spk").write_text("".join(f"{k} s{i % 2}\n" for i, k in enumerate(refs)))
    hyps = {2: {"u1": "it's a, b.", "u2": "c d", "u3": "g x h"},
            4: {"u1": "It's a b!", "u2": "c d e f", "u3": "g h"}}
    dec = tmp_path / "decode" / "test"
    for k, texts in hyps.items():
        (dec / f"exit{k}").mkdir(parents=True)
        (dec / f"exit{k}" / "text").write_text("".join(f"{u} {t}\n" for u, t in texts.items()))
        (dec / f"exit{k}" / "confidence").write_text("".join(f"{u} 0.5 0.5 0.5\n" for u in texts))
    prepare_scoring.main(["--data_dir", str(data), "--hyp_cleaner", "upper", "--sclite", "auto",
                          str(dec / "exit2"), str(dec / "exit4")])
    stage13 = {k: read_sclite(dec / f"exit{k}" / "score_wer" / "result.txt").error_rate for k in hyps}
    assert stage13 == {2: pytest.approx(100 * 3 / 9, abs=0.05), 4: 0.0}  # u2: 2 deletions, u3: 1 insertion
    exit_sweep.main([str(dec), "--data_dir", str(data), "--num_layers", "4", "--hyp_cleaner", "upper"])
    rows = (dec / "exit_sweep.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    fixed = {int(float(r["threshold"])): float(r["wer"])
             for r in (dict(zip(header, line.split("\t"))) for line in rows[1:]) if r["policy"] == "fixed"}
    assert fixed == {k: pytest.approx(v, abs=0.05) for k, v in stage13.items()}


def test_sweeping_another_test_set_keeps_the_earlier_sets_rows(decoded, tmp_path):
    import shutil

    data, dec = decoded
    dev = dec.parent / "dev"
    shutil.copytree(dec, dev)
    (dev / "exit6" / "text").write_text("".join(f"{u} {t}\n" for u, t in REFS.items()))  # dev: exit 6 perfect
    md = tmp_path / "RESULTS.md"
    exit_sweep.main([str(dec), "--data_dir", str(data), "--num_layers", "6", "--update_md", str(md)])
    exit_sweep.main([str(dev), "--data_dir", str(data), "--num_layers", "6", "--update_md", str(md)])
    text = md.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| dev |") or line.startswith("| test |")]
    assert {r.split(" | ")[0] for r in rows} == {"| dev", "| test"}
    # the last-exit WER column (before "vs fixed"): every row of a set shows that set's
    assert {(r.split(" | ")[0], r.split(" | ")[-2]) for r in rows} == {("| test", "6.2"), ("| dev", "0.0")}
    assert text.count("### exit policy sweep") == 1


def test_area_vs_fixed_on_curves_with_a_known_answer():
    """Fixed exits at depths 1/3, 2/3, 1 with WER 30, 20, 10 (a straight line). A policy 2 points
    better at every depth from 1/3 to 1 has area -2 per unit depth; one that is 3 better on the
    first half of its range and 1 worse on the second half averages -1. A policy confined to one
    depth has no area."""
    P = exit_sweep.SweepPoint

    def fixed():
        return [P("fixed", k, k / 3, k, 40 - 10 * k, 0, 0) for k in (1, 2, 3)]

    better = [P("entropy", t, d, 0, 40 - 30 * d - 2, 0, 0) for t, d in enumerate((1 / 3, 0.5, 0.8, 1.0))]
    assert exit_sweep.area_vs_fixed(fixed() + better, "entropy") == pytest.approx(-2.0)
    # depth 0.4 .. 0.8: gap -3 at 0.4, -3 at 0.6, +1 at 0.6+ ... piecewise: -3 on [0.4, 0.6), +1 on (0.6, 0.8]
    mixed = [P("max_posterior", 0, 0.4, 0, 40 - 30 * 0.4 - 3, 0, 0), P("max_posterior", 1, 0.6, 0, 40 - 18 - 3, 0, 0),
             P("max_posterior", 2, 0.6, 0, 40 - 18 + 1, 0, 0), P("max_posterior", 3, 0.8, 0, 40 - 24 + 1, 0, 0)]
    # at depth 0.6 the two points average to -1: the curve is -3 -> -1 -> +1, linear: mean -1
    assert exit_sweep.area_vs_fixed(fixed() + mixed, "max_posterior") == pytest.approx(-1.0)
    assert exit_sweep.area_vs_fixed(fixed() + [P("oracle", 0, 0.5, 0, 1.0, 0, 0)], "oracle") is None
    last, best, areas = exit_sweep.operating_points(fixed() + better, margin=0.5)
    # within +0.5 of the last exit (WER 10): only the policy's deepest point (WER 8)
    assert best["entropy"].avg_depth == pytest.approx(1.0) and areas["entropy"] == pytest.approx(-2.0)
    md = exit_sweep.markdown({"test": (last, best, areas)}, 0.5, "t")
    assert "| test | entropy | 3 | 1.000 | 0.000 | 0.00 | 8.0 | 10.0 | -2.00 |" in md


def test_thresholds_chosen_on_dev_are_applied_to_test(decoded, tmp_path):
    """--choose_on dev: each policy's cheapest threshold within the margin on dev is replayed on
    test, whatever test's own best would be."""
    import shutil

    data, dec = decoded
    dev = dec.parent / "dev"
    shutil.copytree(dec, dev)
    md = tmp_path / "sweep.md"
    exit_sweep.main([str(dec), str(dev), "--data_dir", str(data), "--data_dir", str(data), "--num_layers", "6",
                     "--choose_on", "dev", "--output_md", str(md)])
    text = md.read_text()
    assert "Thresholds chosen on dev (its cheapest within the margin), applied to the other sets:" in text
    dev_rows = {r.policy: r for r in exit_sweep.read_tsv(dev / "exit_sweep.tsv")}
    _, best, _ = exit_sweep.operating_points(exit_sweep.read_tsv(dev / "exit_sweep.tsv"), 0.5)
    test_rows = [r for r in exit_sweep.read_tsv(dec / "exit_sweep.tsv") if r.policy.endswith("@chosen")]
    assert {r.policy for r in test_rows} == {f"{p}@chosen" for p, r in best.items() if r and p != "oracle"}
    for r in test_rows:
        assert r.threshold == pytest.approx(best[r.policy[:-7]].threshold)
        assert f"| test | {r.policy[:-7]} | {r.threshold:.4g} | {r.avg_depth:.3f} |" in text
    assert not any(p.endswith("@chosen") for p in dev_rows)  # nothing is replayed on dev itself
    with pytest.raises(SystemExit):
        exit_sweep.main([str(dec), "--data_dir", str(data), "--num_layers", "6", "--choose_on", "valid"])
