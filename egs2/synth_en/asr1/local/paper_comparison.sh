#!/usr/bin/env bash
# The paper's comparison at CPU scale on synth_en, one command: the early-exit model trained from
# scratch, single-exit baselines of each depth, and a single-exit 12-layer model fine-tuned with
# exits (its heads/norms of exits 2..10 fresh), every model with the same training budget; every
# exit decoded and scored (run.sh stages 11-13), then one table (rows = exits, a column per kind)
# in RESULTS.md and exp/paper_comparison.png.
#
#   local/paper_comparison.sh --asr_args "--max_epoch 8"              # same budget for each model
#   local/paper_comparison.sh --corpus_size tiny --asr_args "--max_epoch 1" --single_exit_layers "2 12"
#
# The fine-tuned model starts from the 12-layer baseline's averaged checkpoint and trains with
# --ft_asr_args (default: --asr_args). Other options go to run.sh (e.g. --ngpu 1).
set -euo pipefail

corpus_size=default
asr_args=                        # training budget for every model, e.g. "--max_epoch 8"
ft_asr_args=                     # for the fine-tuning run (default: asr_args)
single_exit_layers="2 4 6 8 10 12"
test_set=test
inference_config=conf/decode_ctc_greedy.yaml
help_message="Usage: $0 [--corpus_size tiny|default|large] [--asr_args ARGS] [--ft_asr_args ARGS] [--single_exit_layers \"2 ... 12\"] [--test_set test] [--inference_config CONF] [run.sh options...]"
run_sh_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h) echo "${help_message}"; exit 0 ;;
        --corpus_size|--asr_args|--ft_asr_args|--single_exit_layers|--test_set|--inference_config)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            name=${1#--}; printf -v "${name}" '%s' "$2"; shift 2 ;;
        *) run_sh_args+=("$1"); shift ;;
    esac
done
[ -n "${ft_asr_args}" ] || ft_asr_args=${asr_args}
case " ${single_exit_layers} " in *" 12 "*) ;; *) echo "$0: --single_exit_layers must include 12 (the fine-tuning start)" >&2; exit 2 ;; esac

. ./path.sh  # the project's venv (compare_models below)
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (paper_comparison) $*"; }
inference_tag=$(basename "${inference_config}" .yaml)_asr_model_valid.loss.ave
common=(--backbone conformer --corpus_size "${corpus_size}" --test_sets "${test_set}" --inference_config "${inference_config}"
        --exit_policies "" --exit_sweep false "${run_sh_args[@]}")

if [ -s exp/asr_stats_raw_char/train/feats_stats.npz ]; then
    log "data, token list and stats: already made (exp/asr_stats_raw_char)"
else
    log "data, token list and stats (run.sh stages 1-10)"
    ./run.sh --stop_stage 10 "${common[@]}"
fi
train() {  # <asr_tag> <asr_args> [run.sh options]
    local tag=$1 args=$2
    shift 2
    if [ -f "exp/asr_${tag}/${inference_tag}/${test_set}/.done" ]; then
        log "${tag}: already trained and scored"
        return 0
    fi
    log "${tag}: train, decode, score (log: exp/asr_${tag}/train.log)"
    ./run.sh --stage 11 --stop_stage 13 --asr_tag "${tag}" --asr_args "${args}" "${common[@]}" "$@"
    touch "exp/asr_${tag}/${inference_tag}/${test_set}/.done"
}
train eexit_char "${asr_args}" --asr_config conf/train_asr_eexit_conformer.yaml
pairs=("early-exit (from scratch)=exp/asr_eexit_char/${inference_tag}")
for k in ${single_exit_layers}; do
    train "single_exit_l${k}_char" "${asr_args}" --asr_config "conf/tuning/train_asr_conformer_single_exit_l${k}.yaml"
    pairs+=("single-exit (k layers)=exp/asr_single_exit_l${k}_char/${inference_tag}")
done
train eexit_ft_from_l12_char "${ft_asr_args}" --asr_config conf/train_asr_eexit_conformer.yaml \
    --pretrained_model "exp/asr_single_exit_l12_char/valid.loss.ave.pth"
pairs+=("early-exit (fine-tuned from single-exit 12)=exp/asr_eexit_ft_from_l12_char/${inference_tag}")

python3 -m espnet_eexit.bin.compare_models --num_layers 12 --test_set "${test_set}" \
    --title "Paper comparison (corpus ${corpus_size}, training ${asr_args:-as configured})" \
    --update_md RESULTS.md --output_png exp/paper_comparison.png "${pairs[@]}"
log "table in RESULTS.md, plot in exp/paper_comparison.png"
