"""``eexit_hf_wav2vec2``: a Hugging Face wav2vec 2.0 / HuBERT / WavLM model with early exits.

The encoder reads raw waveforms: in an ESPnet config set ``input_size: 1`` (ESPnet then builds no
frontend and hands the padded waveforms to the encoder), ``specaug: null`` and ``normalize: null``
(the model masks its own features, see ``apply_hf_masking``, and normalises them itself).

The front end (:meth:`start`) is the model's CNN feature encoder, feature projection, optional
SpecAugment-style masking and what its transformer does before layer 1; the layers are the model's
own ``encoder.layers``, called one by one (:meth:`advance`), so layers above an exit never run.

Padding never changes an utterance's result: the first CNN layer of "group" feature encoders
(wav2vec2-base, HuBERT-base, WavLM-base) normalises each channel over time, and here it does so
over the utterance's own samples only (Hugging Face's model would include the padding).

``transformers`` is imported only when an encoder is built: registering the plugin never needs it.
"""
import contextlib
import os
from dataclasses import dataclass
from typing import List, Optional

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError

from espnet_eexit.encoder.early_exit import EarlyExitEncoderMixin, EncoderState
from espnet_eexit.encoder.hf_attention import bidirectional_padding_mask, layers_in_saved_config
from espnet_eexit.encoder.waveform import as_waveforms, check_waveform_input_size
from espnet_eexit.errors import EarlyExitConfigError

# ``config.model_type`` of checkpoints whose encoder is the wav2vec2-style or the WavLM encoder.
SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")


@dataclass
class HFEncoderState(EncoderState):
    """:class:`EncoderState` plus what the Hugging Face layers carry between them.

    Attributes:
        position_bias: (B * H, T', T') WavLM's relative position bias, computed by layer 1 and
            reused by the later layers (None before layer 1 and for other models).
    """

    position_bias: Optional[torch.Tensor] = None

    def select(self, index: torch.Tensor) -> "HFEncoderState":
        """Keep the utterances ``index``, cut the padding (see :meth:`EncoderState.select`)."""
        kept = super().select(index)
        bias = self.position_bias
        if bias is not None:
            batch, t_old, t_max = self.masks.size(0), self.masks.size(-1), kept.masks.size(-1)
            # The bias depends only on the relative position j - i: its top-left corner is exactly
            # the bias of the shorter sequence.
            bias = bias.view(batch, -1, t_old, t_old).index_select(0, index)
            bias = bias[:, :, :t_max, :t_max].reshape(-1, t_max, t_max)
        return HFEncoderState(kept.xs, kept.masks, kept.depth, self.frozen, bias)


def load_hf_model(hf_model: str, load_pretrained_weights: bool = True) -> torch.nn.Module:
    """The base model (``Wav2Vec2Model``, ``HubertModel``, ``WavLMModel``) of ``hf_model``.

    Args:
        hf_model: a directory written by ``save_pretrained`` or a Hugging Face Hub id.
        load_pretrained_weights: False builds the model from its config with random weights.
    """
    try:
        from transformers import AutoConfig, AutoModel
    except ImportError as err:
        raise EarlyExitConfigError(
            "encoder: eexit_hf_wav2vec2 needs the transformers package (pip install transformers)"
        ) from err
    path = os.path.expanduser(hf_model)
    looks_like_path = (  # a Hub id is "name" or "org/name"
        os.path.isabs(path) or hf_model.startswith((".", "~")) or path.count("/") > 1
    )
    if not os.path.isdir(path) and looks_like_path:
        raise EarlyExitConfigError(
            f"hf_model={hf_model!r}: no such directory (give a directory written by "
            "save_pretrained, or a Hugging Face Hub id such as 'facebook/wav2vec2-base')"
        )
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        where = "directory" if os.path.isdir(path) else "Hub id (and not a local directory)"
        raise EarlyExitConfigError(
            f"hf_model={hf_model!r}: cannot load a model config from this {where}: {err}"
        ) from err
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise EarlyExitConfigError(
            f"hf_model={hf_model!r} is a {config.model_type!r} model; eexit_hf_wav2vec2 supports "
            f"the wav2vec2-style and WavLM encoders: model types {SUPPORTED_MODEL_TYPES}"
        )
    if getattr(config, "add_adapter", False):
        raise EarlyExitConfigError(
            f"hf_model={hf_model!r} has add_adapter: true (a downsampling adapter after the last "
            "layer), which early exits cannot use; save the model with add_adapter=False"
        )
    if not load_pretrained_weights:
        return AutoModel.from_config(config)
    return AutoModel.from_pretrained(path, config=config, dtype=torch.float32)


