"""The early-exit mechanism shared by every backbone.

An early-exit encoder is a front end (``embed``: subsampling + positional encoding), a stack of
``L`` layers (``encoders``) and *exits* after chosen layers. It can

* run to every exit at once (training: one loss per exit),          -> :meth:`forward_exits`
* run only up to exit ``k`` (static budget; layers above never run), -> ``forward(max_exit_layer=k)``
* run exit by exit and stop whenever the caller decides (dynamic),  -> :meth:`iter_exits`, or the
  lower-level :meth:`start` / :meth:`advance` / :meth:`exit_output` with :meth:`EncoderState.select`
  to drop finished utterances out of a batch.

The mixin owns no layer code: ESPnet's own encoder classes build ``embed``, ``encoders`` and
``after_norm``; a backbone class is ``class X(EarlyExitEncoderMixin, EspnetEncoder)`` plus a
constructor that forwards ESPnet's arguments and calls :meth:`_init_early_exit`.
"""
import logging
from dataclasses import dataclass
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer import subsampling as _subsampling
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm

from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.signature import merged_signature

# Front ends that take and return ``(xs, masks)`` (and subsample the masks); any other ``embed``
# (Sequential with a Linear / positional encoding, Embedding, ...) maps ``xs`` alone.
_SUBSAMPLING_CLASSES = tuple(
    getattr(_subsampling, name)
    for name in dir(_subsampling)
    if name.startswith(("Conv1dSubsampling", "Conv2dSubsampling"))
)

EXIT_NORM_CHOICES = ("own", "shared")

Hidden = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]


class ExitOutput(NamedTuple):
    """The encoder output at one exit.

    Attributes:
        layer: 1-based index of the layer after which the exit sits.
        hidden: (B, T', D) normalised hidden states at that exit.
        lengths: (B,) valid frames of ``hidden`` per utterance.
    """

    layer: int
    hidden: torch.Tensor
    lengths: torch.Tensor


@dataclass
class EncoderState:
    """Where an exit-by-exit forward stands: the input of layer ``depth + 1``.

    Attributes:
        xs: (B, T', D) hidden states, or ``(hidden, pos_emb)`` for relative-position layers.
        masks: (B, 1, T') bool mask of valid frames.
        depth: number of layers already computed (0 = only the front end).
        frozen: the layers run without gradients (a backbone's ``freeze_*_steps`` phase).
    """

    xs: Hidden
    masks: torch.Tensor
    depth: int = 0
    frozen: bool = False

    @property
    def hidden(self) -> torch.Tensor:
        return self.xs[0] if isinstance(self.xs, tuple) else self.xs

    @property
    def lengths(self) -> torch.Tensor:
        return self.masks.squeeze(1).sum(1)

    def select(self, index: torch.Tensor) -> "EncoderState":
        """Keep only the utterances ``index`` (1-D long tensor), e.g. those that did not exit.

        Frames beyond the longest kept utterance are cut too, so the remaining layers do not
        spend time on padding. The positional embedding (batch-independent) is left as it is.
        """
        masks = self.masks.index_select(0, index)
        t_max = int(masks.squeeze(1).sum(1).max()) if masks.size(0) > 0 else 0
        masks = masks[..., :t_max]
        if isinstance(self.xs, tuple):
            x, pos_emb = self.xs
            x = x.index_select(0, index)[:, :t_max]
            # Relative-position embeddings cover 2T-1 offsets centred on 0; absolute ones T.
            if pos_emb.size(1) == 2 * self.masks.size(-1) - 1:
                centre = pos_emb.size(1) // 2
                pos_emb = pos_emb[:, centre - t_max + 1 : centre + t_max]
            else:
                pos_emb = pos_emb[:, :t_max]
            xs: Hidden = (x, pos_emb)
        else:
            xs = self.xs.index_select(0, index)[:, :t_max]
        return EncoderState(xs=xs, masks=masks, depth=self.depth, frozen=self.frozen)


def default_exit_layers(num_blocks: int) -> List[int]:
    """The paper's placement: an exit after every 2nd layer, and always one after the last."""
    exits = list(range(2, num_blocks + 1, 2))
    if not exits or exits[-1] != num_blocks:
        exits.append(num_blocks)
    return exits


