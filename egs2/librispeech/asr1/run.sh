#!/usr/bin/env bash
# LibriSpeech 960 h: the early-exit paper's experiments (README.md; conf/ = ../../../conf/paper).
#
# Data (stage 1): downloaded from openslr.org when there is a network (resumable, SHA-256 checked),
# or an existing copy:  ./run.sh --librispeech_dir /corpora/LibriSpeech
#
# The paper's experiments, one command each (after the first, add --stage 10 to reuse the data):
#   ./run.sh                                                                   # EE Conformer-CTC, 6 exits (default)
#   ./run.sh --asr_config conf/train_asr_eexit_conformer_aed.yaml \
#            --inference_config conf/decode_asr_aed.yaml                       # EE Conformer-AED, a decoder per exit
#   for k in 2 4 6 8 10 12; do
#     ./run.sh --asr_config conf/tuning/train_asr_conformer_single_exit_l${k}.yaml   # single-exit baselines
#   done
#   ./run.sh --asr_config conf/train_asr_eexit_wav2vec2_ctc.yaml --feats_normalize none   # wav2vec2 Base + exits
#   ./run.sh --asr_config conf/train_asr_eexit_wavlm_ctc.yaml --feats_normalize none      # WavLM Base+ + exits
#   ./run.sh --asr_config conf/train_asr_eexit_conformer_ctc.yaml --asr_tag eexit_ctc_from_l12 \
#            --pretrained_model exp/asr_train_asr_conformer_single_exit_l12_bpe256/valid.loss.ave.pth
#                                  # fine-tune the 12-layer single-exit model with exits (new heads fresh)
# GPUs: --ngpu N (ESPnet's launcher; multi-node: --num_nodes, see cmd.sh). --librispeech_dir and
# --train_subsets (comma-separated, default: all three training subsets) are this script's; every
# other option goes to asr.sh (./asr.sh --help). Stages 12-13 decode and score every exit and the
# --exit_policies runs.
set -euo pipefail

librispeech_dir=
train_subsets=
asr_sh_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --librispeech_dir) librispeech_dir=$2; shift 2 ;;
        --librispeech_dir=*) librispeech_dir=${1#*=}; shift ;;
        --train_subsets) train_subsets=$2; shift 2 ;;
        --train_subsets=*) train_subsets=${1#*=}; shift ;;
        *) asr_sh_args+=("$1"); shift ;;
    esac
done
local_data_opts=""
[ -n "${librispeech_dir}" ] && local_data_opts+=" --librispeech_dir ${librispeech_dir}"
[ -n "${train_subsets}" ] && local_data_opts+=" --train_subsets ${train_subsets}"

./asr.sh \
    --ngpu 1 \
    --nj 16 \
    --inference_nj 16 \
    --local_data_opts "${local_data_opts}" \
    --token_type bpe \
    --nbpe 256 \
    --audio_format flac \
    --train_set train \
    --valid_set dev \
    --test_sets "dev_clean dev_other test_clean test_other" \
    --max_wav_duration 30 \
    --asr_config conf/train_asr_eexit_conformer_ctc.yaml \
    --inference_config conf/decode_asr_ctc.yaml \
    --exit_policies "entropy:0.3 nbest_posterior:0.9" \
    "${asr_sh_args[@]}"
