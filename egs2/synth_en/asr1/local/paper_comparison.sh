#!/usr/bin/env bash
# The paper's comparison at CPU scale on synth_en, one command; every exit decoded and scored
# (run.sh stages 11-13), then one table (rows = encoder depth k/L, a column per kind of model) in
# RESULTS.md and exp/paper_comparison[_whisper].png, with each model's training time under it.
#
# --backbone conformer (default): the 12-layer early-exit Conformer-CTC from scratch, single-exit
#   baselines of each depth, and the 12-layer single-exit model fine-tuned with exits (its heads and
#   norms of exits 2..10 fresh), every model with the same training budget:
#   local/paper_comparison.sh --asr_args "--max_epoch 8"
#   local/paper_comparison.sh --corpus_size tiny --asr_args "--max_epoch 1" --single_exit_layers "2 12"
#   The fine-tuned model starts from the 12-layer baseline's averaged checkpoint and trains with
#   --ft_asr_args (default: --asr_args).
#
# --backbone whisper: early-exit Whisper tiny.en fine-tuned (conf/train_asr_eexit_whisper.yaml),
#   single-exit Whisper fine-tuned at the depths of --single_exit_layers (default "2 4":
#   conf/tuning/train_asr_whisper_single_exit_l<k>.yaml), and the early-exit Conformer from scratch
#   (--conformer_asr_args), meant at the same wall-clock budget: give each kind the epochs that fill
#   it (a single-exit step is cheaper than an early-exit one) and read the training times under
#   the table:
#   local/paper_comparison.sh --backbone whisper --asr_args "--max_epoch 1" \
#       --single_exit_asr_args "--max_epoch 3" --conformer_asr_args "--max_epoch 3"
#
# Finished models are skipped when it is run again. Other options go to run.sh (e.g. --ngpu 1).
set -euo pipefail

backbone=conformer
corpus_size=default
asr_args=                        # training budget of the early-exit model(s), e.g. "--max_epoch 8"
ft_asr_args=                     # conformer: the fine-tuning run's (default: asr_args)
single_exit_asr_args=            # whisper: the single-exit models' (default: asr_args)
conformer_asr_args=              # whisper: the Conformer from scratch's (default: asr_args)
single_exit_layers=              # default: "2 4 6 8 10 12" (conformer), "2 4" (whisper)
test_set=test
help_message="Usage: $0 [--backbone conformer|whisper] [--corpus_size tiny|default|large] [--asr_args ARGS]
    [--ft_asr_args ARGS] [--single_exit_asr_args ARGS] [--conformer_asr_args ARGS]
    [--single_exit_layers \"k ...\"] [--test_set test] [run.sh options...]"
run_sh_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h) echo "${help_message}"; exit 0 ;;
        --backbone|--corpus_size|--asr_args|--ft_asr_args|--single_exit_asr_args|--conformer_asr_args|--single_exit_layers|--test_set)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            name=${1#--}; printf -v "${name}" '%s' "$2"; shift 2 ;;
        *) run_sh_args+=("$1"); shift ;;
    esac
done
[ -n "${ft_asr_args}" ] || ft_asr_args=${asr_args}
[ -n "${single_exit_asr_args}" ] || single_exit_asr_args=${asr_args}
[ -n "${conformer_asr_args}" ] || conformer_asr_args=${asr_args}
case ${backbone} in
    conformer)
        [ -n "${single_exit_layers}" ] || single_exit_layers="2 4 6 8 10 12"
        case " ${single_exit_layers} " in *" 12 "*) ;; *) echo "$0: --single_exit_layers must include 12 (the fine-tuning start)" >&2; exit 2 ;; esac ;;
    whisper)
        [ -n "${single_exit_layers}" ] || single_exit_layers="2 4" ;;
    *) echo "$0: --backbone must be conformer or whisper" >&2; exit 2 ;;
esac
for k in ${single_exit_layers}; do
    config=conf/tuning/train_asr_${backbone}_single_exit_l${k}.yaml
    [ -f "${config}" ] || { echo "$0: --single_exit_layers ${k}: ${config} does not exist" >&2; exit 2; }
