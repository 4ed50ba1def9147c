#!/usr/bin/env bash
# synth_en: early-exit ASR on an offline multi-speaker synthetic English corpus (see README.md).
#
#   ./run.sh                                    # default corpus (~5 h), stages 1-13 (the full run)
#   ./run.sh --asr_args "--max_epoch 4 --keep_nbest_models 2"   # what `make demo` runs (47 min measured)
#   ./run.sh --corpus_size tiny                 # ~200 utterances (CI smoke test)
#   ./run.sh --stage 10                         # collect stats, train (resumes exp/), decode, score
#   ./run.sh --token_type bpe --nbpe 256        # the paper's BPE 256 (slow to converge on CPU)
#   ./run.sh --asr_config conf/tuning/train_asr_conformer_single_exit_l12.yaml   # single-exit baseline (also l2..l10)
#   ./run.sh --asr_config conf/tuning/train_asr_eexit_conformer_aed.yaml \
#            --inference_config conf/decode_aed.yaml                         # AED, decoder per exit
#   ./run.sh --stage 12 --inference_config conf/decode_ctc.yaml   # CTC prefix beam search (beam 4, slow on CPU)
#   ./run.sh --stage 6 --stop_stage 8 --use_lm true   # character LM (stats, training, perplexity), then:
#   ./run.sh --stage 12 --use_lm true --inference_config conf/decode_ctc_lm.yaml   # decode with it
#
# --corpus_size is this script's; every other option goes to asr.sh (./asr.sh --help).
set -euo pipefail

corpus_size=default
asr_sh_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --corpus_size) corpus_size=$2; shift 2 ;;
        --corpus_size=*) corpus_size=${1#*=}; shift ;;
        *) asr_sh_args+=("$1"); shift ;;
    esac
done
case ${corpus_size} in
    tiny|default|large) ;;
    *) echo "$0: --corpus_size must be tiny, default or large" >&2; exit 2 ;;
esac

./asr.sh \
    --token_type char \
    --nj 2 \
    --inference_nj 2 \
    --train_set train \
    --valid_set dev \
    --test_sets "dev test" \
    --min_wav_duration 0.3 \
    --max_wav_duration 20 \
    --local_data_opts "--corpus_size ${corpus_size}" \
    --asr_config conf/train_asr_eexit_conformer.yaml \
    --lm_config conf/train_lm_rnn.yaml \
    --lm_train_text data/local/lm_train.txt \
    --lm_test_text dump/raw/test/text \
    --inference_config conf/decode_ctc_greedy.yaml \
    --exit_policies "entropy:0.3 nbest_posterior:0.9" \
    "${asr_sh_args[@]}"
