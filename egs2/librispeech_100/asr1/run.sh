#!/usr/bin/env bash
# LibriSpeech train-clean-100 (100 h): the LibriSpeech recipe, trained on train-clean-100 only, for
# 70 epochs with 15 k warm-up steps (an --asr_args of yours replaces both). It runs
# ../../librispeech/asr1/run.sh here (this dir links the same asr.sh, local/ and conf/), so every
# experiment and option listed in that script's header works the same way, e.g.
#   ./run.sh --librispeech_dir /corpora/LibriSpeech
#   ./run.sh --stage 10 --asr_config conf/tuning/train_asr_conformer_single_exit_l6.yaml
set -euo pipefail

exec ../../librispeech/asr1/run.sh --train_subsets train-clean-100 \
    --asr_args "--max_epoch 70 --scheduler_conf warmup_steps=15000" "$@"
