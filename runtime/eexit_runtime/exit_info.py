"""The ``exit_info`` summary of a decoding run: one ``key value`` pair per line.

Written by ``espnet_eexit.bin.asr_inference`` (one per job) and merged over jobs by
``python -m espnet_eexit.exit_info OUT PART...``. Keys:

``exit_layer`` (fixed exit) or ``exit_policy`` (policy description), ``num_layers``, ``utterances``,
``layers_computed_per_utterance`` (encoder layer calls per utterance, counted with hooks),
``relative_depth`` (the same / L), ``encoder_layers_saved`` (1 - relative depth), for policies
``mean_exit_layer`` and ``exit_counts`` (``layer:count ...``), and for a policy that reads an
attention decoder (a model without CTC heads) ``decodings_per_utterance``: the exits each
utterance was decoded at (every exit it passed), a cost the encoder depth does not show.
"""
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ExitInfo = Dict[str, str]


def format_exit_info(info: ExitInfo) -> str:
    return "".join(f"{key} {value}\n" for key, value in info.items())


def read_exit_info(path: Path) -> ExitInfo:
    info: ExitInfo = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(" ")
        if key:
            info[key] = value.strip()
    return info


def summarise(
    num_layers: int,
    utterances: int,
    layers_computed: float,
    exit_layer: Optional[int] = None,
    policy: Optional[str] = None,
    exit_counts: Optional[Dict[int, int]] = None,
    decodings: Optional[int] = None,
) -> ExitInfo:
    """The summary of ``utterances`` decoded with ``layers_computed`` layer calls in all."""
    per_utt = layers_computed / max(utterances, 1)
    info: ExitInfo = {}
    if policy is not None:
        info["exit_policy"] = policy
        counts = exit_counts or {}
        mean_exit = sum(k * n for k, n in counts.items()) / max(utterances, 1)
        info["mean_exit_layer"] = f"{mean_exit:.3f}"
        info["exit_counts"] = " ".join(f"{k}:{n}" for k, n in sorted(counts.items()))
    else:
        info["exit_layer"] = str(exit_layer)
    info.update(
        num_layers=str(num_layers),
        utterances=str(utterances),
        layers_computed_per_utterance=f"{per_utt:.3f}",
        relative_depth=f"{per_utt / num_layers:.3f}",
        encoder_layers_saved=f"{1 - per_utt / num_layers:.3f}",
    )
    if decodings is not None:
        info["decodings_per_utterance"] = f"{decodings / max(utterances, 1):.3f}"
    return info


def merge_exit_info(parts: Sequence[ExitInfo]) -> ExitInfo:
    """Utterance-weighted merge of the summaries of several jobs of one decoding run."""
    if not parts:
        raise ValueError("no exit_info to merge")
    utts = sum(int(p["utterances"]) for p in parts)
    layers = sum(float(p["layers_computed_per_utterance"]) * int(p["utterances"]) for p in parts)
    counts: Dict[int, int] = {}
    for p in parts:
        for item in p.get("exit_counts", "").split():
            k, n = item.split(":")
            counts[int(k)] = counts.get(int(k), 0) + int(n)
    first = parts[0]
    decodings = None
    if "decodings_per_utterance" in first:
        decodings = round(sum(float(p["decodings_per_utterance"]) * int(p["utterances"]) for p in parts))
    return summarise(
        int(first["num_layers"]),
        utts,
        layers,
        exit_layer=int(first["exit_layer"]) if "exit_layer" in first else None,
        policy=first.get("exit_policy"),
        exit_counts=counts if "exit_policy" in first else None,
        decodings=decodings,
    )


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        sys.exit("usage: python -m espnet_eexit.exit_info OUT PART [PART...]")
    missing = [p for p in argv[1:] if not Path(p).is_file()]
    if missing:
        sys.exit(f"exit_info: missing {', '.join(missing)}")
    merged = merge_exit_info([read_exit_info(Path(p)) for p in argv[1:]])
    Path(argv[0]).write_text(format_exit_info(merged))


if __name__ == "__main__":
    main()
