"""Check a recipe's exit options before any work is done (asr.sh calls it).

    # before stage 1: policy names and thresholds (no model needed)
    python -m espnet_eexit.bin.check_options --exit_policies "entropy:0.2 budget:0.5"
    # before decoding: the requested exits exist in the trained model
    python -m espnet_eexit.bin.check_options --config exp/asr/config.yaml --exit_layers "2 6"

Prints nothing and exits 0 when everything is valid; else one line naming the option and exits 2.
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_eexit.errors import EarlyExitConfigError


def check_policy_specs(specs: str) -> None:
    """Each ``policy:threshold`` of asr.sh's ``--exit_policies`` as ``asr_inference`` would take it."""
    from espnet_eexit.exit_policy import parse_policy_spec

    for spec in specs.split():
        name, _, value = spec.partition(":")
        if name == "fixed" or value.endswith("ms"):
            raise EarlyExitConfigError(
                f"--exit_policies {spec!r}: the recipe runs threshold policies (policy:threshold); "
                "every fixed exit is decoded anyway (exit<k>/), and a ms budget is for "
                "asr_inference --exit_budget_ms or the ONNX runtime")
        try:
            parse_policy_spec(spec).check_options()
        except EarlyExitConfigError as e:
            raise EarlyExitConfigError(f"--exit_policies: {e}")


def check_exit_layers(config: Path, exit_layers: str) -> None:
    from espnet_eexit.bin.show_exits import exit_layers_of_config_file

    exits = exit_layers_of_config_file(config)
    for value in exit_layers.split():
        if not value.isdigit() or int(value) not in exits:
            raise EarlyExitConfigError(
                f"--exit_layers {exit_layers!r}: {value} is not an exit of {config} (its exits: "
                f"{' '.join(map(str, exits))})")


def main(cmd: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exit_policies", default="", help='"policy:threshold ..." as asr.sh takes them')
    parser.add_argument("--exit_layers", default="", help='exits to decode, e.g. "2 6"')
    parser.add_argument("--config", type=Path, default=None, help="the trained model's config.yaml")
    args = parser.parse_args(cmd)
    if args.exit_layers and args.config is None:
        parser.error("--exit_layers needs --config (the trained model's config.yaml)")
    try:
        if args.exit_policies:
            check_policy_specs(args.exit_policies)
        if args.exit_layers:
            if not args.config.is_file():
                parser.error(f"config not found: {args.config}")
            check_exit_layers(args.config, args.exit_layers)
    except EarlyExitConfigError as e:
        parser.error(str(e))


if __name__ == "__main__":
    sys.exit(main())
