#!/usr/bin/env bash
# Local job runner with Kaldi's --cmd interface (what run.pl/slurm.pl/queue.pl accept):
#
#   utils/run_local.sh [--gpu N] [--mem X] [--num_threads N] [--name X] [--config F] [--max_jobs_run N] \
#       [JOB=1:N] <log> <command> [args...]
#
# With JOB=1:N it runs N copies of the command in parallel (at most --max_jobs_run at a time,
# default: all), replacing the string JOB in the log path and in every argument by 1..N. Each job
# writes its command line, its output and its exit status to its log. Exits non-zero when any job
# failed, naming the failed jobs' logs.
#
# Threads: each job runs with OMP_NUM_THREADS (and MKL_NUM_THREADS) set to --num_threads, by
# default to its share of the threads the caller allows (OMP_NUM_THREADS, else the number of
# cores) divided by the jobs that run at once, at least 1. Why: PyTorch's OpenMP threads spin
# while they wait, so two decoding jobs of 2 threads each on 2 cores ran ~25x slower than one
# alone (synth_en, all exits: 25 utterances per job took 77 s; 50 utterances alone took 6 s).
# --gpu/--mem/--name/--config are accepted for compatibility with cluster runners and ignored (a GPU job
# just sees the local GPUs).
set -uo pipefail

max_jobs_run=0
num_threads=
while [ $# -gt 0 ]; do
    case "$1" in
        --gpu|--mem|--name|--config) shift 2 ;;
        --num_threads) num_threads=$2; shift 2 ;;
        --max_jobs_run) max_jobs_run=$2; shift 2 ;;
        --*) echo "$0: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done

job_var=
first=1
last=1
if [[ $# -gt 0 && "$1" =~ ^([A-Za-z_]+)=([0-9]+):([0-9]+)$ ]]; then
    job_var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}
    shift
fi
if [ $# -lt 2 ]; then
    echo "Usage: $0 [--gpu N] [--mem X] [--num_threads N] [--name X] [--config F] [--max_jobs_run N] [JOB=1:N] <log> <command> [args...]" >&2
    exit 2
fi
log_template=$1; shift

if [ -z "${num_threads}" ]; then
    concurrent=$((last - first + 1))
    if [ "${max_jobs_run}" -gt 0 ] && [ "${max_jobs_run}" -lt "${concurrent}" ]; then
        concurrent=${max_jobs_run}
    fi
    num_threads=$(( ${OMP_NUM_THREADS:-$(nproc)} / concurrent ))
    [ "${num_threads}" -ge 1 ] || num_threads=1
elif ! [[ "${num_threads}" =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: --num_threads ${num_threads}: must be a positive integer" >&2
    exit 2
fi
export OMP_NUM_THREADS=${num_threads} MKL_NUM_THREADS=${num_threads}

run_one() {  # run_one <job index>
    local n=$1 log args=() arg
    shift
    log=${log_template}
    [ -n "${job_var}" ] && log=${log//${job_var}/${n}}
    for arg in "$@"; do
        [ -n "${job_var}" ] && arg=${arg//${job_var}/${n}}
        args+=("${arg}")
    done
    mkdir -p "$(dirname "${log}")"
    {
        echo "# ${args[*]}"
        echo "# Started at $(date)"
    } > "${log}"
    local start=${SECONDS} status
    # A single argument is a shell command line (as Kaldi's runners accept); several are argv.
    if [ ${#args[@]} -eq 1 ]; then
        bash -c "${args[0]}" >> "${log}" 2>&1
    else
        "${args[@]}" >> "${log}" 2>&1
    fi
    status=$?
    echo "# Accounting: time=$((SECONDS - start)) threads=${num_threads}" >> "${log}"
    echo "# Ended (code ${status}) at $(date), elapsed time $((SECONDS - start)) seconds" >> "${log}"
    return ${status}
}

declare -A pids=()
failed=()
wait_one() {
    local pid n
    wait -n -p pid 2>/dev/null
    local status=$?
    for n in "${!pids[@]}"; do
        if [ "${pids[$n]}" = "${pid}" ]; then
            [ ${status} -ne 0 ] && failed+=("${n}")
            unset "pids[$n]"
        fi
    done
}
for n in $(seq "${first}" "${last}"); do
    if [ "${max_jobs_run}" -gt 0 ] && [ ${#pids[@]} -ge "${max_jobs_run}" ]; then
        wait_one
    fi
    run_one "${n}" "$@" &
    pids[$n]=$!
done
while [ ${#pids[@]} -gt 0 ]; do
    wait_one
done

if [ ${#failed[@]} -gt 0 ]; then
    total=$((last - first + 1))
    for n in "${failed[@]}"; do
        log=${log_template}
        [ -n "${job_var}" ] && log=${log//${job_var}/${n}}
        echo "$0: ${#failed[@]} / ${total} failed, log is in ${log}" >&2
    done
    exit 1
fi
exit 0