done

. ./path.sh  # the project's venv (compare_models below)
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (paper_comparison) $*"; }
common=(--corpus_size "${corpus_size}" --test_sets "${test_set}" --exit_policies "" --exit_sweep false "${run_sh_args[@]}")
decode_tag() { echo "$(basename "$1" .yaml)_asr_model_valid.loss.ave"; }  # <inference config>

prepare() {  # <backbone> <stats dir>: data, token list and stats (run.sh stages 1-10), once
    if [ -s "$2/train/speech_shape" ]; then
        log "$1: data, token list and stats already made ($2)"
    else
        log "$1: data, token list and stats (run.sh stages 1-10)"
        ./run.sh --stop_stage 10 --backbone "$1" "${common[@]}"
    fi
}
pairs=()
train() {  # <label> <backbone> <asr_tag> <asr_args> <inference config> [run.sh options]
    local label=$1 model_backbone=$2 tag=$3 args=$4 inference_config=$5
    shift 5
    local decode_dir=exp/asr_${tag}/$(decode_tag "${inference_config}")
    pairs+=("${label}=${decode_dir}")
    if [ -f "${decode_dir}/${test_set}/.done" ]; then
        log "${tag}: already trained and scored"
        return 0
    fi
    log "${tag}: train, decode, score (log: exp/asr_${tag}/train.log)"
    ./run.sh --stage 11 --stop_stage 13 --backbone "${model_backbone}" --asr_tag "${tag}" --asr_args "${args}" \
        --inference_config "${inference_config}" "${common[@]}" "$@"
    touch "${decode_dir}/${test_set}/.done"
}

prepare conformer exp/asr_stats_raw_char
ctc=conf/decode_ctc_greedy.yaml
if [ "${backbone}" = conformer ]; then
    train "early-exit (from scratch)" conformer eexit_char "${asr_args}" "${ctc}" --asr_config conf/train_asr_eexit_conformer.yaml
    for k in ${single_exit_layers}; do
        train "single-exit (k layers)" conformer "single_exit_l${k}_char" "${asr_args}" "${ctc}" \
            --asr_config "conf/tuning/train_asr_conformer_single_exit_l${k}.yaml"
    done
    train "early-exit (fine-tuned from single-exit 12)" conformer eexit_ft_from_l12_char "${ft_asr_args}" "${ctc}" \
        --asr_config conf/train_asr_eexit_conformer.yaml --pretrained_model "exp/asr_single_exit_l12_char/valid.loss.ave.pth"
    title="Paper comparison (corpus ${corpus_size}, training ${asr_args:-as configured})"
    png=exp/paper_comparison.png
else
    prepare whisper exp/asr_stats_raw_hugging_face_waveform
    whisper=conf/decode_whisper.yaml
    train "early-exit Whisper (fine-tuned)" whisper eexit_whisper "${asr_args}" "${whisper}" \
        --asr_config conf/train_asr_eexit_whisper.yaml
    for k in ${single_exit_layers}; do
        train "single-exit Whisper (k layers, fine-tuned)" whisper "single_exit_l${k}_whisper" "${single_exit_asr_args}" \
            "${whisper}" --asr_config "conf/tuning/train_asr_whisper_single_exit_l${k}.yaml"
    done
    train "early-exit Conformer (from scratch)" conformer eexit_char "${conformer_asr_args}" "${ctc}" \
        --asr_config conf/train_asr_eexit_conformer.yaml
    title="Paper comparison with Whisper (corpus ${corpus_size}; training: early-exit ${asr_args:-as configured}, single-exit ${single_exit_asr_args:-as configured}, Conformer ${conformer_asr_args:-as configured})"
    png=exp/paper_comparison_whisper.png
fi

python3 -m espnet_eexit.bin.compare_models --test_set "${test_set}" --title "${title}" \
    --update_md RESULTS.md --output_png "${png}" "${pairs[@]}"
log "table in RESULTS.md, plot in ${png}"
