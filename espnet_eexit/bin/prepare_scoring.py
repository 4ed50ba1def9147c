"""Score decoding directories with sclite as ESPnet's asr.sh does, in one process.

    python -m espnet_eexit.bin.prepare_scoring --data_dir data/test [--cleaner none] \
        [--hyp_cleaner none] [--bpemodel bpe.model] [--sclite sclite] \
        exp/asr/decode/test/exit2 exp/asr/decode/test/exit4 ...

Does what ESPnet's asr.sh does with one ``espnet2.bin.tokenize_text`` call per file (same ESPnet
tokenizers and cleaners: references with ``--cleaner``, hypotheses with ``--hyp_cleaner``), but
loads ESPnet once for every exit. ``--hyp_cleaner upper`` (ours) upper-cases hypotheses, writes
their numbers as words and drops their punctuation but apostrophes, for LibriSpeech-style
references and a model that writes lower case and digits (a pretrained tokenizer's, e.g. Whisper's).
For each directory writes ``score_{cer,wer[,ter]}/{ref,hyp}.trn`` and, with ``--sclite``, runs it
into ``result.txt`` (:mod:`espnet_eexit.scoring`, the path every reported error rate takes); an
utterance missing from a hypothesis file scores as deleted.
"""
import argparse
import sys
from pathlib import Path
from typing import Optional

from espnet2.text.build_tokenizer import build_tokenizer

from espnet_eexit.datadir import read_kaldi_text
from espnet_eexit.scoring import build_cleaner, find_sclite, read_utt2spk, run_sclite, write_trn


def warn_unwritable_references(refs, cleaner, token_type: str, token_list: Path,
                               tokenizer_model: Optional[str], source: Path) -> int:
    """Warn (stderr) about references with units outside the model's token list: they become
    ``<unk>`` in training and can never be decoded right, so their errors are not the model's.
    Returns how many references have such units."""
    tokenizer = build_tokenizer(token_type, bpemodel=tokenizer_model)
    units = set(line.strip() for line in token_list.read_text(encoding="utf-8").splitlines())
    examples = {}
    for key, text in refs.items():
        outside = [u for u in tokenizer.text2tokens(cleaner(text)) if u not in units]
        if outside:
            examples[key] = outside
    if examples:
        key = next(iter(examples))
        print(f"prepare_scoring: WARNING: {len(examples)} of {len(refs)} references in {source} have "
              f"units outside {token_list} (the model cannot write them), e.g. {key}: "
              f"{' '.join(sorted(set(examples[key])))}", file=sys.stderr)
    return len(examples)


def main(cmd: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decode_dirs", type=Path, nargs="+", help="directories holding a 'text' file")
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi data dir: text, utt2spk")
    parser.add_argument("--cleaner", default="none", help="ESPnet text cleaner of the references")
    parser.add_argument("--hyp_cleaner", default="none",
                        help="ESPnet text cleaner of the hypotheses, or 'upper' (see above)")
    parser.add_argument("--bpemodel", default=None, help="also write score_ter with this BPE model")
    parser.add_argument("--sclite", default=None,
                        help="also run sclite into result.txt: its path, or 'auto' to find it")
    parser.add_argument("--token_type", default=None,
                        help="with --token_list: warn about references the model cannot write "
                        "(units outside its token list), tokenised as in training")
    parser.add_argument("--token_list", type=Path, default=None, help="the model's token list")
    parser.add_argument("--tokenizer_model", default=None,
                        help="BPE model or Hugging Face tokenizer of --token_type bpe/hugging_face")
    args = parser.parse_args(cmd)

    for f in [args.data_dir / "text", args.data_dir / "utt2spk"] + [d / "text" for d in args.decode_dirs]:
        if not f.is_file():
            parser.error(f"missing file: {f}")
    if args.sclite == "auto":
        args.sclite = find_sclite()
        if args.sclite is None:
            parser.error("sclite not found: install the Debian package sctk (tools/install.sh does)")
    refs = read_kaldi_text(args.data_dir / "text")
    keys = sorted(refs)
    try:
        utt2spk = read_utt2spk(args.data_dir, keys)
    except ValueError as e:
        parser.error(str(e))

    cleaner, hyp_cleaner = build_cleaner(args.cleaner), build_cleaner(args.hyp_cleaner)
    if args.token_list is not None and args.token_type is not None:
        warn_unwritable_references(refs, cleaner, args.token_type, args.token_list, args.tokenizer_model,
                                   args.data_dir / "text")
    hyps_of = {d: read_kaldi_text(d / "text") for d in args.decode_dirs}
    decoded = set().union(*hyps_of.values())
    unscored = sorted(decoded - set(keys))
    if unscored:
        print(f"prepare_scoring: WARNING: {len(unscored)} decoded utterances have no reference in "
              f"{args.data_dir / 'text'} and are not scored, e.g. {unscored[0]}", file=sys.stderr)
    print(f"prepare_scoring: scoring {len(keys)} utterances of {args.data_dir} in "
          f"{len(args.decode_dirs)} decoding directories", file=sys.stderr)
    tokenizers = {"cer": build_tokenizer("char"), "wer": build_tokenizer("word")}
    if args.bpemodel:
        tokenizers["ter"] = build_tokenizer("bpe", bpemodel=args.bpemodel)
    for decode_dir, hyps in hyps_of.items():
        absent = [k for k in keys if k not in hyps]
        if absent:
            print(f"prepare_scoring: WARNING: {decode_dir / 'text'} lacks {len(absent)} of the "
                  f"{len(keys)} references (scored as deleted), e.g. {absent[0]}", file=sys.stderr)
        for metric, tokenizer in tokenizers.items():
            out = decode_dir / f"score_{metric}"
            out.mkdir(parents=True, exist_ok=True)
            write_trn(out / "ref.trn", keys, refs, utt2spk, tokenizer, cleaner)
            write_trn(out / "hyp.trn", keys, hyps, utt2spk, tokenizer, hyp_cleaner)
            if args.sclite:
                run_sclite(args.sclite, out / "ref.trn", out / "hyp.trn", out / "result.txt")


if __name__ == "__main__":
    sys.exit(main())