def validate_exit_layers(exit_layers: Sequence[int], num_blocks: Optional[int]) -> List[int]:
    """Return ``exit_layers`` as a list, or raise one clear error naming the option.

    ``num_blocks`` None: the number of layers is not known (it lives in a pretrained backbone's own
    config): everything but the upper bound is checked."""
    exits = list(exit_layers)
    if num_blocks is None:
        allowed = "1-based layer indices, strictly increasing"
    else:
        allowed = f"1-based layer indices in 1..{num_blocks} (num_blocks), strictly increasing"
    if len(exits) == 0:
        raise EarlyExitConfigError(f"exit_layers is empty: give at least one exit ({allowed})")
    bad = [k for k in exits if not isinstance(k, int) or isinstance(k, bool)]
    if bad:
        raise EarlyExitConfigError(f"exit_layers={exits}: {bad} are not integers ({allowed})")
    out_of_range = [k for k in exits if k < 1 or (num_blocks is not None and k > num_blocks)]
    if out_of_range:
        raise EarlyExitConfigError(
            f"exit_layers={exits}: {out_of_range} out of range; exits must be {allowed}"
        )
    if len(set(exits)) != len(exits):
        dups = sorted({k for k in exits if exits.count(k) > 1})
        raise EarlyExitConfigError(f"exit_layers={exits}: duplicated {dups}; exits must be {allowed}")
    if exits != sorted(exits):
        raise EarlyExitConfigError(f"exit_layers={exits}: not sorted; exits must be {allowed}")
    return exits


