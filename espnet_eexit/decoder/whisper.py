"""``decoder: eexit_whisper``: Whisper's pretrained text decoder as an ESPnet attention decoder.

The early-exit model shares it between its exits (``model_conf: decoder_per_exit: false``) or
copies it per exit; each exit's encoder output feeds its cross-attention. Tokens are Whisper's own
(``token_type: hugging_face`` with a tokenizer of the model, e.g. ``tokenizer_lowercase/`` of
``convert_ct2_whisper``, whose ``tokens.txt`` is Whisper's vocabulary in id order), so the
pretrained embeddings mean what they meant.

Differences from ESPnet's ``decoder: whisper``: the weights come from a local directory (or a
name / Hub id, as for ``encoder: eexit_whisper``), and the cross-attention never looks at the
padding frames of other utterances' encoder outputs in a batch (ESPnet's passes no memory mask).

With ``use_sot_prefix`` the decoder reads ``<|startoftranscript|>`` before ESPnet's ``sos``; set
``sym_sos: <|notimestamps|>`` in ``model_conf`` and every target starts as Whisper's own
transcription prompt ``<|startoftranscript|><|notimestamps|>``, what the pretrained decoder knows.
"""
from typing import Any, List, Optional, Tuple

import torch
from espnet.nets.scorer_interface import BatchScorerInterface
from espnet2.asr.decoder.abs_decoder import AbsDecoder

from espnet_eexit.encoder.whisper import load_whisper_config, load_whisper_model
from espnet_eexit.errors import EarlyExitConfigError


class WhisperDecoder(AbsDecoder, BatchScorerInterface):
    """Whisper's decoder (token and position embeddings, layers, final norm, tied output).

    Args:
        vocab_size: size of the token list; must be the Whisper model's vocabulary size.
        encoder_output_size: must be the Whisper model's ``d_model``.
        whisper_model: as for ``encoder: eexit_whisper`` (a directory, a name or a Hub id).
        download_dir: cache directory for a download by name or Hub id.
        dropout_rate: dropout inside every layer (Whisper: 0).
        use_sot_prefix: read ``<|startoftranscript|>`` (the model's ``decoder_start_token_id``)
            before every input sequence; its output position is dropped.
        load_pretrained_weights: False builds the decoder from its config, randomly initialised.
    """

    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        whisper_model: str = "small",
        download_dir: Optional[str] = None,
        dropout_rate: float = 0.0,
        use_sot_prefix: bool = True,
        load_pretrained_weights: bool = True,
    ):
        super().__init__()
        config = load_whisper_config(whisper_model, download_dir)
        if vocab_size != config.vocab_size:
            raise EarlyExitConfigError(
                f"decoder: eexit_whisper needs Whisper's own tokens: the token list has {vocab_size} "
                f"entries but {whisper_model!r} has a vocabulary of {config.vocab_size} (use "
                "token_type hugging_face with the converted model's tokenizer_lowercase and its tokens.txt)"
            )
        if encoder_output_size != config.d_model:
            raise EarlyExitConfigError(
                f"decoder: eexit_whisper of {whisper_model!r} reads {config.d_model}-dim encoder "
                f"outputs, but the encoder gives {encoder_output_size}"
            )
        model = load_whisper_model(whisper_model, download_dir, dropout_rate, load_pretrained_weights)
        config = model.config
        self.whisper = model.decoder  # embed_tokens, embed_positions, layers, layer_norm
        del model
        # decoder_per_exit copies these weights to every exit instead of re-initialising them
        self.is_pretrained = load_pretrained_weights
        self.sot = config.decoder_start_token_id if use_sot_prefix else None
        self.max_positions = config.max_target_positions
        # Tokens a beam search may emit after sos (each step reads sos + the tokens so far, after
        # the prefix); EarlyExitSpeech2Text caps ESPnet's maxlen at it.
        self.max_output_length = self.max_positions - (1 if self.sot is not None else 0)

    # ------------------------------------------------------------------ masks
    @staticmethod
    def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A bool "may attend" mask as the additive float mask that every attention takes."""
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )

    def _hidden(self, ys: torch.Tensor, memory: torch.Tensor,
                memory_lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, L) token ids, (B, T, D) encoder output -> (B, L, D) final-norm hidden states
        (the ``<|startoftranscript|>`` position dropped)."""
        if self.sot is not None:
            ys = torch.cat([ys.new_full((ys.size(0), 1), self.sot), ys], dim=1)
        length = ys.size(1)
        if length > self.max_positions:
            raise EarlyExitConfigError(
                f"a token sequence of {length} exceeds Whisper's decoder length "
                f"({self.max_positions} positions, prefix included): drop such utterances"
            )
        decoder = self.whisper
        x = decoder.embed_tokens(ys) + decoder.embed_positions.weight[:length]
        x = torch.nn.functional.dropout(x, p=decoder.config.dropout, training=self.training)
        causal = torch.ones(length, length, dtype=torch.bool, device=ys.device).tril()
        self_mask = self._additive(causal[None, None], x.dtype)
        cross_mask = None  # the cross-attention must not see other utterances' padding frames
        if memory_lengths is not None and bool((memory_lengths < memory.size(1)).any()):
            valid = torch.arange(memory.size(1), device=memory.device)[None, :] < memory_lengths[:, None]
            cross_mask = self._additive(valid[:, None, None, :], x.dtype)
        for layer in decoder.layers:
            x = layer(x, attention_mask=self_mask, encoder_hidden_states=memory,
                      encoder_attention_mask=cross_mask, use_cache=False)
            if isinstance(x, tuple):  # layers of older transformers return tuples
                x = x[0]
        x = decoder.layer_norm(x)
        return x if self.sot is None else x[:, 1:]

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.whisper.embed_tokens.weight.t()  # tied output layer

    # ------------------------------------------------------------------ training
    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits.

        Args:
            hs_pad: (B, T, D) encoder output; hlens: (B,) its valid frames.
            ys_in_pad: (B, L) input token ids (sos + tokens, eos-padded); ys_in_lens: (B,)
        Returns:
            (B, L, V) logits (before softmax), (B,) ys_in_lens.
        """
        return self._logits(self._hidden(ys_in_pad, hs_pad, hlens)), ys_in_lens

    # ------------------------------------------------------------------ beam search
    def score(self, ys: torch.Tensor, state: Any, x: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        """(L,) prefix, (T, D) encoder output -> (V,) log-probabilities of the next token."""
        logp, _ = self.batch_score(ys[None], [state], x[None])
        return logp[0], None

    def batch_score(
        self, ys: torch.Tensor, states: List[Any], xs: torch.Tensor
    ) -> Tuple[torch.Tensor, List[Any]]:
        """(N, L) prefixes, (N, T, D) encoder outputs (one utterance, unpadded) -> (N, V) scores.

        The whole prefix is decoded again at every step (no key/value cache): Whisper's decoder
        is small next to its 51k-token output layer, which is computed for the last position only.
        """
        last = self._hidden(ys, xs, None)[:, -1]
        logp = torch.log_softmax(self._logits(last), dim=-1)
        return logp, [None] * ys.size(0)
