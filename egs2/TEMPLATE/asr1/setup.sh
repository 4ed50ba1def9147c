#!/usr/bin/env bash
# Start a new recipe from the template (as ESPnet's egs2/TEMPLATE/asr1/setup.sh does).
#
#   egs2/TEMPLATE/asr1/setup.sh egs2/my_corpus/asr1
#
# Links asr.sh, path.sh, scripts/, pyscripts/ and utils/ to this template (relative links inside
# this repository, absolute ones elsewhere) and copies cmd.sh; then write local/data.sh, conf/ and
# run.sh (egs2/synth_en/asr1 is a model). Copying a recipe with `cp -r` outside egs2/<name>/asr1
# breaks its relative links: use this script instead.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "Usage: $0 <new_recipe_dir>" >&2
    exit 1
fi
dir=$1
template=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
root=$(cd "${template}/../../.." && pwd)
if [ -e "${dir}" ]; then
    echo "$0: ${dir} already exists" >&2
    exit 1
fi
mkdir -p "${dir}/conf" "${dir}/local"
dir=$(cd "${dir}" && pwd)
case ${dir} in
    "${root}"/egs2/*/asr1) target=../../TEMPLATE/asr1 ;;  # same depth as every recipe here
    *) target=${template} ;;
esac
for name in asr.sh path.sh scripts pyscripts utils; do
    ln -s "${target}/${name}" "${dir}/${name}"
done
cp "${root}/egs2/synth_en/asr1/cmd.sh" "${dir}/cmd.sh"
echo "$0: created ${dir} (links to ${target}); now add local/data.sh, conf/ and run.sh"