class EarlyExitEncoderMixin:
    """Adds exits to an ESPnet encoder that has ``embed``, ``encoders`` and ``after_norm``.

    Must come before the ESPnet encoder class in the bases (``class X(EarlyExitEncoderMixin,
    ConformerEncoder)``), so that its ``__init__`` and ``forward`` come first.

    Args:
        input_size: input feature dimension.
        exit_layers: 1-based layers after which an exit sits (default: every 2nd layer and the
            last one, as in the paper).
        exit_norm: ``"own"`` (a LayerNorm per intermediate exit) or ``"shared"`` (the encoder's
            final ``after_norm`` for every exit). The last layer's exit always uses ``after_norm``.
        subsampling_channels: with ``input_layer: conv2d``, the convolution channels of the front
            end (default ``None``: ESPnet's, ``output_size``); fewer make it much cheaper on CPU.
        **kwargs: every argument of the ESPnet encoder (``num_blocks``, ``output_size``, ...).
    """

    def __init__(
        self,
        input_size: int,
        exit_layers: Optional[List[int]] = None,
        exit_norm: str = "own",
        subsampling_channels: Optional[int] = None,
        **kwargs,
    ):
        super().__init__(input_size, **kwargs)  # the ESPnet encoder builds embed/encoders/norm
        self._init_early_exit(len(self.encoders), exit_layers, exit_norm)
        if subsampling_channels is not None:
            self._narrow_front_end(input_size, subsampling_channels)

    def _narrow_front_end(self, input_size: int, channels: int) -> None:
        from espnet_eexit.encoder.subsampling import NarrowConv2dSubsampling

        if type(self.embed) is not _subsampling.Conv2dSubsampling:
            raise EarlyExitConfigError(
                f"subsampling_channels needs input_layer: conv2d (got {type(self.embed).__name__})"
            )
        if channels < 1:
            raise EarlyExitConfigError(f"subsampling_channels={channels}: must be >= 1")
        pos_enc = self.embed.out[-1]
        self.embed = NarrowConv2dSubsampling(input_size, self.output_size(), channels, pos_enc)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls):
            return  # a backbone with its own constructor (not an ESPnet encoder) keeps it
        espnet_encoder = next(b for b in cls.__mro__[1:] if b is not EarlyExitEncoderMixin
                              and "__init__" in vars(b))

        def __init__(self, input_size, **kwargs):
            EarlyExitEncoderMixin.__init__(self, input_size, **kwargs)

        # Advertise the ESPnet encoder's arguments plus ours, so that ESPnet's --print_config and
        # the config.yaml it dumps list every option of the backbone.
        __init__.__signature__ = merged_signature(
            EarlyExitEncoderMixin.__init__, espnet_encoder.__init__, positional=("self", "input_size")
        )
        __init__.__doc__ = cls.__doc__
        cls.__init__ = __init__

    def _init_early_exit(
        self,
        num_blocks: int,
        exit_layers: Optional[Sequence[int]],
        exit_norm: str,
    ) -> None:
        if exit_norm not in EXIT_NORM_CHOICES:
            raise EarlyExitConfigError(
                f"exit_norm={exit_norm!r}: must be one of {EXIT_NORM_CHOICES} "
                "('own': a LayerNorm per intermediate exit, 'shared': the final after_norm)"
            )
        if getattr(self, "interctc_layer_idx", None):
            raise EarlyExitConfigError(
                "interctc_layer_idx is not used by early-exit encoders: put those layers in "
                "exit_layers instead (each exit gets its own CTC loss)"
            )
        if getattr(self, "interctc_use_conditioning", False):
            raise EarlyExitConfigError(
                "interctc_use_conditioning is not supported by early-exit encoders"
            )
        self.num_layers = num_blocks
        self.exit_layers = validate_exit_layers(
            self.default_exit_layers(num_blocks) if exit_layers is None else exit_layers, num_blocks
        )
        self.exit_norm = exit_norm
        if self.exit_layers[-1] != num_blocks:
            logging.warning(
                "exit_layers=%s has no exit after the last layer (%d): layers %d..%d are never used",
                self.exit_layers, num_blocks, self.exit_layers[-1] + 1, num_blocks,
            )
        # Own norms for the intermediate exits; the exit after the last layer always uses the
        # encoder's final norm, so a single-exit model is exactly ESPnet's encoder and ESPnet
        # checkpoints load into the last exit unchanged.
        self.exit_norms = torch.nn.ModuleDict()
        if exit_norm == "own":
            for k in self.exit_layers:
                if k != num_blocks:
                    self.exit_norms[str(k)] = LayerNorm(self.output_size())

    # Where exits sit when the config names none; a backbone may place them otherwise.
    default_exit_layers = staticmethod(default_exit_layers)

    def _count_training_forward(self, frozen_steps: int) -> bool:
        """Count a training forward in the buffer ``num_train_forwards`` (which the backbone
        registers, so that the count survives checkpoints and resuming); True while the first
        ``frozen_steps`` forwards are not done yet."""
        if not self.training:
            return False
        self.num_train_forwards += 1
        if frozen_steps == 0:
            return False
        done = int(self.num_train_forwards) - 1  # reads the (GPU) buffer only when needed
        if done == frozen_steps:
            logging.info("%s: %d frozen forwards done, training the layers", type(self).__name__, done)
        return done < frozen_steps

    @classmethod
    def layers_in_config(cls, encoder_conf: dict) -> int:
        """The number of layers of the encoder that ``encoder_conf`` (complete with the class's
        defaults) builds, without building it (``show_exits`` in shell recipes)."""
        return int(encoder_conf["num_blocks"])

    @classmethod
    def layers_listed_in_config(cls, encoder_conf: dict) -> Optional[int]:
        """:meth:`layers_in_config` when ``encoder_conf`` itself (or a local file it names) says it,
        None when counting would need more (a pretrained backbone on the Hub): never builds
        anything nor reaches for the network (``show_exits`` answers listed exits with it)."""
        return cls.layers_in_config(encoder_conf)

    @classmethod
    def max_input_seconds_in_config(cls, encoder_conf: dict) -> Optional[float]:
        """The longest input (in seconds) the encoder of ``encoder_conf`` takes, None if any
        length works; read without building it (``asr_inference`` screens its list with it)."""
        return None

    def _final_norm(self) -> Optional[torch.nn.Module]:
        # Conformer/Transformer apply after_norm only with normalize_before (pre-LN layers).
        if getattr(self, "normalize_before", True):
            return getattr(self, "after_norm", None)
        return None

    # ------------------------------------------------------------------ exit bookkeeping
    @property
    def num_exits(self) -> int:
        return len(self.exit_layers)

    def check_exit_layer(self, layer: int) -> int:
        """Return ``layer`` if an exit sits after it, else raise a clear error."""
        if layer not in self.exit_layers:
            raise EarlyExitConfigError(
                f"exit layer {layer} is not an exit of this model; its exits are {self.exit_layers}"
            )
        return layer

    # ------------------------------------------------------------------ step-wise forward
    def start(self, xs_pad: torch.Tensor, ilens: torch.Tensor) -> EncoderState:
        """Run the front end.

        Args:
            xs_pad: (B, T, D_in) padded input features.
            ilens: (B,) input lengths.
        Returns:
            The state before layer 1 (T' = subsampled length).
        """
        masks = (~make_pad_mask(ilens)[:, None, :]).to(xs_pad.device)
        embed = getattr(self, "embed", None)
        if isinstance(embed, _SUBSAMPLING_CLASSES):
            too_short, limit = _subsampling.check_short_utt(embed, xs_pad.size(1))
            if too_short:
                raise _subsampling.TooShortUttError(
                    f"has {xs_pad.size(1)} frames and is too short for subsampling "
                    f"(it needs more than {limit} frames), return empty results",
                    xs_pad.size(1),
                    limit,
                )
            xs, masks = embed(xs_pad, masks)
        elif embed is not None:
            xs = embed(xs_pad)
        else:
            xs = xs_pad
        return EncoderState(xs=xs, masks=masks, depth=0)

    def resume_state(self, xs, masks: torch.Tensor, depth: int) -> "EncoderState":
        """The state after layer ``depth`` from what an exported segment receives: its hidden
        states ``xs`` (with the relative positions, if the layers take them) and (B, 1, T') valid
        frames. An encoder whose layers carry more between them rebuilds it here."""
        return EncoderState(xs=xs, masks=masks, depth=depth)

    def check_advance(self, state: EncoderState, layer: int) -> None:
        """Raise a clear error unless layers ``state.depth + 1 .. layer`` exist."""
        if not state.depth <= layer <= self.num_layers:
            raise EarlyExitConfigError(
                f"cannot advance from layer {state.depth} to layer {layer} "
                f"(the encoder has {self.num_layers} layers)"
            )

    def advance(self, state: EncoderState, layer: int) -> EncoderState:
        """Run layers ``state.depth + 1 .. layer`` (1-based) and nothing else."""
        self.check_advance(state, layer)
        xs, masks = state.xs, state.masks
        drop_rate = getattr(self.encoders, "layer_drop_rate", 0.0) if self.training else 0.0
        checkpointed = getattr(self, "gradient_checkpoint_layers", ())
        for idx in range(state.depth, layer):
            if drop_rate > 0.0 and float(torch.rand(())) < drop_rate:
                continue  # LayerDrop, as ESPnet's MultiSequential does in training
            encoder_layer = self.encoders[idx]
            if self.training and idx + 1 in checkpointed:
                xs, masks = torch.utils.checkpoint.checkpoint(
                    encoder_layer, xs, masks, use_reentrant=False
                )
            else:
                xs, masks = encoder_layer(xs, masks)
        return EncoderState(xs=xs, masks=masks, depth=layer)

    def exit_output(self, state: EncoderState) -> ExitOutput:
        """The normalised hidden states of the exit at ``state.depth``."""
        layer = self.check_exit_layer(state.depth)
        hidden = state.hidden
        norm = self.exit_norms[str(layer)] if str(layer) in self.exit_norms else self._final_norm()
        if norm is not None:
            hidden = norm(hidden)
        return ExitOutput(layer, hidden, state.lengths)

    # ------------------------------------------------------------------ convenience forwards
    def iter_exits(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor, max_exit_layer: Optional[int] = None
    ) -> Iterator[ExitOutput]:
        """Yield :class:`ExitOutput` exit by exit; stop iterating and no further layer runs."""
        last = self.exit_layers[-1] if max_exit_layer is None else self.check_exit_layer(max_exit_layer)
        state = self.start(xs_pad, ilens)
        for layer in self.exit_layers:
            if layer > last:
                break
            state = self.advance(state, layer)
            yield self.exit_output(state)

    def forward_exits(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor, max_exit_layer: Optional[int] = None
    ) -> List[ExitOutput]:
        """Outputs of every exit up to ``max_exit_layer`` (all exits by default), shallow first."""
        return list(self.iter_exits(xs_pad, ilens, max_exit_layer))

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
        max_exit_layer: Optional[int] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """ESPnet's encoder interface, at the last exit or at ``max_exit_layer``.

        Args:
            xs_pad: (B, T, D_in) padded input features.
            ilens: (B,) input lengths.
            prev_states: unused (ESPnet interface).
            max_exit_layer: exit to stop at; layers above it are not computed.
        Returns:
            (B, T', D) hidden states at that exit, (B,) their lengths, None.
        """
        last = self.exit_layers[-1] if max_exit_layer is None else self.check_exit_layer(max_exit_layer)
        state = self.advance(self.start(xs_pad, ilens), last)
        out = self.exit_output(state)
        return out.hidden, out.lengths, None


