#!/usr/bin/env bash
# Mini early-exit ASR demo: espeak-ng command words -> early-exit Conformer-CTC -> every exit
# decoded and scored. Runs in a few minutes on 2 CPU cores, fully offline.
#
#   ./run.sh                      # all stages
#   ./run.sh --stage 10           # collect stats, train, decode, score on existing data
#   ./run.sh --num_train 60 --asr_args "--max_epoch 1"   # smoke test
#
# Stages use ESPnet's numbering: 1 data, 5 token list, 10 collect stats, 11 training,
# 12 decoding (every exit), 13 scoring (sclite, RESULTS.md, wer_per_exit.png).
set -euo pipefail

stage=1
stop_stage=13
nj=2                 # parallel jobs for data generation and collect-stats
num_train=300        # utterances: train / dev / test (dev and test voices are not in train)
num_dev=30
num_test=40
asr_config=conf/train_asr_eexit_conformer_mini.yaml
inference_config=conf/decode_ctc.yaml
asr_args=            # extra options for asr_train, e.g. "--max_epoch 1"
inference_args=      # extra options for asr_inference
inference_model=valid.loss.ave.pth
asr_tag=eexit_conformer_mini
python=python3

run_args="$*"
help_message=$(cat <<EOF
Usage: $0 [options]
  --stage N             first stage to run (default ${stage})
  --stop_stage N        last stage to run (default ${stop_stage})
  --nj N                parallel jobs (default ${nj})
  --num_train N         training utterances to synthesise (default ${num_train})
  --num_dev N           dev utterances (default ${num_dev})
  --num_test N          test utterances (default ${num_test})
  --asr_config FILE     training config (default ${asr_config})
  --inference_config F  decoding config (default ${inference_config})
  --asr_args "..."      extra asr_train options
  --inference_args "..." extra asr_inference options
  --inference_model F   checkpoint to decode (default ${inference_model})
  --asr_tag NAME        experiment name under exp/ (default ${asr_tag})
EOF
)
. utils/parse_options.sh
. ./path.sh

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh) $*"; }

token_list=data/token_list/char/tokens.txt
stats_dir=exp/asr_stats_char
asr_exp=exp/asr_${asr_tag}
# ESPnet's naming: <inference config>_asr_model_<checkpoint>
decode_dir=${asr_exp}/$(basename "${inference_config}" .yaml)_asr_model_${inference_model%.*}
test_sets="dev test"

need() {  # need <file>...: fail clearly when an earlier stage has not produced its output
    for f in "$@"; do
        [ -s "${f}" ] || { log "ERROR: ${f} is missing: run the earlier stages first (see --help)"; exit 1; }
    done
}

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: synthesise data with espeak-ng -> data/{train,dev,test}"
    ${python} local/make_data.py --num_train "${num_train}" --num_dev "${num_dev}" \
        --num_test "${num_test}" --nj "${nj}" data
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: character token list -> ${token_list}"
    need data/train/text
    mkdir -p "$(dirname "${token_list}")"
    ${python} -m espnet2.bin.tokenize_text --token_type char --input data/train/text \
        --output "${token_list}" --field 2- --write_vocabulary true \
        --add_symbol "<blank>:0" --add_symbol "<unk>:1" --add_symbol "<sos/eos>:-1"
fi

# Options shared by collect-stats and training (ESPnet's asr.sh passes the same).
common_opts="--use_preprocessor true --token_type char --token_list ${token_list}
    --non_linguistic_symbols none --cleaner none --g2p none --config ${asr_config}
    --frontend_conf fs=16k"

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: collect stats -> ${stats_dir}"
    need data/train/wav.scp data/dev/wav.scp "${token_list}"
    mkdir -p "${stats_dir}"
    # shellcheck disable=SC2086
    ${python} -m espnet_eexit.bin.asr_train --collect_stats true ${common_opts} \
        --train_data_path_and_name_and_type data/train/wav.scp,speech,sound \
        --train_data_path_and_name_and_type data/train/text,text,text \
        --valid_data_path_and_name_and_type data/dev/wav.scp,speech,sound \
        --valid_data_path_and_name_and_type data/dev/text,text,text \
        --train_shape_file data/train/wav.scp --valid_shape_file data/dev/wav.scp \
        --output_dir "${stats_dir}/stats.1" ${asr_args} > "${stats_dir}/stats.1.log" 2>&1 \
        || { tail -n 20 "${stats_dir}/stats.1.log"; exit 1; }
    ${python} -m espnet2.bin.aggregate_stats_dirs --input_dir "${stats_dir}/stats.1" \
        --output_dir "${stats_dir}"
    for dset in train valid; do
        awk -v N="$(wc -l < "${token_list}")" '{ print $0 "," N }' \
            "${stats_dir}/${dset}/text_shape" > "${stats_dir}/${dset}/text_shape.char"
    done
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    log "Stage 11: training -> ${asr_exp} (log: ${asr_exp}/train.log)"
    need "${stats_dir}/train/speech_shape" "${stats_dir}/train/text_shape.char"
    mkdir -p "${asr_exp}"
    # shellcheck disable=SC2086
    ${python} -m espnet_eexit.bin.asr_train ${common_opts} --ngpu 0 --resume true \
        --train_data_path_and_name_and_type data/train/wav.scp,speech,sound \
        --train_data_path_and_name_and_type data/train/text,text,text \
        --valid_data_path_and_name_and_type data/dev/wav.scp,speech,sound \
        --valid_data_path_and_name_and_type data/dev/text,text,text \
        --train_shape_file "${stats_dir}/train/speech_shape" \
        --train_shape_file "${stats_dir}/train/text_shape.char" \
        --valid_shape_file "${stats_dir}/valid/speech_shape" \
        --valid_shape_file "${stats_dir}/valid/text_shape.char" \
        --output_dir "${asr_exp}" ${asr_args} > "${asr_exp}/train.log" 2>&1 &
    train_pid=$!
    # Show progress: one line per finished epoch with the validation CER of every exit.
    shown=
    while kill -0 "${train_pid}" 2>/dev/null; do
        sleep 5
        line=$(grep -h "epoch results" "${asr_exp}/train.log" 2>/dev/null | tail -n 1 || true)
        if [ -n "${line}" ] && [ "${line}" != "${shown}" ]; then
            shown=${line}
            epoch=$(grep -o "[0-9]*epoch results" <<< "${line}" | grep -o "^[0-9]*")
            valid=$(sed 's/.*\[valid\]//' <<< "${line}" | grep -o "cer_ctc_exit[0-9]*=[0-9.]*" | tr '\n' ' ')
            log "  epoch ${epoch}: valid ${valid}"
        fi
    done
    wait "${train_pid}" || { tail -n 30 "${asr_exp}/train.log"; log "ERROR: training failed"; exit 1; }
