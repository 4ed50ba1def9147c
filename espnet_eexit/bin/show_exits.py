"""Print the exit layers (and depth) of a trained early-exit model, for shell recipes.

    python -m espnet_eexit.bin.show_exits exp/asr_train/config.yaml            # -> 2 4 6
    python -m espnet_eexit.bin.show_exits --num_layers exp/asr_train/config.yaml  # -> 6
"""
import argparse
import sys
from pathlib import Path
from typing import List, Tuple

import yaml

from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.registration import ENCODERS, load_class


def exits_of_config(config: dict) -> Tuple[List[int], int]:
    """``(exit_layers, num_layers)`` of an ESPnet ASR training config (a parsed config.yaml)."""
    name = str(config.get("encoder")).lower()
    if name not in ENCODERS:
        raise EarlyExitConfigError(
            f"encoder: {config.get('encoder')} is not an early-exit encoder "
            f"(expected one of {', '.join(ENCODERS)})"
        )
    # Only the encoder's module is imported: much faster than ESPnet's whole ASR task.
    from espnet2.utils.get_default_kwargs import get_default_kwargs

    from espnet_eexit.encoder.early_exit import validate_exit_layers

    cls = load_class(ENCODERS[name])
    conf = {**get_default_kwargs(cls), **(config.get("encoder_conf") or {})}
    num_layers = cls.layers_in_config(conf)
    exits = conf.get("exit_layers")
    if exits is None:
        exits = cls.default_exit_layers(num_layers)
    return validate_exit_layers(exits, num_layers), num_layers


def exits_of_config_file(config: Path) -> Tuple[List[int], int]:
    """:func:`exits_of_config` of a config.yaml written by asr_train."""
    return exits_of_config(yaml.safe_load(Path(config).read_text()))


def main(cmd=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="config.yaml written by asr_train")
    parser.add_argument("--num_layers", action="store_true", help="print the number of layers instead")
    args = parser.parse_args(cmd)
    if not args.config.is_file():
        parser.error(f"config not found: {args.config}")
    try:
        exits, num_layers = exits_of_config_file(args.config)
    except (EarlyExitConfigError, OSError) as e:  # OSError: a backbone's config unreadable
        parser.error(f"{args.config}: {e}")
    print(num_layers if args.num_layers else " ".join(map(str, exits)))


if __name__ == "__main__":
    sys.exit(main())
