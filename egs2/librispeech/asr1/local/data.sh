#!/usr/bin/env bash
# Stage 1 of the LibriSpeech recipes: the official archives (downloaded when there is a network,
# resumable and checksum-verified) or an existing copy -> data/{train,dev,dev_clean,dev_other,
# test_clean,test_other}. dev = dev_clean + dev_other (validation during training).
#
#   local/data.sh --librispeech_dir /corpora          # an existing copy: /corpora/LibriSpeech/<subset>/...
#   local/data.sh --download_dir downloads            # fetch from openslr.org (resource 12) first
set -euo pipefail

librispeech_dir=   # existing copy: the LibriSpeech/ folder or the folder holding it
download_dir=downloads
train_subsets="train-clean-100 train-clean-360 train-other-500"  # space- or comma-separated
mirror=https://www.openslr.org/resources/12   # or https://us.openslr.org/resources/12, ...
help_message="Usage: $0 [--librispeech_dir DIR] [--download_dir DIR] [--train_subsets \"train-clean-100 ...\"] [--mirror URL]"
. utils/parse_options.sh
[ $# -eq 0 ] || { echo "${help_message}" >&2; exit 1; }
train_subsets=${train_subsets//,/ }  # commas: one word through run.sh's --local_data_opts

eval_subsets="dev-clean dev-other test-clean test-other"
if [ -n "${librispeech_dir}" ]; then
    [ -d "${librispeech_dir}/LibriSpeech" ] && librispeech_dir=${librispeech_dir}/LibriSpeech
    [ -d "${librispeech_dir}" ] || { echo "$0: --librispeech_dir ${librispeech_dir}: no such directory" >&2; exit 1; }
    for subset in ${train_subsets} ${eval_subsets}; do
        [ -d "${librispeech_dir}/${subset}" ] \
            || { echo "$0: ${librispeech_dir}/${subset} is missing from the local copy" >&2; exit 1; }
    done
else
    for subset in ${train_subsets} ${eval_subsets}; do
        sha256=$(awk -v f="${subset}.tar.gz" '$2 == f { print $1 }' local/sha256sums)
        [ -n "${sha256}" ] || { echo "$0: unknown subset ${subset} (see local/sha256sums)" >&2; exit 1; }
        utils/download_and_untar.sh --remove_archive true \
            "${mirror}/${subset}.tar.gz" "${sha256}" "${download_dir}"
    done
    librispeech_dir=${download_dir}/LibriSpeech
fi

# shellcheck disable=SC2086
python3 local/prepare_librispeech.py --corpus_dir "${librispeech_dir}" ${train_subsets} data/train
for subset in ${eval_subsets}; do
    python3 local/prepare_librispeech.py --corpus_dir "${librispeech_dir}" "${subset}" "data/${subset//-/_}"
done
python3 local/prepare_librispeech.py --corpus_dir "${librispeech_dir}" dev-clean dev-other data/dev
