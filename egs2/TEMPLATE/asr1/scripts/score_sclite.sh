#!/usr/bin/env bash
# Score one decoding directory with sclite, ESPnet style.
#
#   scripts/score_sclite.sh [--cleaner none] [--bpemodel model] <data_dir> <decode_dir>
#
# Reads <data_dir>/{text,utt2spk} and <decode_dir>/text; writes
# <decode_dir>/score_{cer,wer[,ter]}/{ref.trn,hyp.trn,result.txt} (ter only with --bpemodel).
set -euo pipefail

cleaner=none
bpemodel=
python=python3
help_message="Usage: $0 [--cleaner none] [--bpemodel model] <data_dir> <decode_dir>"
. "$(dirname "$0")/../utils/parse_options.sh"
if [ $# -ne 2 ]; then echo "${help_message}" >&2; exit 1; fi
data=$1
dir=$2

sclite=$(command -v sclite || echo /usr/lib/sctk/bin/sclite)
[ -x "${sclite}" ] || { echo "$0: sclite not found: install the Debian package sctk" >&2; exit 1; }
for f in "${data}/text" "${data}/utt2spk" "${dir}/text"; do
    [ -s "${f}" ] || { echo "$0: missing or empty ${f}" >&2; exit 1; }
done

types="cer wer"
[ -n "${bpemodel}" ] && types+=" ter"
for type in ${types}; do
    case ${type} in
        cer) tok_opts="--token_type char" ;;
        wer) tok_opts="--token_type word" ;;
        ter) tok_opts="--token_type bpe --bpemodel ${bpemodel}" ;;
    esac
    scoredir="${dir}/score_${type}"
    mkdir -p "${scoredir}"
    # sclite's trn format: "tokens (spk-utt)"; references get the cleaner, hypotheses do not.
    # shellcheck disable=SC2086
    paste -d' ' \
        <(${python} -m espnet2.bin.tokenize_text -f 2- --input "${data}/text" --output - \
              ${tok_opts} --cleaner "${cleaner}" 2> "${scoredir}/tokenize.log.tmp") \
        <(awk '{ print "(" $2 "-" $1 ")" }' "${data}/utt2spk") > "${scoredir}/ref.trn"
    # Keep the reference order; an utterance the decoder dropped scores as all deleted.
    # shellcheck disable=SC2086
    paste -d' ' \
        <(awk 'NR==FNR { hyp[$1] = $0; next } { print (($1 in hyp) ? hyp[$1] : $1) }' \
              "${dir}/text" "${data}/text" \
          | ${python} -m espnet2.bin.tokenize_text -f 2- --input - --output - ${tok_opts} \
              2>> "${scoredir}/tokenize.log.tmp") \
        <(awk '{ print "(" $2 "-" $1 ")" }' "${data}/utt2spk") > "${scoredir}/hyp.trn"
    mv "${scoredir}/tokenize.log.tmp" "${scoredir}/tokenize.log"
    "${sclite}" -r "${scoredir}/ref.trn" trn -h "${scoredir}/hyp.trn" trn -i rm -o all stdout \
        > "${scoredir}/result.txt"
done
