#!/usr/bin/env bash
# Parse "--name value" / "--name=value" options into existing shell variables (Kaldi/ESPnet style).
#
# Source it after setting the defaults:   stage=1; nj=4; . utils/parse_options.sh
# "--some-name" and "--some_name" both set $some_name. Only variables that already exist can be
# set, so a typo is an error ("unknown option"), not a silently ignored flag. "--help" prints
# $help_message. Parsing stops at the first argument that is not an option; the rest stay in "$@".

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            echo "${help_message:-No help available for $0}"
            exit 0
            ;;
        --*=*)
            _po_name=${1%%=*}; _po_value=${1#*=}; shift
            ;;
        --*)
            if [ $# -lt 2 ]; then
                echo "$0: option '$1' needs a value" >&2
                exit 1
            fi
            _po_name=$1; _po_value=$2; shift 2
            ;;
        *)
            break
            ;;
    esac
    _po_name=${_po_name#--}
    _po_name=${_po_name//-/_}
    if ! declare -p "${_po_name}" >/dev/null 2>&1 || [[ ! "${_po_name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
        echo "$0: unknown option --${_po_name} (see $0 --help)" >&2
        exit 1
    fi
    printf -v "${_po_name}" '%s' "${_po_value}"
done
unset _po_name _po_value
true
