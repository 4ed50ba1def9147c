"""Padding masks for Hugging Face ``transformers`` layers called one by one (our exits).

The layers take the mask in the form of the attention implementation the config selects
(eager: additive float, sdpa: bool, ...); ``create_bidirectional_mask`` builds that form, and
returns None when no frame is padding (then no mask costs nothing).

Also :func:`layers_in_saved_config`: a saved backbone's layer count read from its ``config.json``
alone (no ``transformers``, no Hub).
"""
import json
import os
from typing import Optional

import torch


def layers_in_saved_config(directory: str, key: str) -> Optional[int]:
    """``key`` (the number of layers) of ``directory/config.json`` written by ``save_pretrained``;
    None if ``directory`` is no such directory (e.g. a Hub id) or its config does not say."""
    config_file = os.path.join(os.path.expanduser(directory), "config.json")
    try:
        with open(config_file) as f:
            return int(json.load(f)[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def bidirectional_padding_mask(config, hidden: torch.Tensor, valid: torch.Tensor):
    """The mask that keeps every frame from attending to padding.

    Args:
        config: the model's ``PretrainedConfig`` (its attention implementation decides the form).
        hidden: (B, T', D) the layer input (dtype and device of the mask).
        valid: (B, T') bool, True on an utterance's frames.
    """
    from transformers.masking_utils import create_bidirectional_mask

    # positional: the name of the 2nd argument changed in transformers 5.x (input(s)_embeds)
    return create_bidirectional_mask(config, hidden, valid)
