#!/usr/bin/env bash
# Stage 1 of synth_en: Jane Austen sentences (Debian r-cran-janeaustenr) spoken by offline TTS
# voices (Kokoro, piper, festival, espeak-ng; flite for test_engine only) -> data/{train,dev,test,test_engine},
# and recorded speech never trained on (Debian's Asterisk telephone prompts) -> data/real_test.
# See README.md for the split.
set -euo pipefail
corpus_size=default   # tiny (~200 utterances, CI), default (~5 h), large (~10 h)
nj=2
seed=1
janeaustenr_dir=      # default: tools/janeaustenr (unpacked by tools/install.sh) or the system's
real_test=true        # data/real_test from asterisk-core-sounds-en(-wav) (local/prepare_real_test.py)
help_message="Usage: $0 [--corpus_size tiny|default|large] [--nj N] [--seed N] [--janeaustenr_dir DIR] [--real_test true|false]"
. utils/parse_options.sh

if [ ! -s data/local/text/persuasion.txt ]; then
    if [ -z "${janeaustenr_dir}" ]; then
        for d in ../../../tools/janeaustenr/usr/lib/R/site-library/janeaustenr /usr/lib/R/site-library/janeaustenr; do
            [ -f "${d}/data/Rdata.rdb" ] && { janeaustenr_dir=${d}; break; }
        done
    fi
    if [ -z "${janeaustenr_dir}" ]; then
        echo "$0: Jane Austen's text not found: run tools/install.sh or pass --janeaustenr_dir" >&2
        exit 1
    fi
    python3 local/prepare_text.py --janeaustenr_dir "${janeaustenr_dir}" data/local/text
fi
python3 local/make_corpus.py --text_dir data/local/text --corpus_size "${corpus_size}" \
    --nj "${nj}" --seed "${seed}" data
if ${real_test}; then
    real_test_opts=
    [ "${corpus_size}" = tiny ] && real_test_opts="--max_utterances 12"  # a CI-sized subset
    # shellcheck disable=SC2086
    python3 local/prepare_real_test.py ${real_test_opts} data/real_test
fi
