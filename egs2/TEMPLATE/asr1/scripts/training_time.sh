#!/usr/bin/env bash
# How far an ASR experiment has trained and how long it took, for the RESULTS.md notes.
#
#   scripts/training_time.sh [--python python3] <asr_exp>   e.g. "18 epochs in 152 min (3 runs: resumed 2×)"
#
# The count is espnet_eexit.bin.training_time's (compare_models uses the same): ESPnet's per-epoch
# time= (train + valid) summed over train.log and the train.1.log, train.2.log ... that ESPnet's
# launcher keeps of a resumed training's earlier runs, back to the run that started at epoch 1;
# each epoch once (an epoch trained again after a kill counts with its last run). See
# `python -m espnet_eexit.bin.training_time --help`.
set -euo pipefail

python=python3
help_message="Usage: $0 [--python python3] <asr_exp>"
. "$(dirname "$0")/../utils/parse_options.sh"
if [ $# -ne 1 ]; then echo "${help_message}" >&2; exit 1; fi
${python} -m espnet_eexit.bin.training_time "$1"
