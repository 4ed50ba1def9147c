#!/usr/bin/env bash
# Check a Kaldi-style ASR data dir and fail with a message naming the problem.
#
#   utils/validate_data_dir.sh [--no_text] [--check_audio] <data_dir>
#
# Checks: wav.scp, utt2spk (and text unless --no_text) exist and are non-empty; each is sorted
# (LC_ALL=C) without duplicate keys; they hold the same utterance ids; no empty transcript; spk2utt
# (if present) matches utt2spk; segments (if present) refers to recordings of wav.scp. With
# --check_audio every plain file path in wav.scp must exist and be non-empty.
set -euo pipefail
export LC_ALL=C

no_text=false
check_audio=false
while [ $# -gt 0 ]; do
    case "$1" in
        --no_text) no_text=true; shift ;;
        --check_audio) check_audio=true; shift ;;
        --*) echo "$0: unknown option $1" >&2; exit 1 ;;
        *) break ;;
    esac
done
if [ $# -ne 1 ]; then echo "Usage: $0 [--no_text] [--check_audio] <data_dir>" >&2; exit 1; fi
data=$1

fail() { echo "$0: ${data}: $*" >&2; exit 1; }
[ -d "${data}" ] || fail "no such data directory"

files="wav.scp utt2spk"
${no_text} || files+=" text"
for f in ${files}; do
    [ -s "${data}/${f}" ] || fail "${f} is missing or empty"
    cut -d' ' -f1 "${data}/${f}" | sort -c 2>/dev/null \
        || fail "${f} is not sorted (LC_ALL=C sort -k1,1 it)"
    dup=$(cut -d' ' -f1 "${data}/${f}" | uniq -d | head -n 1)
    [ -z "${dup}" ] || fail "${f} has duplicate key ${dup}"
done

utts() { cut -d' ' -f1 "${data}/$1"; }
# With segments, wav.scp is keyed by recording and segments by utterance.
if [ -f "${data}/segments" ]; then
    utt_file=segments
    missing=$(comm -23 <(cut -d' ' -f2 "${data}/segments" | sort -u) <(utts wav.scp) | head -n 1)
    [ -z "${missing}" ] || fail "segments refers to recording ${missing}, which is not in wav.scp"
else
    utt_file=wav.scp
fi
for f in utt2spk $(${no_text} || echo text); do
    diff=$(comm -3 <(utts "${utt_file}") <(utts "${f}") | head -n 1 | tr -d '\t')
    [ -z "${diff}" ] || fail "${utt_file} and ${f} do not have the same utterances (e.g. ${diff})"
done
if ! ${no_text}; then
    empty=$(awk 'NF < 2 { print $1; exit }' "${data}/text")
    [ -z "${empty}" ] || fail "text has an empty transcript for ${empty}"
fi
if [ -f "${data}/spk2utt" ]; then
    diff=$(cmp <(awk '{ for (i = 2; i <= NF; i++) print $i, $1 }' "${data}/spk2utt" | sort) \
               <(sort "${data}/utt2spk") 2>&1 || true)
    [ -z "${diff}" ] || fail "spk2utt does not match utt2spk (regenerate spk2utt from utt2spk)"
fi
if ${check_audio}; then
    while read -r key path rest; do
        [ -n "${rest}" ] && continue  # a command ("sox ... |"), checked when it is read
        [ -s "${path}" ] || fail "wav.scp: audio of ${key} is missing or empty: ${path}"
    done < "${data}/wav.scp"
fi
