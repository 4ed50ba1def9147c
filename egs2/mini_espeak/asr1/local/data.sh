#!/usr/bin/env bash
# Stage 1 of the mini recipe: synthesise the espeak-ng command-word corpus into data/{train,dev,test}.
set -euo pipefail
num_train=300   # training utterances (7 voices)
num_dev=30      # dev utterances (1 held-out voice)
num_test=40     # test utterances (2 other held-out voices)
nj=2
seed=1
help_message="Usage: $0 [--num_train N] [--num_dev N] [--num_test N] [--nj N] [--seed N]"
. utils/parse_options.sh
command -v espeak-ng > /dev/null || { echo "$0: espeak-ng not found (tools/install.sh installs it)" >&2; exit 1; }
command -v sox > /dev/null || { echo "$0: sox not found (tools/install.sh installs it)" >&2; exit 1; }
python3 local/make_data.py --num_train "${num_train}" --num_dev "${num_dev}" \
    --num_test "${num_test}" --nj "${nj}" --seed "${seed}" data
