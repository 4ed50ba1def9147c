#!/usr/bin/env python3
"""Teacher-forced token accuracy of the untouched Whisper checkpoint, with dropout off and on.

    python local/whisper_dropout_check.py [--model ../../../tools/pretrained/whisper-tiny.en] \
        [--data dump/raw/dev] [--num_utts 24] [--dropout 0.1]

Why: fine-tuning tiny.en with dropout_rate 0.1 (encoder and decoder) trained far worse than
without (RESULTS.md). Whisper was trained without dropout; this measures what dropout alone does
to the pretrained model's predictions in training mode, before any update.
"""
import argparse

import soundfile
import torch
from transformers import PreTrainedTokenizerFast, WhisperFeatureExtractor, WhisperForConditionalGeneration


def accuracy(model, extractor, tokenizer, items, texts) -> float:
    sot, notimestamps, eot = (tokenizer.convert_tokens_to_ids(t) for t in
                              ("<|startoftranscript|>", "<|notimestamps|>", "<|endoftext|>"))
    correct = total = 0
    with torch.no_grad():
        for key, path in items:
            audio, rate = soundfile.read(path)
            feats = torch.tensor(extractor(audio, sampling_rate=rate, return_tensors="np").input_features)
            ids = torch.tensor([[sot, notimestamps] + tokenizer(texts[key].lower())["input_ids"] + [eot]])
            pred = model(input_features=feats, decoder_input_ids=ids[:, :-1]).logits.argmax(-1)[0]
            correct += int((pred[1:] == ids[0, 2:]).sum())
            total += ids.size(1) - 2
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="../../../tools/pretrained/whisper-tiny.en")
    parser.add_argument("--data", default="dump/raw/dev")
    parser.add_argument("--num_utts", type=int, default=24)
    parser.add_argument("--dropout", type=float, default=0.1)
    args = parser.parse_args()
    items = [line.split(maxsplit=1) for line in open(f"{args.data}/wav.scp")][: args.num_utts]
    texts = dict(line.rstrip("\n").split(" ", 1) for line in open(f"{args.data}/text"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{args.model}/tokenizer_lowercase/tokenizer.json")
    extractor = WhisperFeatureExtractor(feature_size=80)
    torch.manual_seed(0)
    for dropout in (0.0, args.dropout):
        model = WhisperForConditionalGeneration.from_pretrained(args.model, dropout=dropout)
        for mode in ("eval", "train"):
            getattr(model, mode)()
            acc = accuracy(model, extractor, tokenizer, [(k, p.strip()) for k, p in items], texts)
            print(f"dropout {dropout:g}, {mode} mode: token accuracy {acc:.3f} ({len(items)} utterances)")


if __name__ == "__main__":
    main()
