"""Print the exit layers (and depth) of a trained early-exit model, for shell recipes.

    python -m espnet_eexit.bin.show_exits exp/asr_train/config.yaml            # -> 2 4 6
    python -m espnet_eexit.bin.show_exits --num_layers exp/asr_train/config.yaml  # -> 6

Nothing is built. Exits the config lists (encoder_conf.exit_layers) are answered from it alone;
the number of layers of a pretrained backbone (wav2vec2/WavLM hf_model, whisper_model) comes from
its saved config.json when it is a local directory, else from the Hugging Face Hub (or its cache).
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import yaml

from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.registration import ENCODERS, load_class


def read_model_config(config: Path) -> dict:
    """The parsed config.yaml of a trained model, or one clear error naming the file."""
    config = Path(config)
    if not config.is_file():
        raise EarlyExitConfigError(f"{config}: no such file")
    try:
        parsed = yaml.safe_load(config.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise EarlyExitConfigError(f"{config}: not a YAML file ({type(e).__name__})") from e
    if not isinstance(parsed, dict):
        raise EarlyExitConfigError(f"{config}: not an ESPnet training config (no YAML mapping)")
    return parsed


def _encoder_class_and_conf(config: dict) -> Tuple[type, dict]:
    """The early-exit encoder class of an ASR training config and its complete ``encoder_conf``."""
    if "encoder" not in config:
        # ESPnet's TTS, LM, enhancement ... configs have no encoder (or call it otherwise)
        raise EarlyExitConfigError(
            f"no encoder: (model: {config.get('model')}): the config of another ESPnet task, not "
            "of an ASR model (asr_train's config.yaml)"
        )
    name = str(config.get("encoder")).lower()
    if name not in ENCODERS:
        raise EarlyExitConfigError(
            f"encoder: {config.get('encoder')} is not an early-exit encoder "
            f"(expected one of {', '.join(ENCODERS)}): a model of another project?"
        )
    # Only the encoder's module is imported: much faster than ESPnet's whole ASR task.
    from espnet2.utils.get_default_kwargs import get_default_kwargs

    cls = load_class(ENCODERS[name])
    return cls, {**get_default_kwargs(cls), **(config.get("encoder_conf") or {})}


def exits_of_config(config: dict) -> Tuple[List[int], int]:
    """``(exit_layers, num_layers)`` of an ESPnet ASR training config (a parsed config.yaml)."""
    from espnet_eexit.encoder.early_exit import validate_exit_layers

    cls, conf = _encoder_class_and_conf(config)
    num_layers = cls.layers_listed_in_config(conf)
    if num_layers is None:  # in a pretrained backbone's own config (a Hub id: may need the network)
        num_layers = cls.layers_in_config(conf)
    exits = conf.get("exit_layers")
    if exits is None:
        exits = cls.default_exit_layers(num_layers)
    return validate_exit_layers(exits, num_layers), num_layers


def exit_layers_of_config(config: dict) -> List[int]:
    """The exit layers of an ESPnet ASR training config. When it lists them (``encoder_conf.
    exit_layers``) they are answered from it: nothing is built, and a pretrained backbone's own
    config (a Hub id) is not read; then the layer count is checked only if the config (or a
    local backbone directory it names) gives it, as asr_train checked it when it built the model."""
    from espnet_eexit.encoder.early_exit import validate_exit_layers

    cls, conf = _encoder_class_and_conf(config)
    exits = conf.get("exit_layers")
    if exits is None:  # the backbone's default placement depends on its layer count
        return exits_of_config(config)[0]
    if isinstance(exits, (str, bytes)) or not hasattr(exits, "__iter__"):
        raise EarlyExitConfigError(f"encoder_conf.exit_layers={exits!r}: not a list of layer numbers")
    return validate_exit_layers(exits, cls.layers_listed_in_config(conf))


def max_input_seconds_of_config(config: dict) -> Optional[float]:
    """The longest input the model of an ASR training config takes (Whisper: 30 s), None if any."""
    cls, conf = _encoder_class_and_conf(config)
    return cls.max_input_seconds_in_config(conf)


def exits_of_config_file(config: Path) -> Tuple[List[int], int]:
    """:func:`exits_of_config` of a config.yaml written by asr_train (:func:`early_exit_model_config`);
    errors name the file."""
    return _of_config_file(exits_of_config, config)


def exit_layers_of_config_file(config: Path) -> List[int]:
    """:func:`exit_layers_of_config` of a config.yaml written by asr_train; errors name the file."""
    return _of_config_file(exit_layers_of_config, config)


def _of_config_file(read, config: Path):
    parsed = early_exit_model_config(config)
    try:
        return read(parsed)
    except EarlyExitConfigError as e:
        raise EarlyExitConfigError(f"{config}: {e}") from e


def early_exit_model_config(config: Path) -> dict:
    """The parsed config.yaml of an early-exit ASR model (one of our encoders and ``model:
    eexit``), checked before anything is built: a config of another project or ESPnet task gets
    one line naming the file, not a traceback from deep inside ESPnet's model builder."""
    parsed = read_model_config(config)
    try:
        _encoder_class_and_conf(parsed)
        if parsed.get("model") != "eexit":
            raise EarlyExitConfigError(
                f"model: {parsed.get('model')}, not eexit: not a model trained with this plugin"
            )
    except EarlyExitConfigError as e:
        raise EarlyExitConfigError(f"{config}: {e}") from e
    return parsed


def main(cmd=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="config.yaml written by asr_train")
    parser.add_argument("--num_layers", action="store_true", help="print the number of layers instead")
    args = parser.parse_args(cmd)
    try:
        if args.num_layers:
            print(exits_of_config_file(args.config)[1])
        else:  # listed exits are answered from the config alone
            print(" ".join(map(str, exit_layers_of_config_file(args.config))))
    except EarlyExitConfigError as e:
        parser.error(str(e))
    except OSError as e:  # a backbone's config unreadable
        parser.error(f"{args.config}: {e}")


if __name__ == "__main__":
    sys.exit(main())
