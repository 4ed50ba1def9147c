# Environment for recipes (each recipe links this file): the project venv (tools/install.sh) and sclite.
# Resolve the link first: a recipe's path.sh links egs2/TEMPLATE/asr1/path.sh, whose repository
# root is three levels up wherever the recipe itself lives.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
if [ -f "${MAIN_ROOT}/tools/activate_python.sh" ]; then
    . "${MAIN_ROOT}/tools/activate_python.sh"
else
    echo "path.sh: ${MAIN_ROOT}/tools/activate_python.sh not found: run 'make -C ${MAIN_ROOT}/tools' first" >&2
    return 1
fi
export PATH="/usr/lib/sctk/bin:${PATH}"
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
