"""``eexit_whisper``: Whisper's audio encoder with early exits.

The encoder reads raw 16-kHz waveforms, as ESPnet's own ``encoder: whisper`` does: in an ESPnet
config set ``input_size: 1``, ``frontend: null`` (implied by ``input_size``), ``normalize: null``
and ``specaug: null`` (``use_specaug`` masks Whisper's log-mel features inside the encoder).

* :class:`WhisperLogMel` computes Whisper's own log-mel features (equal to the reference feature
  extractor's) per utterance: padding in a batch changes neither an utterance's features nor
  (through the masked convolutions and attention) any of its exits.
* The layers are ``transformers``' ``WhisperEncoderLayer`` modules of the pretrained model, called
  one by one through the shared early-exit mechanism, so layers above an exit never run.

Built on ``transformers`` (already our dependency for wav2vec2/WavLM), not on the
``openai-whisper`` package that ESPnet's class needs: its loader accepts only model names it
downloads and checks by SHA-256, while ours takes a local directory (an offline conversion, see
``espnet_eexit.bin.convert_ct2_whisper``) as well as a name or Hub id.
"""
import contextlib
import os
from typing import List, Optional

import torch
import torch.nn.functional as F
from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError
from espnet2.asr.encoder.abs_encoder import AbsEncoder

from espnet_eexit.encoder.early_exit import EarlyExitEncoderMixin, EncoderState
from espnet_eexit.encoder.hf_attention import bidirectional_padding_mask, layers_in_saved_config
from espnet_eexit.encoder.waveform import as_waveforms, check_waveform_input_size
from espnet_eexit.errors import EarlyExitConfigError

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
WINDOW_SECONDS = 30
# OpenAI's model names (ESPnet's ``whisper_model`` values) -> their Hugging Face Hub ids.
MODEL_NAMES = ("tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
               "large-v1", "large-v2", "large-v3", "large-v3-turbo")
_NAME_ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo"}
OFFLINE_HINT = ("offline, give a directory: tools/install.sh converts the bundled tiny.en into "
                "tools/pretrained/whisper-tiny.en")


def whisper_source(whisper_model: str) -> str:
    """A local directory (checked) or the Hub id of ``whisper_model`` (a name or a Hub id)."""
    path = os.path.expanduser(whisper_model)
    if os.path.isdir(path):
        return path
    if os.path.isabs(path) or whisper_model.startswith((".", "~")) or path.count("/") > 1:
        raise EarlyExitConfigError(
            f"whisper_model={whisper_model!r}: no such directory (give a directory written by "
            f"save_pretrained or convert_ct2_whisper, a name in {MODEL_NAMES}, or a Hub id)"
        )
    name = _NAME_ALIASES.get(whisper_model, whisper_model)
    return f"openai/whisper-{name}" if name in MODEL_NAMES else whisper_model


def load_whisper_config(whisper_model: str, download_dir: Optional[str] = None):
    """The ``WhisperConfig`` of ``whisper_model``, or one clear error."""
    from transformers import WhisperConfig

    source = whisper_source(whisper_model)
    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, "config.json")):
        raise EarlyExitConfigError(
            f"whisper_model={whisper_model!r}: this directory has no config.json (give a directory "
            "written by save_pretrained or convert_ct2_whisper)"
        )
    try:
        config = WhisperConfig.from_pretrained(source, cache_dir=download_dir)
    except (OSError, ValueError) as err:
        where = "directory" if os.path.isdir(source) else f"Hub id {source!r} (no network?)"
        raise EarlyExitConfigError(
            f"whisper_model={whisper_model!r}: cannot load a Whisper config from this {where}; "
            f"{OFFLINE_HINT}"
        ) from err
    if config.model_type != "whisper":
        raise EarlyExitConfigError(
            f"whisper_model={whisper_model!r} is a {config.model_type!r} model, not Whisper"
        )
    return config


