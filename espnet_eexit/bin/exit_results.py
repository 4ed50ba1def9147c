"""Collect sclite scores of every exit into a Markdown table and a WER-per-exit plot.

    python -m espnet_eexit.bin.exit_results --num_layers 12 \
        --output_md RESULTS.md --output_png exp/asr/wer_per_exit.png exp/asr/decode_ctc

Reads ``<decode_dir>/<test_set>/exit<k>/score_{wer,cer}/result.txt`` (sclite ``-o all``) for every
test set and exit found, and writes one table: rows = exits (layer k, relative depth k/L),
columns = WER and CER per test set.
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, Optional

from espnet_eexit.scoring import read_sclite


def collect(decode_dir: Path) -> Dict[str, Dict[int, Dict[str, float]]]:
    """``{test_set: {exit_layer: {"wer": x, "cer": y}}}`` for every scored exit."""
    results: Dict[str, Dict[int, Dict[str, float]]] = {}
    for result in sorted(decode_dir.glob("*/exit*/score_*/result.txt")):
        exit_dir = result.parent.parent
        layer = int(exit_dir.name[len("exit"):])
        metric = result.parent.name[len("score_"):]
        results.setdefault(exit_dir.parent.name, {}).setdefault(layer, {})[metric] = read_sclite(result).error_rate
    return results


def collect_policies(decode_dir: Path) -> Dict[str, Dict[str, Dict[str, str]]]:
    """``{test_set: {policy_dir: {"wer": .., "cer": .., "relative_depth": .., ...}}}`` for every
    scored dynamic-exit run (``<test_set>/policy_*/``, with its measured ``exit_info``)."""
    from espnet_eexit.exit_info import read_exit_info

    results: Dict[str, Dict[str, Dict[str, str]]] = {}
    for info in sorted(decode_dir.glob("*/policy_*/exit_info")):
        run = info.parent
        entry = dict(read_exit_info(info))
        for result in sorted(run.glob("score_*/result.txt")):
            entry[result.parent.name[len("score_"):]] = f"{read_sclite(result).error_rate:.1f}"
        results.setdefault(run.parent.name, {})[run.name] = entry
    return results


def policy_markdown(results) -> str:
    """Rows = dynamic-exit runs; WER/CER and the encoder depth measured with hooks per test set."""
    tests = sorted(results)
    runs = sorted({r for per_test in results.values() for r in per_test})
    head = "| policy | " + " | ".join(f"{t} WER | {t} CER | {t} depth" for t in tests) + " |"
    rows = []
    for run in runs:
        cells = []
        for t in tests:
            e = results[t].get(run, {})
            cells += [e.get("wer", "-"), e.get("cer", "-"), e.get("relative_depth", "-")]
        name = results[tests[0]].get(run, {}).get("exit_policy", run) if tests else run
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(["Dynamic exit (encoder depth = layers computed per utterance / L, counted "
                      "with hooks):", "", head, "|" + "---|" * (1 + 3 * len(tests)), *rows, ""])


def markdown(results, num_layers: int, title: str) -> str:
    tests = sorted(results)
    layers = sorted({k for per_test in results.values() for k in per_test})
    head = "| exit (layer) | relative depth | " + " | ".join(
        f"{t} WER | {t} CER" for t in tests) + " |"
    rule = "|" + "---|" * (2 + 2 * len(tests))
    rows = []
    for k in layers:
        cells = []
        for t in tests:
            scores = results[t].get(k, {})
            cells += [f"{scores['wer']:.1f}" if "wer" in scores else "-",
                      f"{scores['cer']:.1f}" if "cer" in scores else "-"]
        rows.append(f"| {k} | {k / num_layers:.2f} | " + " | ".join(cells) + " |")
    return "\n".join([f"### {title}", "", head, rule, *rows, ""])


def update_section(path: Path, key: str, body: str) -> None:
    """Put ``body`` between ``<!-- results: key -->`` markers in ``path``, replacing an older one."""
    begin, end = f"<!-- results: {key} -->", f"<!-- end results: {key} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# RESULTS\n"
    section = f"{begin}\n{body.strip()}\n{end}\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        rest = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + rest if rest else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def plot(results, num_layers: int, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for test, per_exit in sorted(results.items()):
        layers = sorted(k for k in per_exit if "wer" in per_exit[k])
        ax.plot(layers, [per_exit[k]["wer"] for k in layers], marker="o", label=test)
    ax.set_xticks(sorted({k for per_exit in results.values() for k in per_exit}))
    ax.set_xlabel(f"exit layer (of {num_layers})")
    ax.set_ylabel("WER (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(cmd: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decode_dir", type=Path)
    parser.add_argument("--num_layers", type=int, required=True)
    parser.add_argument("--title", default=None)
    parser.add_argument("--output_md", type=Path, default=None, help="write the table here too")
    parser.add_argument("--update_md", type=Path, default=None,
                        help="add or replace this experiment's section (keyed by --title) in a "
                        "recipe's RESULTS.md, leaving other sections as they are")
    parser.add_argument("--notes", default="", help="Markdown put above the table (run facts)")
    parser.add_argument("--output_png", type=Path, default=None)
    args = parser.parse_args(cmd)
    if not args.decode_dir.is_dir():
        parser.error(f"decode dir not found: {args.decode_dir}")
    results = collect(args.decode_dir)
    if not results:
        parser.error(f"no scores under {args.decode_dir}/<test_set>/exit<k>/score_*/result.txt")
    title = args.title or f"{args.decode_dir}"
    table = markdown(results, args.num_layers, title)
    policies = collect_policies(args.decode_dir)
    if policies:
        table += "\n" + policy_markdown(policies)
    if args.notes:
        table = table.replace("\n\n", f"\n\n{args.notes.strip()}\n\n", 1)
    print(table)
    if args.output_md:
        args.output_md.write_text(table)
    if args.update_md:
        update_section(args.update_md, title, table)
    if args.output_png:
        plot(results, args.num_layers, args.output_png, title)


if __name__ == "__main__":
    sys.exit(main())
