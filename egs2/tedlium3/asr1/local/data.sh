#!/usr/bin/env bash
# Stage 1 of the TED-LIUM 3 recipe: the release-3 archive (downloaded when there is a network,
# resumable and checksum-verified; ~51 GB) or an existing copy -> data/{train,dev,test}.
#   train: TEDLIUM_release-3/data (the full 452 h training set; --train_part legacy/train for the
#          TED-LIUM 2 training talks); dev, test: TEDLIUM_release-3/legacy/{dev,test}.
#
#   local/data.sh --tedlium_dir /corpora/TEDLIUM_release-3     # an existing copy
#   local/data.sh --download_dir downloads                     # fetch from openslr.org (resource 51)
set -euo pipefail

tedlium_dir=     # existing copy: the TEDLIUM_release-3/ folder or the folder holding it
download_dir=downloads
train_part=data  # or legacy/train
url=https://www.openslr.org/resources/51/TEDLIUM_release-3.tgz
help_message="Usage: $0 [--tedlium_dir DIR] [--download_dir DIR] [--train_part data|legacy/train] [--url URL]"
. utils/parse_options.sh
[ $# -eq 0 ] || { echo "${help_message}" >&2; exit 1; }

if [ -n "${tedlium_dir}" ]; then
    [ -d "${tedlium_dir}/TEDLIUM_release-3" ] && tedlium_dir=${tedlium_dir}/TEDLIUM_release-3
    [ -d "${tedlium_dir}" ] || { echo "$0: --tedlium_dir ${tedlium_dir}: no such directory" >&2; exit 1; }
else
    utils/download_and_untar.sh --remove_archive true \
        "${url}" "$(awk '{ print $1 }' local/sha256sums)" "${download_dir}"
    tedlium_dir=${download_dir}/TEDLIUM_release-3
fi

for part in "${train_part}:train" legacy/dev:dev legacy/test:test; do
    src=${tedlium_dir}/${part%%:*}
    for sub in stm sph; do
        [ -d "${src}/${sub}" ] || { echo "$0: ${src}/${sub} is missing (not a TED-LIUM release 3 copy?)" >&2; exit 1; }
    done
    python3 local/prepare_tedlium.py "${src}/stm" "${src}/sph" "data/${part##*:}"
done