def load_whisper_model(whisper_model: str, download_dir: Optional[str], dropout_rate: float,
                       load_pretrained_weights: bool):
    """The ``transformers`` ``WhisperModel`` of ``whisper_model`` (its encoder and decoder are
    what ``eexit_whisper`` keeps), with ``dropout_rate``; random weights if not pretrained."""
    from transformers import WhisperModel

    config = load_whisper_config(whisper_model, download_dir)
    config.dropout = dropout_rate
    if not load_pretrained_weights:
        return WhisperModel(config)
    try:
        return WhisperModel.from_pretrained(
            whisper_source(whisper_model), config=config, cache_dir=download_dir, dtype=torch.float32
        )
    except OSError as err:
        raise EarlyExitConfigError(f"whisper_model={whisper_model!r}: {err}") from err


class WhisperLogMel(torch.nn.Module):
    """Whisper's log-mel spectrogram, computed for each utterance on its own samples.

    As Whisper's reference: a centred 400-point Hann STFT every 160 samples (the last frame
    dropped), power, a Slaney mel filter bank, ``log10(max(., 1e-10))``, floored at the
    utterance's maximum - 8, then ``(x + 4) / 4``. The STFT's reflection padding and the maximum
    use the utterance's own samples, not its batch's padding; frames beyond an utterance are 0.
    """

    def __init__(self, n_mels: int):
        super().__init__()
        import librosa  # an ESPnet dependency; Whisper's filters are librosa's (Slaney)

        filters = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels)
        self.register_buffer("filters", torch.from_numpy(filters).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    @staticmethod
    def num_frames(num_samples: torch.Tensor) -> torch.Tensor:
        return torch.div(num_samples, HOP_LENGTH, rounding_mode="floor")

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor):
        """(B, S) waveforms, (B,) samples -> (B, n_mels, T) features, (B,) frames T_b = S_b // 160."""
        half = N_FFT // 2
        short = int(lengths.min())
        if short <= half:
            raise TooShortUttError(
                f"has {short} samples and is too short for Whisper's features (it needs more "
                f"than {half}), return empty results",
                short,
                half + 1,
            )
        # Each utterance reflection-padded on its own, then one STFT for the batch.
        padded = wav.new_zeros(wav.size(0), wav.size(1) + 2 * half)
        for i, n in enumerate(lengths.tolist()):
            padded[i, : n + 2 * half] = F.pad(wav[i : i + 1, :n], (half, half), mode="reflect")[0]
        stft = torch.stft(padded, N_FFT, HOP_LENGTH, window=self.window, center=False,
                          return_complex=True)
        power = stft[..., :-1].abs() ** 2
        log_spec = torch.clamp(self.filters @ power, min=1e-10).log10()
        frames = self.num_frames(lengths).to(wav.device)
        valid = (torch.arange(log_spec.size(-1), device=wav.device)[None, :] < frames[:, None])
        peak = log_spec.masked_fill(~valid[:, None, :], float("-inf")).amax(dim=(1, 2))
        log_spec = torch.maximum(log_spec, peak[:, None, None] - 8.0)
        log_spec = (log_spec + 4.0) / 4.0
        return log_spec.masked_fill(~valid[:, None, :], 0.0), frames


