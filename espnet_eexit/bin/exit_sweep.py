"""Sweep exit-policy thresholds: WER vs average encoder depth, from one all-exit decoding pass.

    python -m espnet_eexit.bin.exit_sweep --data_dir dump/raw/test --num_layers 12 \
        [--cleaner none] [--hyp_cleaner none] \
        exp/asr/decode_ctc/test          # holds exit<k>/{text,confidence} (asr_inference --all_exits)

A policy's decision at exit k depends only on exit k's posteriors, so for every threshold the
exit each utterance would take (the first exit whose confidence passes it; else the last) and the
hypothesis it would produce are read from the per-exit decodings and confidences, without
re-decoding. Each point is scored as stage 13 scores (:mod:`espnet_eexit.scoring`: the same
cleaners, ESPnet's word tokenizer, sclite). Also scored: every fixed exit, and
the ``oracle`` curve (needs references, for analysis only): each utterance takes the shallowest
exit with at most ``t`` more word errors than the last exit (t = 0, 1, 2, ...).

Writes ``<dir>/exit_sweep.tsv`` (policy, threshold, avg_depth, wer, ...), ``<dir>/exit_sweep.png``
(one curve per policy, fixed exits as points, the oracle curve) and, with ``--output_md``, a table:
per policy, the cheapest threshold whose WER is within ``--wer_margin`` (absolute) of the last exit.
Average depth = mean layers computed per utterance / L; real dynamic decoding
(``asr_inference --exit_policy``) measures the same with hooks.
"""
import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from espnet_eexit.datadir import read_kaldi_text
from espnet_eexit.exit_policy import CONFIDENCE_POLICIES
from espnet_eexit.scoring import WordScorer, find_sclite, read_utt2spk

# Higher value = more confident, except for entropy.
_LOWER_IS_CONFIDENT = {"entropy"}


class SweepPoint(NamedTuple):
    policy: str
    threshold: float
    avg_depth: float  # mean layers computed / L
    mean_exit: float  # mean exit layer
    wer: float
    errors: int
    words: int


def read_confidence(path: Path) -> Dict[str, Dict[str, float]]:
    """``utt entropy max_posterior nbest_posterior agreement`` lines ('-' = not available -> NaN;
    files written before ``agreement`` existed lack its column: NaN)."""
    out = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (len(CONFIDENCE_POLICIES), 1 + len(CONFIDENCE_POLICIES)):
            raise ValueError(f"{path}: bad line {line!r} (expected utt + {len(CONFIDENCE_POLICIES)} values)")
        values = {p: (math.nan if v == "-" else float(v)) for p, v in zip(CONFIDENCE_POLICIES, fields[1:])}
        out[fields[0]] = {p: values.get(p, math.nan) for p in CONFIDENCE_POLICIES}
    return out


def passes(policy: str, value: float, threshold: float) -> bool:
    if math.isnan(value):
        return False
    return value <= threshold if policy in _LOWER_IS_CONFIDENT else value >= threshold


def choose_exits(policy, threshold, keys, layers, conf) -> Dict[str, int]:
    """The exit every utterance takes under ``policy`` at ``threshold``."""
    chosen = {}
    for key in keys:
        chosen[key] = layers[-1]
        for k in layers[:-1]:
            if passes(policy, conf[k][key][policy], threshold):
                chosen[key] = k
                break
    return chosen


def word_errors(ref_words: Sequence[str], hyp_words: Sequence[str]) -> int:
    import editdistance

    return int(editdistance.eval(list(ref_words), list(hyp_words)))