class EarlyExitHFWav2Vec2Encoder(EarlyExitEncoderMixin, AbsEncoder):
    """A Hugging Face wav2vec 2.0, HuBERT or WavLM model (same layers, same weights) with exits.

    Input: (B, S) or (B, S, 1) zero-padded waveforms and (B,) their numbers of samples. Output at
    each exit: (B, T', D) hidden states (T' = frames of the CNN feature encoder, e.g. 20 ms each;
    D = the model's ``hidden_size``) and (B,) valid frames.

    Args:
        input_size: must be 1 (raw waveforms: ``input_size: 1`` and no frontend in ESPnet).
        hf_model: a directory written by ``save_pretrained`` or a Hugging Face Hub id (reached
            only with a network). The model type (wav2vec2, HuBERT, WavLM) comes from its config.
            Decoding a trained model still reads its config (the weights come from the checkpoint).
        exit_layers: 1-based transformer layers after which an exit sits (default: every 2nd
            layer and the last one).
        exit_norm: ``"own"`` (a LayerNorm per intermediate exit) or ``"shared"`` (for every exit,
            what the model applies after its last layer: the final LayerNorm of "stable layer
            norm" models such as wav2vec2-large-lv60 / WavLM-large, nothing for the others, whose
            layers end with a LayerNorm). The last layer's exit always uses the latter.
        freeze_feature_encoder: the CNN feature encoder gets no gradients (and keeps no graph).
        freeze_transformer_steps: the feature projection and the transformer run without
            gradients for the first N training forward passes (batches), then train; the count
            is the buffer ``num_train_forwards``, so it survives checkpoints and resuming. (With
            several GPUs, set ``unused_parameters: true`` for that phase, as for any frozen part.)
        apply_hf_masking: in training, mask the projected features along time / channels as the
            model's ``_mask_hidden_states`` does when its config enables it (``mask_time_prob``,
            ``mask_feature_prob``).
        load_pretrained_weights: False builds the model from the saved config, randomly
            initialised.
    """

    def __init__(
        self,
        input_size: int,
        hf_model: str,
        exit_layers: Optional[List[int]] = None,
        exit_norm: str = "own",
        freeze_feature_encoder: bool = True,
        freeze_transformer_steps: int = 0,
        apply_hf_masking: bool = True,
        load_pretrained_weights: bool = True,
    ):
        AbsEncoder.__init__(self)
        check_waveform_input_size(input_size, "eexit_hf_wav2vec2")
        if freeze_transformer_steps < 0:
            raise EarlyExitConfigError(
                f"freeze_transformer_steps={freeze_transformer_steps}: must be >= 0"
            )
        self.hf = load_hf_model(hf_model, load_pretrained_weights)
        config = self.hf.config
        self.is_wavlm = config.model_type == "wavlm"
        self.stable_layer_norm = bool(config.do_stable_layer_norm)
        self.freeze_feature_encoder = freeze_feature_encoder
        self.freeze_transformer_steps = freeze_transformer_steps
        self.apply_hf_masking = apply_hf_masking
        if freeze_feature_encoder:
            self.hf.feature_extractor.requires_grad_(False)
        self.register_buffer("num_train_forwards", torch.zeros((), dtype=torch.long))
        self._init_early_exit(config.num_hidden_layers, exit_layers, exit_norm)

    def output_size(self) -> int:
        return self.hf.config.hidden_size

    @classmethod
    def layers_in_config(cls, encoder_conf: dict) -> int:
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(os.path.expanduser(encoder_conf["hf_model"])).num_hidden_layers)

    @classmethod
    def layers_listed_in_config(cls, encoder_conf: dict) -> Optional[int]:
        """From the ``config.json`` of a local ``hf_model`` directory; None for a Hub id."""
        return layers_in_saved_config(encoder_conf["hf_model"], "num_hidden_layers")

    @property
    def encoders(self) -> torch.nn.ModuleList:
        """The transformer layers (hooks on them count the layers that run)."""
        return self.hf.encoder.layers

    def _final_norm(self) -> Optional[torch.nn.Module]:
        # Stable-layer-norm (pre-LN) encoders end with a LayerNorm; the others apply theirs
        # before layer 1 and end every layer with one.
        return self.hf.encoder.layer_norm if self.stable_layer_norm else None

    # ------------------------------------------------------------------ front end
    def _receptive_field(self) -> int:
        """Samples needed for one frame of the CNN feature encoder."""
        field = 1
        config = self.hf.config
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
            field = (field - 1) * stride + kernel
        return field

    def _feature_encoder(self, wav: torch.Tensor, ilens: torch.Tensor) -> torch.Tensor:
        """(B, S) waveforms, (B,) samples -> (B, T', C) CNN features."""
        x = wav[:, None]
        layers = self.hf.feature_extractor.conv_layers
        first = layers[0]
        norm = getattr(first, "layer_norm", None)
        if isinstance(norm, torch.nn.GroupNorm) and bool((ilens < wav.size(1)).any()):
            # GroupNorm(C, C) normalises each channel over time; do it over the valid frames only,
            # so that padding does not change the statistics.
            x = first.conv(x)
            kernel, stride = self.hf.config.conv_kernel[0], self.hf.config.conv_stride[0]
            n = (torch.div(ilens - kernel, stride, rounding_mode="floor") + 1).clamp(min=1)
            n = n.to(x.device)
            valid = (torch.arange(x.size(-1), device=x.device)[None, :] < n[:, None])[:, None, :]
            n = n.to(x.dtype)[:, None, None]
            mean = x.masked_fill(~valid, 0.0).sum(-1, keepdim=True) / n
            var = (x - mean).masked_fill(~valid, 0.0).pow(2).sum(-1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + norm.eps)
            x = first.activation(x * norm.weight[:, None] + norm.bias[:, None])
            layers = layers[1:]
        for layer in layers:
            x = layer(x)
        return x.transpose(1, 2)

    def start(self, xs_pad: torch.Tensor, ilens: torch.Tensor) -> HFEncoderState:
        """CNN feature encoder, feature projection, masking (training) and the pre-layer steps.

        Args:
            xs_pad: (B, S) or (B, S, 1) zero-padded waveforms ((B, S, C): one channel is read).
            ilens: (B,) samples per utterance.
        Returns:
            The state before layer 1: (B, T', D) hidden states and (B, 1, T') valid frames.
        """
        xs_pad = as_waveforms(xs_pad, "eexit_hf_wav2vec2", self.training)
        field = self._receptive_field()
        if xs_pad.size(1) < field:
            raise TooShortUttError(
                f"has {xs_pad.size(1)} samples and is too short for the CNN feature encoder "
                f"(it needs at least {field}), return empty results",
                xs_pad.size(1),
                field,
            )
        frozen = self._count_training_forward(self.freeze_transformer_steps)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_feature_encoder):
            feats = self._feature_encoder(xs_pad, ilens)
        lengths = self.hf._get_feat_extract_output_lengths(ilens).clamp(min=0).to(feats.device)
        valid = torch.arange(feats.size(1), device=feats.device)[None, :] < lengths[:, None]
        encoder = self.hf.encoder
        with torch.no_grad() if frozen else contextlib.nullcontext():
            hidden = self.hf.feature_projection(feats)
            if isinstance(hidden, tuple):  # wav2vec2 / WavLM also return the normalised features
                hidden = hidden[0]
            if self.apply_hf_masking and self.training:
                hidden = self.hf._mask_hidden_states(hidden, attention_mask=valid)
            # As the HF encoder does before its first layer: padding is zeroed first, so the
            # positional convolution sees zeros beyond an utterance as if it were alone.
            hidden = hidden.masked_fill(~valid[..., None], 0.0)
            hidden = hidden + encoder.pos_conv_embed(hidden)
            if not self.stable_layer_norm:
                hidden = encoder.layer_norm(hidden)
            hidden = encoder.dropout(hidden)
        return HFEncoderState(xs=hidden, masks=valid[:, None, :], depth=0, frozen=frozen)

    def resume_state(self, xs: torch.Tensor, masks: torch.Tensor, depth: int) -> HFEncoderState:
        """See :meth:`EarlyExitEncoderMixin.resume_state`. WavLM's later layers take the position
        bias that layer 1 makes; it depends on the length alone, so it is made again here (by
        layer 1's own module) rather than carried: (B * H, T', T') would outweigh the hidden states."""
        bias = None
        if self.is_wavlm and depth > 0:
            steps = xs.size(1)
            bias = self.encoders[0].attention.compute_bias(steps, steps)  # (H, T', T')
            bias = bias.unsqueeze(0).expand(xs.size(0), -1, -1, -1).reshape(-1, steps, steps)
        return HFEncoderState(xs=xs, masks=masks, depth=depth, position_bias=bias)

    # ------------------------------------------------------------------ layers
    def _attention_mask(self, hidden: torch.Tensor, valid: torch.Tensor):
        """The padding mask in the form the model's layers take it."""
        if self.is_wavlm:
            return valid  # WavLM's attention takes the (B, T') mask of valid frames itself
        return bidirectional_padding_mask(self.hf.config, hidden, valid)

    def advance(self, state: HFEncoderState, layer: int) -> HFEncoderState:
        """Run layers ``state.depth + 1 .. layer`` (1-based) and nothing else."""
        self.check_advance(state, layer)
        hidden, bias = state.hidden, state.position_bias
        attention_mask = self._attention_mask(hidden, state.masks[:, 0])
        layerdrop = self.hf.config.layerdrop if self.training else 0.0
        with torch.no_grad() if state.frozen else contextlib.nullcontext():
            for idx in range(state.depth, layer):
                # LayerDrop as the HF encoder does it; WavLM's layer 1 always runs (it computes
                # the position bias of the others).
                if layerdrop > 0.0 and not (self.is_wavlm and idx == 0):
                    if float(torch.rand(())) < layerdrop:
                        continue
                # Early 5.x layers return tuples, later ones (wav2vec2 / HuBERT) the tensor alone.
                if self.is_wavlm:
                    hidden, bias = self.encoders[idx](
                        hidden, attention_mask=attention_mask, position_bias=bias
                    )[:2]
                else:
                    out = self.encoders[idx](hidden, attention_mask=attention_mask)
                    hidden = out[0] if isinstance(out, tuple) else out
        return HFEncoderState(hidden, state.masks, layer, state.frozen, bias)
