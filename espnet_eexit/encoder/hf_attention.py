"""Padding masks for Hugging Face ``transformers`` layers called one by one (our exits).

The layers take the mask in the form of the attention implementation the config selects
(eager: additive float, sdpa: bool, ...); ``create_bidirectional_mask`` builds that form, and
returns None when no frame is padding (then no mask costs nothing).
"""
import torch


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
