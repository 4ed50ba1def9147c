#!/usr/bin/env bash
# How far an ASR experiment has trained and how long it took, for the RESULTS.md notes.
#
#   scripts/training_time.sh <asr_exp>     e.g. "18 epochs in 152 min (3 runs: resumed 2×)"
#
# A resumed training (./run.sh --stage 11) starts a new train.log and ESPnet's launcher keeps the
# earlier ones as train.1.log, train.2.log, ... (newest first): read back to the run that started
# at epoch 1 (older logs belong to an earlier training in the same directory). Each run counts
# from its first log line to its last finished epoch, so the unfinished epoch of a killed run
# (redone after the resume) and the time between runs are not counted.
set -euo pipefail

if [ $# -ne 1 ]; then echo "Usage: $0 <asr_exp>" >&2; exit 1; fi
exp=$1
[ -f "${exp}/train.log" ] || { echo "$0: ${exp}/train.log not found" >&2; exit 1; }

stamp='[0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9:]\{8\}'
epochs=0 seconds=0 runs=0 i=0 log=${exp}/train.log
while [ -f "${log}" ]; do
    results=$(grep "epoch results" "${log}" || true)
    if [ -n "${results}" ]; then
        last=$(tail -n 1 <<< "${results}")
        t0=$(grep -m1 -o "${stamp}" "${log}")
        t1=$(grep -m1 -o "${stamp}" <<< "${last}")
        seconds=$(( seconds + $(date -d "${t1}" +%s) - $(date -d "${t0}" +%s) ))
        runs=$(( runs + 1 ))
        n=$(grep -o "[0-9]*epoch results" <<< "${last}" | grep -o "^[0-9]*")
        [ "${n}" -gt "${epochs}" ] && epochs=${n}
        first=$(head -n 1 <<< "${results}" | grep -o "[0-9]*epoch results" | grep -o "^[0-9]*")
        [ "${first}" -eq 1 ] && break
    fi
    i=$(( i + 1 ))
    log=${exp}/train.${i}.log
done

unit=epochs
[ "${epochs}" -eq 1 ] && unit=epoch
if [ "${runs}" -eq 0 ]; then
    echo "no finished epoch"
elif [ "${runs}" -eq 1 ]; then
    echo "${epochs} ${unit} in $(( seconds / 60 )) min"
else
    echo "${epochs} ${unit} in $(( seconds / 60 )) min (${runs} runs: resumed $(( runs - 1 ))×)"
fi