def thresholds_for(policy: str, values: np.ndarray, points: int) -> List[float]:
    """Thresholds spanning 'everyone stops at the first exit' to 'everyone goes to the last'."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return []
    qs = np.unique(np.quantile(values, np.linspace(0.0, 1.0, points)))
    eps = 1e-6
    ends = [values.min() - eps, values.max() + eps]
    return sorted(set(float(round(q, 6)) for q in list(qs) + ends))


def read_exit_decodings(decode_dir: Path):
    """An all-exits decoding (``asr_inference --all_exits``): its exit layers (sorted), and per
    exit ``{utt: text}`` and ``{utt: {measure: value}}`` (:func:`read_confidence`).
    FileNotFoundError naming what is missing."""
    layers = sorted(int(p.name[len("exit"):]) for p in decode_dir.glob("exit*") if p.is_dir()
                    and p.name[len("exit"):].isdigit())
    if not layers:
        raise FileNotFoundError(f"{decode_dir}: no exit<k>/ directories (run asr_inference --all_exits)")
    texts: Dict[int, Dict[str, str]] = {}
    conf: Dict[int, Dict[str, Dict[str, float]]] = {}
    for k in layers:
        for name in ("text", "confidence"):
            if not (decode_dir / f"exit{k}" / name).is_file():
                raise FileNotFoundError(f"{decode_dir / f'exit{k}' / name} is missing")
        texts[k] = read_kaldi_text(decode_dir / f"exit{k}" / "text")
        conf[k] = read_confidence(decode_dir / f"exit{k}" / "confidence")
    return layers, texts, conf


def sweep(decode_dir: Path, num_layers: int, scorer: WordScorer,
          points: int = 25, oracle_max: int = 5, controller=None,
          chosen_thresholds: Optional[Dict[str, float]] = None) -> List[SweepPoint]:
    """Every policy's points (and the ``learned`` one's with a fitted ``controller``).

    ``chosen_thresholds`` (``{policy: threshold}``, chosen on another set) adds each policy's point
    at that threshold, marked by the policy name ``<policy>@chosen``.
    """
    layers, texts, conf = read_exit_decodings(decode_dir)
    keys = scorer.keys
    missing = [key for key in keys if any(key not in conf[k] for k in layers)]
    if missing:
        raise ValueError(f"{decode_dir}: {len(missing)} utterances of the references have no "
                         f"decoding/confidence, e.g. {missing[0]}")

    def point(policy, threshold, chosen):
        result = scorer.score({key: texts[chosen[key]].get(key, "") for key in keys})
        mean_exit = float(np.mean([chosen[key] for key in keys]))
        return SweepPoint(policy, threshold, mean_exit / num_layers, mean_exit,
                          100.0 * result.errors / max(result.units, 1), result.errors, result.units)

    policies = list(CONFIDENCE_POLICIES)
    if controller is not None:
        from espnet_eexit.exit_controller import feature_matrix

        controller.check_model(layers, num_layers, "--controller")
        for k in layers[:-1]:
            features = feature_matrix({m: [conf[k][key][m] for key in keys] for m in CONFIDENCE_POLICIES},
                                      k / num_layers)
            for key, p in zip(keys, controller.probability(features)):
                conf[k][key]["learned"] = float(p)  # NaN features give NaN: that utterance goes on
        policies.append("learned")
    out = [point("fixed", k, {key: k for key in keys}) for k in layers]
    for policy in policies:
        values = np.array([conf[k][key][policy] for k in layers[:-1] for key in keys], dtype=float)
        for t in thresholds_for(policy, values, points):
            out.append(point(policy, t, choose_exits(policy, t, keys, layers, conf)))
        if chosen_thresholds and policy in chosen_thresholds:
            t = chosen_thresholds[policy]
            out.append(point(f"{policy}@chosen", t, choose_exits(policy, t, keys, layers, conf)))
    # oracle: shallowest exit with at most t more word errors than the last exit
    errs = {k: {key: word_errors(scorer.ref_words[key], scorer.hyp_words(texts[k].get(key, "")))
                for key in keys} for k in layers}
    for t in range(oracle_max + 1):
        chosen = {key: next(k for k in layers if errs[k][key] <= errs[layers[-1]][key] + t)
                  for key in keys}
        out.append(point("oracle", t, chosen))
    return out


def write_tsv(path: Path, rows: Sequence[SweepPoint]) -> None:
    lines = ["\t".join(SweepPoint._fields)]
    lines += ["\t".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def read_tsv(path: Path) -> List[SweepPoint]:
    """The rows :func:`write_tsv` wrote."""
    lines = path.read_text().splitlines()
    if not lines or lines[0].split("\t") != list(SweepPoint._fields):
        raise ValueError(f"{path}: not an exit_sweep.tsv (header {lines[:1]})")
    rows = []
    for line in lines[1:]:
        policy, threshold, depth, mean_exit, wer, errors, words = line.split("\t")
        rows.append(SweepPoint(policy, float(threshold), float(depth), float(mean_exit), float(wer),
                               int(errors), int(words)))
    return rows


def plot(path: Path, rows: Sequence[SweepPoint], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for policy in list(CONFIDENCE_POLICIES) + ["learned", "oracle"]:
        pts = sorted((r.avg_depth, r.wer) for r in rows if r.policy == policy)
        if pts:
            style = "k--" if policy == "oracle" else "-"
            ax.plot(*zip(*pts), style, marker=".", label=policy)
    fixed = [(r.avg_depth, r.wer, int(r.threshold)) for r in rows if r.policy == "fixed"]
    ax.scatter([d for d, _, _ in fixed], [w for _, w, _ in fixed], c="red", zorder=5, label="fixed exits")
    for d, w, k in fixed:
        ax.annotate(str(k), (d, w), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("average encoder depth (layers computed / L)")
    ax.set_ylabel("WER (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curve(points: Sequence[SweepPoint]):
    """(depths, WERs) sorted by depth, WERs at one depth averaged: the curve the plot draws."""
    by_depth: Dict[float, List[float]] = {}
    for r in points:
        by_depth.setdefault(round(r.avg_depth, 9), []).append(r.wer)
    depths = np.array(sorted(by_depth))
    return depths, np.array([np.mean(by_depth[d]) for d in depths])


def area_vs_fixed(rows: Sequence[SweepPoint], policy: str) -> Optional[float]:
    """Area between ``policy``'s WER-vs-depth curve and the fixed exits' (both piecewise linear),
    over the depths both cover, divided by that depth range: the mean WER difference (absolute
    points) at equal average depth. Negative = the policy beats stopping everyone at one depth.
    None when the two curves share no depth range."""
    fd, fw = _curve([r for r in rows if r.policy == "fixed"])
    pd, pw = _curve([r for r in rows if r.policy == policy])
    if len(fd) == 0 or len(pd) == 0:
        return None
    lo, hi = max(fd[0], pd[0]), min(fd[-1], pd[-1])
    if hi - lo < 1e-9:
        return None
    # both curves are linear between their points: their difference is linear between the union
    grid = np.unique(np.concatenate([[lo, hi], fd[(fd > lo) & (fd < hi)], pd[(pd > lo) & (pd < hi)]]))
    gap = np.interp(grid, pd, pw) - np.interp(grid, fd, fw)
    area = float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(grid)))
    return area / (hi - lo)


def operating_points(rows: Sequence[SweepPoint], margin: float):
    """The last exit's point; per policy, the cheapest point whose WER <= last-exit WER + margin
    (None if none); per policy, :func:`area_vs_fixed`."""
    fixed = [r for r in rows if r.policy == "fixed"]
    last = max(fixed, key=lambda r: r.threshold)
    best, areas = {}, {}
    present = {r.policy for r in rows}
    for policy in [p for p in (*CONFIDENCE_POLICIES, "learned", "oracle") if p in present]:
        ok = [r for r in rows if r.policy == policy and r.wer <= last.wer + margin + 1e-9]
        best[policy] = min(ok, key=lambda r: (r.avg_depth, r.wer)) if ok else None
        areas[policy] = area_vs_fixed(rows, policy)
    return last, best, areas


def markdown(tables, margin: float, title: str) -> str:
    lines = [f"### {title}", "",
             f"Cheapest threshold whose WER is within +{margin:g} (absolute) of the last exit "
             "(exit_sweep.tsv; depth = mean layers computed / L).", "",
             "Layers saved = 1 - avg depth. vs fixed = the area between the policy's WER-vs-depth "
             "curve and the fixed exits' (linear between exits) over the depths both cover, per unit "
             "of depth: the mean WER difference at equal depth (negative = better than a fixed depth).",
             "",
             "| test set | policy | threshold | avg depth | layers saved | mean exit | WER | last-exit WER | vs fixed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for test, (last, best, areas) in tables.items():
        for policy, r in best.items():
            area = "-" if areas.get(policy) is None else f"{areas[policy]:+.2f}"
            if r is None:
                lines.append(f"| {test} | {policy} | none reaches it | - | - | - | - | {last.wer:.1f} | {area} |")
            else:
                thr = f"{int(r.threshold)} words" if policy == "oracle" else f"{r.threshold:.4g}"
                lines.append(f"| {test} | {policy} | {thr} | {r.avg_depth:.3f} | {1 - r.avg_depth:.3f} "
                             f"| {r.mean_exit:.2f} | {r.wer:.1f} | {last.wer:.1f} | {area} |")
    return "\n".join(lines) + "\n"


def chosen_markdown(applied, tables, choose_on: str) -> str:
    """The thresholds chosen on ``choose_on``, applied to the other sets."""
    lines = ["", f"Thresholds chosen on {choose_on} (its cheapest within the margin), applied to the other sets:",
             "", "| test set | policy | threshold | avg depth | layers saved | WER | last-exit WER |",
             "|---|---|---|---|---|---|---|"]
    for test, rows in applied.items():
        last = tables[test][0]
        for r in rows:
            lines.append(f"| {test} | {r.policy[:-len('@chosen')]} | {r.threshold:.4g} | {r.avg_depth:.3f} "
                         f"| {1 - r.avg_depth:.3f} | {r.wer:.1f} | {last.wer:.1f} |")
    return "\n".join(lines) + "\n"


def main(cmd: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decode_dirs", type=Path, nargs="+",
                        help="<decode_dir>/<test_set> directories holding exit<k>/{text,confidence}")
    parser.add_argument("--data_dir", type=Path, action="append", required=True,
                        help="Kaldi data dir with the references (one per decode dir, same order)")
    parser.add_argument("--num_layers", type=int, required=True, help="L, the encoder's layers")
    parser.add_argument("--cleaner", default="none", help="text cleaner of the references (as stage 13)")
    parser.add_argument("--hyp_cleaner", default="none",
                        help="text cleaner of the hypotheses (as stage 13; 'upper' for lower-case models)")
    parser.add_argument("--points", type=int, default=25, help="thresholds per policy")
    parser.add_argument("--wer_margin", type=float, default=0.5)
    parser.add_argument("--choose_on", default=None,
                        help="a swept set (by its directory name, e.g. dev) whose cheapest threshold per "
                        "policy within --wer_margin is then applied to the other sets and reported")
    parser.add_argument("--controller", type=Path, default=None,
                        help="add the learned policy's curve (a controller fitted on dev: fit_exit_controller)")
    parser.add_argument("--title", default="exit policy sweep")
    parser.add_argument("--output_md", type=Path, default=None, help="write the operating-point table")
    parser.add_argument("--update_md", type=Path, default=None,
                        help="also put the table into this Markdown file (section keyed by --title)")
    args = parser.parse_args(cmd)
    if len(args.data_dir) != len(args.decode_dirs):
        parser.error(f"{len(args.decode_dirs)} decode dirs but {len(args.data_dir)} --data_dir")
    sclite = find_sclite()
    if sclite is None:
        parser.error("sclite not found (Debian package sctk; tools/install.sh installs it)")
    controller = None
    if args.controller is not None:
        from espnet_eexit.exit_controller import ExitController

        try:
            controller = ExitController.load(args.controller)
        except ValueError as e:
            parser.error(str(e))
    tables = {}
    pairs = list(zip(args.decode_dirs, args.data_dir))
    chosen = None
    if args.choose_on is not None:
        names = [d.name for d, _ in pairs]
        if args.choose_on not in names:
            parser.error(f"--choose_on {args.choose_on}: not one of the swept sets {names}")
        pairs.sort(key=lambda pair: pair[0].name != args.choose_on)  # that set first
    applied = {}
    for decode_dir, data_dir in pairs:
        if not (data_dir / "text").is_file():
            parser.error(f"missing file: {data_dir / 'text'}")
        refs = read_kaldi_text(data_dir / "text")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                utt2spk = read_utt2spk(data_dir, refs) if (data_dir / "utt2spk").is_file() else None
                scorer = WordScorer(refs, sclite, Path(tmp), cleaner=args.cleaner,
                                    hyp_cleaner=args.hyp_cleaner, utt2spk=utt2spk)
                rows = sweep(decode_dir, args.num_layers, scorer, points=args.points, controller=controller,
                             chosen_thresholds=chosen)
            except (FileNotFoundError, ValueError) as e:
                parser.error(str(e))
        write_tsv(decode_dir / "exit_sweep.tsv", rows)
        plot(decode_dir / "exit_sweep.png", rows, f"{args.title}: {decode_dir.name}")
        tables[decode_dir.name] = operating_points(rows, args.wer_margin)
        if args.choose_on is not None and chosen is None:
            chosen = {p: r.threshold for p, r in tables[decode_dir.name][1].items()
                      if r is not None and p != "oracle"}
        elif chosen is not None:
            applied[decode_dir.name] = [r for r in rows if r.policy.endswith("@chosen")]
        print(f"{decode_dir}/exit_sweep.tsv: {len(rows)} points; exit_sweep.png", file=sys.stderr)
    # Test sets swept by an earlier run of the same decoding keep their rows in the table.
    for decode_dir in args.decode_dirs:
        for earlier in sorted(decode_dir.parent.glob("*/exit_sweep.tsv")):
            if earlier.parent.name not in tables:
                tables[earlier.parent.name] = operating_points(read_tsv(earlier), args.wer_margin)
    tables = dict(sorted(tables.items()))
    body = markdown(tables, args.wer_margin, args.title)
    if applied:
        body += chosen_markdown(applied, tables, args.choose_on)
    if args.output_md:
        args.output_md.write_text(body)
    if args.update_md:
        from espnet_eexit.bin.exit_results import update_section

        update_section(args.update_md, f"sweep {args.title}", body)
    print(body)


if __name__ == "__main__":
    main()
