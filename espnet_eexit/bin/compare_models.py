"""Per-exit WER/CER of several models side by side (the paper's comparison table).

    python -m espnet_eexit.bin.compare_models --num_layers 12 --test_set test \
        --update_md RESULTS.md --output_png exp/compare.png \
        "early-exit=exp/asr_eexit/decode_ctc" \
        "single-exit=exp/asr_single_l2/decode_ctc" "single-exit=exp/asr_single_l12/decode_ctc" \
        "fine-tuned=exp/asr_ft/decode_ctc"

Each ``LABEL=DECODE_DIR`` is a decoding of one model (``<decode_dir>/<test_set>/exit<k>/score_*``
as stage 13 writes it). Decodings with the same label share a column: the single-exit baselines
of each depth, each contributing its one exit. Rows = encoder depth k/L; cells = WER / CER.

Without ``--num_layers`` each model's L is read from its config.yaml (``<decode_dir>/..``), so
backbones of different depths share one table (e.g. a 12-layer Conformer's exit 6 and a 4-layer
Whisper's exit 2 are both depth 0.50). The training time of each model, summed over the epochs of
ESPnet's ``train.log`` (train + valid) and the rotated logs of a resumed training's earlier
runs (``espnet_eexit.bin.training_time``: each epoch once), is listed under the table: the
comparison is meant at the same training budget, and this says whether it was.
"""
import argparse
import sys
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_eexit.bin.exit_results import collect, update_section
from espnet_eexit.bin.training_time import training_time

Exit = Tuple[int, int]  # (exit layer k, encoder layers L)
Columns = Dict[str, Dict[Exit, Dict[str, float]]]  # label -> exit -> {"wer": x, "cer": y}



def parse_pair(text: str) -> Tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL=DECODE_DIR")
    return label, Path(path)


def model_layers(decode_dir: Path) -> int:
    """L of the model that ``decode_dir`` decoded (its config.yaml is one level up, as asr.sh lays
    out ``exp/asr_<tag>/<decode_dir>``)."""
    from espnet_eexit.bin.show_exits import exits_of_config_file

    config = decode_dir.parent / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: missing (the model's config, for its number of layers; "
                                f"or give --num_layers)")
    return exits_of_config_file(config)[1]


def gather(pairs: List[Tuple[str, Path]], test_set: str, num_layers: Optional[int]) -> Columns:
    columns: Columns = {}
    for label, decode_dir in pairs:
        scores = collect(decode_dir).get(test_set)
        if not scores:
            raise FileNotFoundError(
                f"{decode_dir}/{test_set}/exit*/score_*/result.txt: no scored exit "
                f"(run stages 12-13 for that model first)"
            )
        layers = num_layers or model_layers(decode_dir)
        column = columns.setdefault(label, {})
        for k, metrics in scores.items():
            if (k, layers) in column:
                raise ValueError(f"label {label!r}: two decodings give exit {k}")
            column[(k, layers)] = metrics
    return columns


def _cell(metrics: Dict[str, float]) -> str:
    return f"{metrics['wer']:.1f} / {metrics['cer']:.1f}" if "cer" in metrics else f"{metrics['wer']:.1f}"


def markdown(columns: Columns, test_set: str) -> str:
    exits = {e for column in columns.values() for e in column}
    depths = sorted({Fraction(k, n) for k, n in exits})
    layer_counts = {n for _, n in exits}
    same_l = len(layer_counts) == 1
    head = ("| exit (layer) | depth k/L | " if same_l else "| depth k/L | ") + " | ".join(
        f"{label}: {test_set} WER / CER" for label in columns) + " |"
    rows = [head, ("|---|---|" if same_l else "|---|") + "---|" * len(columns)]
    for depth in depths:
        cells = []
        for column in columns.values():
            hits = [(e, m) for e, m in sorted(column.items()) if Fraction(*e) == depth]
            # with mixed depths the cell says which exit of how many layers it is
            cells.append(", ".join(_cell(m) if same_l else f"{_cell(m)} (exit {k}/{n})"
                                   for (k, n), m in hits))
        first = f"| {depth * next(iter(layer_counts))} | " if same_l else "| "
        rows.append(f"{first}{float(depth):.2f} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def timing_markdown(pairs: List[Tuple[str, Path]]) -> str:
    """One line per model: its training time from train.log (empty when no log has epochs)."""
    rows = []
    for label, decode_dir in pairs:
        spent = training_time(decode_dir.parent)
        if spent is not None and spent.seconds is not None:
            rows.append(f"| {label} | `{decode_dir.parent.name}` | {spent.seconds / 60:.1f} |")
    if not rows:
        return ""
    return "\n".join(["", "Training time (ESPnet's per-epoch train + valid time in train.log and the "
                           "train.N.log of resumed runs, each epoch once: espnet_eexit.bin.training_time):", "",
                      "| column | model | training (min) |", "|---|---|---|", *rows, ""])


def plot(columns: Columns, test_set: str, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, column in columns.items():
        exits = sorted(column, key=lambda e: Fraction(*e))
        ax.plot([k / n for k, n in exits], [column[e]["wer"] for e in exits], "o-", label=label)
    ax.set_xlabel("encoder depth (exit layer / L)")
    ax.set_ylabel(f"{test_set} WER (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", type=parse_pair, metavar="LABEL=DECODE_DIR")
    parser.add_argument("--num_layers", type=int,
                        help="L of every model (default: each model's own, from <decode_dir>/../config.yaml)")
    parser.add_argument("--test_set", default="test")
    parser.add_argument("--title", default="Early-exit vs single-exit vs fine-tuned")
    parser.add_argument("--update_md", type=Path, help="put the table into this Markdown file (section --title)")
    parser.add_argument("--output_png", type=Path, help="WER vs depth, one line per label")
    args = parser.parse_args(argv)
    try:
        columns = gather(args.pairs, args.test_set, args.num_layers)
    except (FileNotFoundError, ValueError) as e:  # ValueError includes EarlyExitConfigError
        sys.exit(f"compare_models: ERROR: {e}")
    table = markdown(columns, args.test_set) + timing_markdown(args.pairs)
    print(table, end="")
    if args.update_md:
        update_section(args.update_md, args.title, f"## {args.title}\n\n{table}")
    if args.output_png:
        plot(columns, args.test_set, args.output_png)


if __name__ == "__main__":
    main()
