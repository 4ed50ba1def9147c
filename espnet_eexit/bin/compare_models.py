"""Per-exit WER/CER of several models side by side (the paper's comparison table).

    python -m espnet_eexit.bin.compare_models --num_layers 12 --test_set test \
        --update_md RESULTS.md --output_png exp/compare.png \
        "early-exit=exp/asr_eexit/decode_ctc" \
        "single-exit=exp/asr_single_l2/decode_ctc" "single-exit=exp/asr_single_l12/decode_ctc" \
        "fine-tuned=exp/asr_ft/decode_ctc"

Each ``LABEL=DECODE_DIR`` is a decoding of one model (``<decode_dir>/<test_set>/exit<k>/score_*``
as stage 13 writes it). Decodings with the same label share a column: the single-exit baselines
of each depth, each contributing its one exit. Rows = exit layer k (depth k/L); cells = WER / CER.
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from espnet_eexit.bin.exit_results import collect, update_section

Columns = Dict[str, Dict[int, Dict[str, float]]]  # label -> exit -> {"wer": x, "cer": y}


def parse_pair(text: str) -> Tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL=DECODE_DIR")
    return label, Path(path)


def gather(pairs: List[Tuple[str, Path]], test_set: str) -> Columns:
    columns: Columns = {}
    for label, decode_dir in pairs:
        scores = collect(decode_dir).get(test_set)
        if not scores:
            raise FileNotFoundError(
                f"{decode_dir}/{test_set}/exit*/score_*/result.txt: no scored exit "
                f"(run stages 12-13 for that model first)"
            )
        column = columns.setdefault(label, {})
        for layer, metrics in scores.items():
            if layer in column:
                raise ValueError(f"label {label!r}: two decodings give exit {layer}")
            column[layer] = metrics
    return columns


def markdown(columns: Columns, num_layers: int, test_set: str) -> str:
    layers = sorted({k for column in columns.values() for k in column})
    head = "| exit (layer) | depth k/L | " + " | ".join(f"{label}: {test_set} WER / CER" for label in columns) + " |"
    rows = [head, "|---|---|" + "---|" * len(columns)]
    for k in layers:
        cells = []
        for column in columns.values():
            m = column.get(k)
            cells.append(f"{m['wer']:.1f} / {m['cer']:.1f}" if m and "cer" in m else
                         f"{m['wer']:.1f}" if m else "")
        rows.append(f"| {k} | {k / num_layers:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot(columns: Columns, num_layers: int, test_set: str, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, column in columns.items():
        layers = sorted(column)
        ax.plot([k / num_layers for k in layers], [column[k]["wer"] for k in layers], "o-", label=label)
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
    parser.add_argument("--num_layers", type=int, required=True, help="L, for the depth column")
    parser.add_argument("--test_set", default="test")
    parser.add_argument("--title", default="Early-exit vs single-exit vs fine-tuned")
    parser.add_argument("--update_md", type=Path, help="put the table into this Markdown file (section --title)")
    parser.add_argument("--output_png", type=Path, help="WER vs depth, one line per label")
    args = parser.parse_args(argv)
    try:
        columns = gather(args.pairs, args.test_set)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"compare_models: ERROR: {e}")
    table = markdown(columns, args.num_layers, args.test_set)
    print(table, end="")
    if args.update_md:
        update_section(args.update_md, args.title, f"## {args.title}\n\n{table}")
    if args.output_png:
        plot(columns, args.num_layers, args.test_set, args.output_png)


if __name__ == "__main__":
    main()