class EarlyExitWhisperEncoder(EarlyExitEncoderMixin, AbsEncoder):
    """Whisper's audio encoder (same layers, same weights) with exits.

    Input: (B, S) or (B, S, 1) zero-padded 16-kHz waveforms and (B,) their numbers of samples,
    at most 30 s each (Whisper's window). Output at each exit: (B, T', D) hidden states
    (T' = frames of 20 ms) and (B,) valid frames.

    Args:
        input_size: must be 1 (raw waveforms: ``input_size: 1`` and no frontend in ESPnet).
        dropout_rate: dropout after the front end and inside every layer (Whisper: 0).
        whisper_model: a directory (``save_pretrained`` of a Whisper model, or the output of
            ``espnet_eexit.bin.convert_ct2_whisper``), an OpenAI name (``tiny.en`` ...
            ``large-v3``, as ESPnet's ``whisper_model``; needs a network) or a Hub id. Decoding
            a trained model reads it again (the weights then come from the checkpoint).
        download_dir: cache directory for a download by name or Hub id.
        use_specaug: SpecAugment on the log-mel features in training, with ``specaug_conf``
            (ESPnet's ``SpecAug`` arguments).
        do_pad_trim: pad every utterance to 30 s, as Whisper was trained (each then has 1500
            frames; costly). Longer inputs are an error either way, never cut.
        exit_layers: 1-based layers after which an exit sits (default: every layer for models
            of up to 6 layers, else every 2nd and the last).
        exit_norm: ``"own"`` (a LayerNorm per intermediate exit, initialised as Whisper's final
            LayerNorm) or ``"shared"`` (Whisper's final LayerNorm for every exit).
        freeze_front_end: the convolutions get no gradients (and keep no graph).
        freeze_layers_steps: all layers run without gradients for the first N training forward
            passes (batches), then train; the count (buffer ``num_train_forwards``) survives
            checkpoints and resuming. Exit norms and heads train from the start.
        load_pretrained_weights: False builds the model from its config, randomly initialised.
    """

    def __init__(
        self,
        input_size: int = 1,
        dropout_rate: float = 0.0,
        whisper_model: str = "small",
        download_dir: Optional[str] = None,
        use_specaug: bool = False,
        specaug_conf: Optional[dict] = None,
        do_pad_trim: bool = False,
        exit_layers: Optional[List[int]] = None,
        exit_norm: str = "own",
        freeze_front_end: bool = False,
        freeze_layers_steps: int = 0,
        load_pretrained_weights: bool = True,
    ):
        AbsEncoder.__init__(self)
        check_waveform_input_size(input_size, "eexit_whisper")
        if freeze_layers_steps < 0:
            raise EarlyExitConfigError(f"freeze_layers_steps={freeze_layers_steps}: must be >= 0")
        if use_specaug and not specaug_conf:
            raise EarlyExitConfigError("use_specaug: true needs specaug_conf (ESPnet's SpecAug arguments)")
        model = load_whisper_model(whisper_model, download_dir, dropout_rate, load_pretrained_weights)
        config = model.config
        self.whisper = model.encoder  # conv1, conv2, embed_positions, layers, layer_norm
        del model  # the decoder is not ours to keep
        self.log_mel = WhisperLogMel(config.num_mel_bins)
        self.dropout = torch.nn.Dropout(dropout_rate)
        if use_specaug:
            from espnet2.asr.specaug.specaug import SpecAug

            self.specaug = SpecAug(**specaug_conf)
        else:
            self.specaug = None
        self.do_pad_trim = do_pad_trim
        self.max_frames = config.max_source_positions
        self.freeze_front_end = freeze_front_end
        self.freeze_layers_steps = freeze_layers_steps
        if freeze_front_end:
            for conv in (self.whisper.conv1, self.whisper.conv2):
                conv.requires_grad_(False)
        self.register_buffer("num_train_forwards", torch.zeros((), dtype=torch.long))
        self._init_early_exit(config.encoder_layers, exit_layers, exit_norm)
        for norm in self.exit_norms.values():  # start where the pretrained last layer's norm is
            norm.load_state_dict(self.whisper.layer_norm.state_dict())

    @staticmethod
    def default_exit_layers(num_blocks: int) -> List[int]:
        if num_blocks <= 6:
            return list(range(1, num_blocks + 1))
        return EarlyExitEncoderMixin.default_exit_layers(num_blocks)

    @classmethod
    def layers_in_config(cls, encoder_conf: dict) -> int:
        config = load_whisper_config(encoder_conf["whisper_model"], encoder_conf.get("download_dir"))
        return int(config.encoder_layers)

    @classmethod
    def layers_listed_in_config(cls, encoder_conf: dict) -> Optional[int]:
        """From the ``config.json`` of a local ``whisper_model`` directory; None for a Hub id."""
        return layers_in_saved_config(encoder_conf["whisper_model"], "encoder_layers")

    @classmethod
    def max_input_seconds_in_config(cls, encoder_conf: dict) -> float:
        """Whisper's window: its positions (1500 frames of 2 x 160 samples = 30 s)."""
        config = load_whisper_config(encoder_conf["whisper_model"], encoder_conf.get("download_dir"))
        return config.max_source_positions * 2 * HOP_LENGTH / SAMPLE_RATE

    def output_size(self) -> int:
        return self.whisper.config.d_model

    @property
    def encoders(self) -> torch.nn.ModuleList:
        """Whisper's layers (hooks on them count the layers that run)."""
        return self.whisper.layers

    def _final_norm(self) -> torch.nn.Module:
        return self.whisper.layer_norm

    @property
    def max_samples(self) -> int:
        """The longest input: 30 s (1500 output frames of 2 x 160 samples)."""
        return self.max_frames * 2 * HOP_LENGTH

    # ------------------------------------------------------------------ front end
    def start(self, xs_pad: torch.Tensor, ilens: torch.Tensor) -> EncoderState:
        """Log-mel features, SpecAugment (training), the two convolutions, positions.

        Args:
            xs_pad: (B, S) or (B, S, 1) zero-padded waveforms ((B, S, C): one channel is read).
            ilens: (B,) samples per utterance.
        Returns:
            The state before layer 1: (B, T', D) hidden states and (B, 1, T') valid frames.
        """
        xs_pad = as_waveforms(xs_pad, "eexit_whisper", self.training)
        longest = int(ilens.max())
        if longest > self.max_samples:
            raise EarlyExitConfigError(
                f"an input of {longest / SAMPLE_RATE:.2f} s ({longest} samples) is longer than "
                f"Whisper's {WINDOW_SECONDS}-s window ({self.max_samples} samples); split it, or "
                "drop such utterances (asr.sh --max_wav_duration)"
            )
        if self.do_pad_trim:
            xs_pad = F.pad(xs_pad, (0, self.max_samples - xs_pad.size(1)))
            ilens = torch.full_like(ilens, self.max_samples)
        frozen = self._count_training_forward(self.freeze_layers_steps)
        feats, frames = self.log_mel(xs_pad, ilens)
        if self.specaug is not None and self.training:
            feats, _ = self.specaug(feats.transpose(1, 2), frames)
            feats = feats.transpose(1, 2)
        return self.embed(feats, frames, frozen)

    def embed(self, feats: torch.Tensor, frames: torch.Tensor, frozen: bool = False) -> EncoderState:
        """Log-mel features -> the state before layer 1: the two convolutions and positions.

        Args:
            feats: (B, n_mels, T) log-mel features (zero beyond each utterance); frames: (B,)
        """
        valid = torch.arange(feats.size(-1), device=feats.device)[None, :] < frames[:, None]
        whisper = self.whisper
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_front_end):
            x = F.gelu(whisper.conv1(feats))
            # zero beyond each utterance: the stride-2 convolution then sees what it would alone
            x = F.gelu(whisper.conv2(x.masked_fill(~valid[:, None, :], 0.0))).transpose(1, 2)
        out_frames = torch.div(frames + 1, 2, rounding_mode="floor")
        valid = torch.arange(x.size(1), device=x.device)[None, :] < out_frames[:, None]
        x = self.dropout(x + whisper.embed_positions.weight[: x.size(1)])
        return EncoderState(xs=x, masks=valid[:, None, :], depth=0, frozen=frozen)

    # ------------------------------------------------------------------ layers
    def advance(self, state: EncoderState, layer: int) -> EncoderState:
        """Run layers ``state.depth + 1 .. layer`` (1-based) and nothing else."""
        self.check_advance(state, layer)
        hidden = state.hidden
        mask = bidirectional_padding_mask(self.whisper.config, hidden, state.masks[:, 0])
        with torch.no_grad() if state.frozen else contextlib.nullcontext():
            for idx in range(state.depth, layer):
                hidden = self.encoders[idx](hidden, attention_mask=mask)
                if isinstance(hidden, tuple):  # layers of older transformers return tuples
                    hidden = hidden[0]
        return EncoderState(hidden, state.masks, layer, state.frozen)
