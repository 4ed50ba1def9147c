#!/usr/bin/env bash
# synth_en: early-exit ASR on an offline multi-speaker synthetic English corpus (see README.md).
#
#   ./run.sh                                    # default corpus (~5 h), stages 1-13: early-exit Whisper
#                                               # tiny.en fine-tuned, 1 epoch, dev, test, test_engine and
#                                               # real_test decoded
#   ./run.sh --test_sets "test test_engine real_test"   # what `make demo` runs
#   ./run.sh --corpus_size tiny                 # ~200 utterances (CI smoke test)
#   ./run.sh --stage 10                         # collect stats, train (resumes exp/), decode, score
#
# The 12-layer early-exit Conformer-CTC trained from scratch (characters, greedy CTC, policies):
#   ./run.sh --backbone conformer                                    # the full run: 18 epochs, ~2.7 h
#   ./run.sh --backbone conformer --asr_args "--max_epoch 4 --keep_nbest_models 2"   # the former make demo
#   ./run.sh --backbone conformer --token_type bpe --nbpe 256        # the paper's BPE 256 (slow on CPU)
#   ./run.sh --backbone conformer --asr_config conf/tuning/train_asr_conformer_single_exit_l12.yaml   # single-exit baseline (also l2..l10)
#   ./run.sh --backbone conformer --asr_config conf/tuning/train_asr_eexit_conformer_aed.yaml \
#            --inference_config conf/decode_aed.yaml                 # AED, decoder per exit
#   ./run.sh --backbone conformer --stage 12 --inference_config conf/decode_ctc.yaml   # CTC prefix beam search
#   ./run.sh --backbone conformer --stage 6 --stop_stage 8 --use_lm true   # character LM, then:
#   ./run.sh --backbone conformer --stage 12 --use_lm true --inference_config conf/decode_ctc_lm.yaml
#
# --corpus_size and --backbone are this script's; every other option goes to asr.sh (./asr.sh
# --help) and overrides what the backbone sets.
set -euo pipefail

corpus_size=default
backbone=whisper
# The sets decoded and scored by default (--test_sets overrides): dev and test (Kokoro and espeak-ng
# voices never trained on), test_engine (flite: an engine no training utterance comes from) and
# real_test (recorded speech: Debian's Asterisk telephone prompts).
test_sets="dev test test_engine real_test"
asr_sh_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --corpus_size) corpus_size=$2; shift 2 ;;
        --corpus_size=*) corpus_size=${1#*=}; shift ;;
        --backbone) backbone=$2; shift 2 ;;
        --backbone=*) backbone=${1#*=}; shift ;;
        *) asr_sh_args+=("$1"); shift ;;
    esac
done
case ${corpus_size} in
    tiny|default|large) ;;
    *) echo "$0: --corpus_size must be tiny, default or large" >&2; exit 2 ;;
esac
case ${backbone} in
    conformer)  # 12-layer early-exit Conformer-CTC from scratch, characters, greedy CTC decoding
        backbone_args=(--token_type char --asr_config conf/train_asr_eexit_conformer.yaml
                       --inference_config conf/decode_ctc_greedy.yaml
                       --exit_policies "entropy:0.3 nbest_posterior:0.9") ;;
    whisper)    # Whisper tiny.en with an exit after each of its 4 layers, each with its own copy of
        # Whisper's pretrained decoder: Whisper's tokens of the lower-cased text (hypotheses upper-cased for
        # scoring), raw waveforms in (no global MVN), every layer fine-tuned. The frozen variants
        # (conf/tuning/train_asr_eexit_whisper_frozen_{path,encoder}.yaml: the pretrained encoder
        # and the decoders' language model kept) are measured in RESULTS.md ("Many voices, real
        # speech"); frozen, Whisper needs its 30-s padded input, which this recipe does not give it.
        # No CTC head: the policies read each exit's decoder (max_posterior 0.74: the dev-chosen
        # threshold of RESULTS.md, "Dynamic exits on early-exit Whisper").
        backbone_args=(--token_type hugging_face
                       --hugging_face_model_name_or_path ../../../tools/pretrained/whisper-tiny.en/tokenizer_lowercase
                       --hyp_cleaner upper --feats_normalize none
                       --asr_config conf/train_asr_eexit_whisper.yaml
                       --inference_config conf/decode_whisper.yaml
                       --exit_policies "max_posterior:0.74"
                       --reference_model bundled) ;;  # the untouched tiny.en scored beside the exits
    *) echo "$0: --backbone must be conformer or whisper" >&2; exit 2 ;;
esac

./asr.sh \
    "${backbone_args[@]}" \
    --nj 2 \
    --inference_nj 2 \
    --train_set train \
    --valid_set dev \
    --test_sets "${test_sets}" \
    --min_wav_duration 0.3 \
    --max_wav_duration 20 \
    --local_data_opts "--corpus_size ${corpus_size}" \
    --lm_config conf/train_lm_rnn.yaml \
    --lm_train_text data/local/lm_train.txt \
    --lm_test_text dump/raw/test/text \
    "${asr_sh_args[@]}"
