#!/usr/bin/env bash
# Download an archive (resumable), verify its SHA-256, unpack it once.
#
#   utils/download_and_untar.sh [--remove_archive true] <url> <sha256> <dest_dir>
#
# The archive goes to <dest_dir>/<basename of url>; an interrupted download resumes where it
# stopped (curl -C -, or wget -c). The checksum is verified before unpacking: a complete archive
# with the wrong checksum is renamed to <archive>.bad (never unpacked, never silently reused).
# <dest_dir>/.<archive>.done marks a finished unpack, so a second call returns at once.
# Needs a network only when the archive is not already in <dest_dir>.
set -euo pipefail

remove_archive=false
help_message="Usage: $0 [--remove_archive true] <url> <sha256> <dest_dir>"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "${help_message}" >&2; exit 1; fi
url=$1; sha256=$2; dest=$3
name=$(basename "${url}")
archive=${dest}/${name}
done_mark=${dest}/.${name}.done

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0")) $*"; }

if [ -f "${done_mark}" ]; then
    log "${name}: already unpacked in ${dest} (remove ${done_mark} to redo)"
    exit 0
fi
mkdir -p "${dest}"

if ! echo "${sha256}  ${archive}" | sha256sum --check --status 2>/dev/null; then
    log "downloading ${url} -> ${archive} (resumes a partial download)"
    if command -v curl >/dev/null 2>&1; then
        # -C -: resume; --fail: an HTTP error is an error, not an HTML page saved as the archive
        curl --fail --location --retry 3 -C - -o "${archive}" "${url}" \
            || { log "ERROR: download of ${url} failed (no network? give a local copy instead)" >&2; exit 1; }
    elif command -v wget >/dev/null 2>&1; then
        wget --continue --tries 3 -O "${archive}" "${url}" \
            || { log "ERROR: download of ${url} failed (no network? give a local copy instead)" >&2; exit 1; }
    else
        log "ERROR: neither curl nor wget is installed" >&2; exit 1
    fi
    if ! echo "${sha256}  ${archive}" | sha256sum --check --status; then
        mv "${archive}" "${archive}.bad"
        log "ERROR: ${archive}: SHA-256 is not ${sha256}; moved to ${archive}.bad (corrupt or wrong file)" >&2
        exit 1
    fi
fi

log "unpacking ${archive} into ${dest}"
tar -xf "${archive}" -C "${dest}"
touch "${done_mark}"
if ${remove_archive}; then rm -f "${archive}"; fi
log "${name}: done"
