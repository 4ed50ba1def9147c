#!/usr/bin/env bash
# Split a Kaldi scp/text file into N contiguous parts of (almost) equal line counts.
#
#   utils/split_scp.sh <in.scp> <out.1.scp> <out.2.scp> ... <out.N.scp>
#
# Like Kaldi's split_scp.pl without --utt2spk: line order is kept, part sizes differ by at most 1.
# Fails when there are more parts than lines (an empty part would make a job fail later).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "Usage: $0 <in.scp> <out.1.scp> ... <out.N.scp>" >&2
    exit 1
fi
in=$1; shift
[ -f "${in}" ] || { echo "$0: ${in} not found" >&2; exit 1; }
lines=$(wc -l < "${in}")
parts=$#
if [ "${lines}" -lt "${parts}" ]; then
    echo "$0: ${in} has ${lines} lines, fewer than the ${parts} parts asked for" >&2
    exit 1
fi
i=0
for out in "$@"; do
    mkdir -p "$(dirname "${out}")"
    # part i (0-based) gets lines [i*lines/parts, (i+1)*lines/parts)
    awk -v a=$(( i * lines / parts )) -v b=$(( (i + 1) * lines / parts )) \
        'NR > a && NR <= b' "${in}" > "${out}"
    i=$((i + 1))
done
