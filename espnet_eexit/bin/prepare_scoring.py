"""Score decoding directories with sclite as ESPnet's asr.sh does, in one process.

    python -m espnet_eexit.bin.prepare_scoring --data_dir data/test [--cleaner none] \
        [--hyp_cleaner none] [--bpemodel bpe.model] [--sclite sclite] \
        exp/asr/decode/test/exit2 exp/asr/decode/test/exit4 ...

Does what ESPnet's asr.sh does with one ``espnet2.bin.tokenize_text`` call per file (same ESPnet
tokenizers and cleaners: references with ``--cleaner``, hypotheses with ``--hyp_cleaner``), but
loads ESPnet once for every exit. ``--hyp_cleaner upper`` (ours) upper-cases hypotheses and drops
their punctuation but apostrophes, for LibriSpeech-style references and a model that writes
lower case (a pretrained tokenizer's, e.g. Whisper's).
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
from espnet_eexit.scoring import build_cleaner, find_sclite, run_sclite, write_trn


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
    args = parser.parse_args(cmd)

    for f in [args.data_dir / "text", args.data_dir / "utt2spk"] + [d / "text" for d in args.decode_dirs]:
        if not f.is_file():
            parser.error(f"missing file: {f}")
    if args.sclite == "auto":
        args.sclite = find_sclite()
        if args.sclite is None:
            parser.error("sclite not found: install the Debian package sctk (tools/install.sh does)")
    refs = read_kaldi_text(args.data_dir / "text")
    utt2spk = dict(line.split(maxsplit=1) for line in
                   (args.data_dir / "utt2spk").read_text().splitlines() if line.strip())
    keys = sorted(refs)
    missing_spk = [k for k in keys if k not in utt2spk]
    if missing_spk:
        parser.error(f"{args.data_dir}/utt2spk lacks {len(missing_spk)} utterances, e.g. {missing_spk[0]}")
    utt2spk = {k: v.strip() for k, v in utt2spk.items()}

    cleaner, hyp_cleaner = build_cleaner(args.cleaner), build_cleaner(args.hyp_cleaner)
    tokenizers = {"cer": build_tokenizer("char"), "wer": build_tokenizer("word")}
    if args.bpemodel:
        tokenizers["ter"] = build_tokenizer("bpe", bpemodel=args.bpemodel)
    for decode_dir in args.decode_dirs:
        hyps = read_kaldi_text(decode_dir / "text")
        for metric, tokenizer in tokenizers.items():
            out = decode_dir / f"score_{metric}"
            out.mkdir(parents=True, exist_ok=True)
            write_trn(out / "ref.trn", keys, refs, utt2spk, tokenizer, cleaner)
            write_trn(out / "hyp.trn", keys, hyps, utt2spk, tokenizer, hyp_cleaner)
            if args.sclite:
                run_sclite(args.sclite, out / "ref.trn", out / "hyp.trn", out / "result.txt")


if __name__ == "__main__":
    sys.exit(main())
