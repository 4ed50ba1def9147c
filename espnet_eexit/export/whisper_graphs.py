"""The graphs of an early-exit Whisper model that are not encoder segments.

    front_end.onnx        Whisper's log-mel features -> the input of layer 1 (convolutions, positions)
    cross_kv<k>.onnx      exit k's encoder output -> its decoder's cross-attention keys and values,
                          computed once per utterance and exit
    decoder<k>.onnx       exit k's decoder on the tokens so far (prompt included), the cross
                          keys/values and the valid frames -> next-token log-posteriors from a
                          given position on (the last one: a greedy step; all: checking a draft)
    whisper_features.npz  the Hann window and Slaney mel filters (features in numpy)

The step graph runs the whole prefix again at every step (a self-attention cache would save
little: the prefix is tens of tokens, the cost is in the 51k-token output layer and the
cross-attention, whose keys and values come from ``cross_kv``). Its arithmetic is Whisper's decoder
layer, written out here on the same weights so that the keys and values can come from outside;
tests hold it equal to :class:`espnet_eexit.decoder.whisper.WhisperDecoder`.
"""
from typing import Dict

import numpy as np
import torch

from espnet_eexit.decoder.whisper import WhisperDecoder
from espnet_eexit.encoder.whisper import N_FFT, EarlyExitWhisperEncoder

WHISPER_FEATURES_FILE = "whisper_features.npz"


class WhisperFrontEndGraph(torch.nn.Module):
    """feats (B, n_mels, T) log-mel, frames (B,) -> hidden (B, T', D), lengths (B,)."""

    def __init__(self, encoder: EarlyExitWhisperEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, feats: torch.Tensor, frames: torch.Tensor):
        state = self.encoder.embed(feats, frames)
        return state.hidden, state.lengths


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, H, T, D / H)"""
    return x.view(x.size(0), x.size(1), heads, -1).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention of (B, H, U, d) queries over (B, H, T, d) keys/values with an
    additive mask broadcast to (B, H, U, T); returns (B, U, H * d)."""
    scores = q @ k.transpose(-1, -2) * (q.size(-1) ** -0.5) + mask
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).reshape(q.size(0), q.size(2), -1)


class CrossKeysValuesGraph(torch.nn.Module):
    """memory (B, T, D) -> cross_kv (layers, 2, B, H, T, D / H): each decoder layer's
    cross-attention keys and values."""

    def __init__(self, decoder: WhisperDecoder):
        super().__init__()
        self.layers = decoder.whisper.layers
        self.heads = decoder.whisper.config.decoder_attention_heads

    def forward(self, memory: torch.Tensor):
        per_layer = []
        for layer in self.layers:
            attention = layer.encoder_attn
            per_layer.append(torch.stack([_split_heads(attention.k_proj(memory), self.heads),
                                          _split_heads(attention.v_proj(memory), self.heads)]))
        return torch.stack(per_layer)


class DecoderStepGraph(torch.nn.Module):
    """tokens (B, U) (Whisper's prompt + the tokens so far), cross_kv, memory_lengths (B,), start
    (a scalar) -> log_probs (B, U - start, V): the next-token log-posteriors at positions start ..
    U - 1. A greedy step asks for the last position (start = U - 1); checking a whole draft
    hypothesis (the previous exit's) asks for all of them at once."""

    def __init__(self, decoder: WhisperDecoder, transposed_output: bool = False):
        super().__init__()
        self.whisper = decoder.whisper
        self.heads = decoder.whisper.config.decoder_attention_heads
        self.transposed_output = transposed_output

    def forward(self, tokens: torch.Tensor, cross_kv: torch.Tensor, memory_lengths: torch.Tensor,
                start: torch.Tensor):
        whisper, heads = self.whisper, self.heads
        steps = tokens.size(1)
        x = whisper.embed_tokens(tokens) + whisper.embed_positions.weight[:steps]
        causal = torch.ones(steps, steps, dtype=torch.bool, device=x.device).tril()
        self_mask = WhisperDecoder._additive(causal, x.dtype)
        frames = torch.arange(cross_kv.size(-2), device=x.device)
        valid = frames[None, :] < memory_lengths[:, None]  # (B, T)
        cross_mask = WhisperDecoder._additive(valid[:, None, None, :], x.dtype)
        for i, layer in enumerate(whisper.layers):
            attention = layer.self_attn
            y = layer.self_attn_layer_norm(x)
            q, k, v = (_split_heads(proj(y), heads)
                       for proj in (attention.q_proj, attention.k_proj, attention.v_proj))
            x = x + attention.out_proj(_attend(q, k, v, self_mask))
            attention = layer.encoder_attn
            q = _split_heads(attention.q_proj(layer.encoder_attn_layer_norm(x)), heads)
            x = x + attention.out_proj(_attend(q, cross_kv[i, 0], cross_kv[i, 1], cross_mask))
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        wanted = whisper.layer_norm(x[:, start:])  # (B, N, D)
        if self.transposed_output:
            # the exporter stores a transposed copy of the tied embedding: the weight operand that
            # onnxruntime's dynamic int8 quantisation turns into int8 once, at export
            logits = wanted @ whisper.embed_tokens.weight.t()
        else:
            # (V, D) @ (B, D, N): the tied embedding read as it is, stored once (fp32: 114 MB for
            # tiny.en instead of 193); quantised, though, it would be the side quantised at every run
            logits = (whisper.embed_tokens.weight @ wanted.transpose(1, 2)).transpose(1, 2)
        return torch.log_softmax(logits, dim=-1)


def whisper_feature_arrays(encoder: EarlyExitWhisperEncoder) -> Dict[str, np.ndarray]:
    """The Hann window (N_FFT,) and mel filters (n_mels, N_FFT // 2 + 1) of Whisper's log-mel."""
    log_mel = encoder.log_mel
    assert log_mel.window.numel() == N_FFT
    return dict(window=log_mel.window.cpu().numpy(), filters=log_mel.filters.cpu().numpy())
