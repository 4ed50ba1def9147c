#!/usr/bin/env bash
# Mini early-exit ASR demo (what `make demo` runs): espeak-ng command words -> 6-layer early-exit
# Conformer-CTC (exits after layers 2, 4, 6) -> every exit decoded and scored. A few minutes on 2
# CPU cores, offline. Any asr.sh option can be added, e.g.
#
#   ./run.sh --stage 10                                   # stats, training, decoding, scoring again
#   ./run.sh --local_data_opts "--num_train 60" --asr_args "--max_epoch 1"   # smoke test
set -euo pipefail

./asr.sh \
    --token_type char \
    --nj 2 \
    --inference_nj 2 \
    --train_set train \
    --valid_set dev \
    --test_sets "dev test" \
    --min_wav_duration 0.3 \
    --max_wav_duration 10 \
    --asr_tag eexit_conformer_mini \
    --asr_config conf/train_asr_eexit_conformer_mini.yaml \
    --inference_config conf/decode_ctc.yaml \
    --exit_policies "entropy:0.3 nbest_posterior:0.9" \
    "$@"
