#!/usr/bin/env bash
# Score decoding directories of one test set with sclite, ESPnet style.
#
#   scripts/score_sclite.sh [--cleaner none] [--hyp_cleaner none] [--bpemodel model] \
#       [--token_type char --token_list tokens.txt [--tokenizer_model model]] <data_dir> <decode_dir>...
#
# Reads <data_dir>/{text,utt2spk} and each <decode_dir>/text; writes
# <decode_dir>/score_{cer,wer[,ter]}/{ref.trn,hyp.trn,result.txt} (ter only with --bpemodel).
# With --token_list, warns about references with units the model cannot write.
set -euo pipefail

cleaner=none
hyp_cleaner=none
bpemodel=
token_type=
token_list=
tokenizer_model=
python=python3
help_message="Usage: $0 [--cleaner none] [--hyp_cleaner none|upper|...] [--bpemodel model] [--token_type type --token_list list [--tokenizer_model model]] <data_dir> <decode_dir>..."
. "$(dirname "$0")/../utils/parse_options.sh"
if [ $# -lt 2 ]; then echo "${help_message}" >&2; exit 1; fi
data=$1; shift

opts="--cleaner ${cleaner} --hyp_cleaner ${hyp_cleaner} --sclite auto"
[ -n "${bpemodel}" ] && opts+=" --bpemodel ${bpemodel}"
[ -n "${token_list}" ] && opts+=" --token_type ${token_type} --token_list ${token_list}"
[ -n "${tokenizer_model}" ] && opts+=" --tokenizer_model ${tokenizer_model}"
# One process tokenises references and hypotheses of every directory (ESPnet's tokenizers) and
# runs sclite -i rm -o all on each (espnet_eexit.scoring: the path every reported WER takes).
# shellcheck disable=SC2086
${python} -m espnet_eexit.bin.prepare_scoring --data_dir "${data}" ${opts} "$@"