fi

if [ ${stage} -le 12 ] && [ ${stop_stage} -ge 12 ]; then
    need "${asr_exp}/config.yaml" "${asr_exp}/${inference_model}"
    exits=$(${python} -m espnet_eexit.bin.show_exits "${asr_exp}/config.yaml")
    log "Stage 12: decoding every exit (${exits}) -> ${decode_dir}"
    for dset in ${test_sets}; do
        for k in ${exits}; do
            dir=${decode_dir}/${dset}/exit${k}
            mkdir -p "${dir}"
            # shellcheck disable=SC2086
            ${python} -m espnet_eexit.bin.asr_inference --ngpu 0 --exit_layer "${k}" \
                --config "${inference_config}" \
                --data_path_and_name_and_type "data/${dset}/wav.scp,speech,sound" \
                --asr_train_config "${asr_exp}/config.yaml" \
                --asr_model_file "${asr_exp}/${inference_model}" \
                --output_dir "${dir}/output" ${inference_args} > "${dir}/decode.log" 2>&1 \
                || { tail -n 20 "${dir}/decode.log"; exit 1; }
            for f in text token score; do
                sort -k1,1 "${dir}/output/1best_recog/${f}" > "${dir}/${f}"
            done
            cp "${dir}/output/exit_info" "${dir}/exit_info"
            log "  ${dset} exit ${k}: $(grep relative_depth "${dir}/exit_info")"
        done
    done
fi

if [ ${stage} -le 13 ] && [ ${stop_stage} -ge 13 ]; then
    log "Stage 13: scoring every exit with sclite"
    need "${asr_exp}/config.yaml"
    exits=$(${python} -m espnet_eexit.bin.show_exits "${asr_exp}/config.yaml")
    for dset in ${test_sets}; do
        dirs=
        for k in ${exits}; do
            need "${decode_dir}/${dset}/exit${k}/text"
            dirs+=" ${decode_dir}/${dset}/exit${k}"
        done
        # shellcheck disable=SC2086
        scripts/score_sclite.sh --python "${python}" "data/${dset}" ${dirs}
    done
    ${python} -m espnet_eexit.bin.exit_results "${decode_dir}" \
        --num_layers "$(${python} -m espnet_eexit.bin.show_exits --num_layers "${asr_exp}/config.yaml")" \
        --title "${asr_exp##*/}: $(basename "${decode_dir}")" \
        --output_md "${decode_dir}/RESULTS.md" --output_png "${asr_exp}/wer_per_exit.png"
    {
        echo "<!-- Generated by run.sh stage 13; figures from the run described below. -->"
        echo "# mini_espeak: early-exit Conformer-CTC on espeak-ng command words"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(uname -m), $(nproc) CPU cores," \
             "$(${python} -c 'import torch, espnet; print(f"torch {torch.__version__}, espnet {espnet.__version__}")' 2>/dev/null)"
        echo "- data: $(wc -l < data/train/text) train / $(wc -l < data/dev/text) dev /" \
             "$(wc -l < data/test/text) test utterances (dev/test voices unseen in training);" \
             "config: \`${asr_config}\`, decoding: \`${inference_config}\`"
        stamp='[0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9:]\{8\}'
        t0=$(grep -m1 -o "${stamp}" "${asr_exp}/train.log")
        t1=$(grep "epoch results" "${asr_exp}/train.log" | tail -n 1 | grep -o "${stamp}")
        echo "- training: $(grep -c 'epoch results' "${asr_exp}/train.log") epochs in" \
             "$(( ($(date -d "${t1}" +%s) - $(date -d "${t0}" +%s)) / 60 )) min (train.log timestamps)"
        echo "- command: \`./run.sh ${run_args}\`"
        echo
        cat "${decode_dir}/RESULTS.md"
        echo
        echo "WER per exit: \`${asr_exp}/wer_per_exit.png\`"
    } > RESULTS.md
    log "Wrote RESULTS.md and ${asr_exp}/wer_per_exit.png"
fi
