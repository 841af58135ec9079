#!/usr/bin/env bash
# Shared stage script of every speechlm1 recipe. Recipes only set options in run.sh.
# The logic lives in the Python entry points (espnet2/bin/speechlm_*.py); this file only
# orders them, loops over sets and tasks, and leaves skip-if-done markers so a re-run resumes.
#
# Stages (ESPnet numbering):
#   1 data preparation (local/data.sh)      7 length statistics
#   2 audio formatting                      8 training
#   3 tokenizer training                    9 inference
#   4 (free)                               10 evaluation
#   5 tokenization into data.json          11 model packing / sharing
#   6 joint vocabulary                     12 dataset packing / sharing
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}:${BASH_LINENO[0]}) $*" >&2; }

# ---- options (override on the command line: --name value) ------------------------------------
stage=1                 # first stage to run
stop_stage=12           # last stage to run
nj=2                    # parallel processes for local data preparation (stages 2 and 5) and scoring (stage 10)
prep_cmd=utils/run.sh   # stage 5 launcher in the `${cmd} JOB=1:N LOG COMMAND` form (run.sh: local, slurm.sh: Slurm)
prep_jobs=""            # stage 5 shard jobs launched by prep_cmd (default: nj); job k tokenizes every k-th shard
prep_shard_size=1000    # examples per stage 5 shard (the unit of work and of resumption)
python=python           # python interpreter
data_name=data          # corpus name, used in the experiment and hub names
task=""                 # one task (shortcut for --tasks)
tasks="asr"             # tasks trained together (template names or YAML paths)
test_tasks=""           # tasks evaluated in stages 9-10 (default: all tasks)
train_set=train
valid_set=valid
test_sets="test"
fs=16000                # audio sample rate after stage 2
local_data_opts=""      # options passed to local/data.sh
tokenizer_config=conf/tokenizers.yaml
train_config=conf/train.yaml
inference_config=conf/decode.yaml
score_config_dir=""     # default: ${TEMPLATE}/conf/score (one YAML per task)
task_dir=conf/tasks     # user-defined task templates (YAML), looked up before the built-ins
dumpdir=dump
expdir=exp
tag=""                  # experiment tag (default: basename of train_config)
ngpu=0                  # 0: CPU processes
num_procs=1             # training processes (CPU) or GPUs per node
inference_batch_size=16
nbest=1
hf_repo=""              # model repo on the HF hub (stage 11 uploads only when set)
hf_dataset_repo=""      # dataset repo on the HF hub (stage 12 uploads only when set)
max_seconds=30          # drop longer audio at tokenization
tokenizer_max_items=1000  # items sampled per tokenizer for training (stage 3)

help_message="Usage: $0 --tasks 'asr tts' --train_set train --valid_set valid --test_sets 'test' [options]
Options (see the comments in $0):
$(sed -n '/^# ---- options/,/^help_message/p' "$0" | grep -E '^[a-z_]+=' | grep -v '^help_message' | sed 's/^/  --/')

Stage 5 (tokenization) runs --prep_jobs shard jobs through --prep_cmd, ESPnet's --cmd form:
  \${prep_cmd} JOB=1:N dump/logs/stage5_<task>_<set>/tokenize.JOB.log <command with JOB>
then merges them locally (redoing, with --nj processes, any shard not done). Launchers:
  utils/run.sh [--max_jobs_run M]            background processes on this machine (default)
  utils/slurm.sh [--partition P --mem 16G --num_threads 4 --time 4:00:00 --max_jobs_run M --gpu N
                  --account=... (other sbatch options as --name=value)]   one Slurm job array
  \"\"                                         no jobs: one local process pool of --nj processes
Any other command (e.g. \"srun -c 4\", the older launcher-prefix form) is put in front of each
job's command under utils/run.sh. A recipe's cmd.sh, sourced before the options are read,
sets the recipe's default (prep_cmd=...); the command line wins over it."

# the recipe's launcher choice (ESPnet's cmd.sh): a default that --prep_cmd on the command line overrides
if [ -f ./cmd.sh ]; then
    # shellcheck disable=SC1091
    . ./cmd.sh
fi

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) echo "${help_message}"; exit 0 ;;
        --*=*) name="${1%%=*}"; set -- "${name}" "${1#*=}" "${@:2}"; continue ;;  # --name=value -> --name value
        --*) name="${1#--}"
             if ! sed -n '/^# ---- options/,/^help_message/p' "$0" | grep -qE "^${name}="; then echo "$0: unknown option $1" >&2; exit 1; fi
             [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
             eval "${name}=\"\$2\""; shift 2 ;;
        *) echo "$0: unexpected argument $1" >&2; exit 1 ;;
    esac
done

# stages are 1..12; a range that selects nothing is a mistake, not a silent no-op
for opt in stage stop_stage; do
    case "${!opt}" in
        ''|*[!0-9]*) echo "$0: --${opt} must be a stage number 1-12, got '${!opt}'" >&2; exit 1 ;;
    esac
    if [ "${!opt}" -lt 1 ] || [ "${!opt}" -gt 12 ]; then
        echo "$0: --${opt} ${!opt} is not a stage (1-12)" >&2; exit 1
    fi
done
if [ "${stage}" -gt "${stop_stage}" ]; then
    echo "$0: --stage ${stage} is after --stop_stage ${stop_stage}: nothing would run" >&2; exit 1
fi

TEMPLATE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"  # recipes link to this file
[ -n "${task}" ] && tasks="${task}"
[ -n "${test_tasks}" ] || test_tasks="${tasks}"
[ -n "${score_config_dir}" ] || score_config_dir="${TEMPLATE}/conf/score"
[ -n "${tag}" ] || tag="$(basename "${train_config}" .yaml)"
[ -n "${prep_jobs}" ] || prep_jobs="${nj}"
# --prep_cmd: a launcher (*.sh, *.pl) takes JOB=1:N LOG COMMAND; anything else is the older
# prefix form ("srun -c 4"), put in front of each job's command under utils/run.sh
prep_prefix=""
case "${prep_cmd%% *}" in
    ""|*.sh|*.pl) ;;
    *) prep_prefix="${prep_cmd}"; prep_cmd="utils/run.sh" ;;
esac
case "${prep_cmd}" in  # launchers under utils/ come with the template: recipes need no utils/ link
    utils/*) [ -e "${prep_cmd%% *}" ] || prep_cmd="${TEMPLATE}/${prep_cmd}" ;;
esac
exp="${expdir}/speechlm_${data_name}_${tag}"
# data-level outputs (tokenizers, vocabulary) are shared by every experiment on this dump
tokdir="${dumpdir}/tokenizers"
vocabdir="${dumpdir}/vocab"
data_marks="${dumpdir}/.done"   # stages 1-7
exp_marks="${exp}/.done"        # stages 8-12
mkdir -p "${data_marks}" "${exp_marks}"
task_dir_opt=""; [ -d "${task_dir}" ] && task_dir_opt="--task_dir ${task_dir}"

# name of a task's dump dir: a YAML path becomes its file stem
task_key() { basename "$1" .yaml; }
marks_of() { case "$1" in stage[1-7]*) echo "${data_marks}" ;; *) echo "${exp_marks}" ;; esac; }
# A marker holds what its step was made from (task list, fingerprints of the configs and of
# the files the step reads): a step is skipped only when that still holds, and redone when it
# does not (redo=1). So a task added to --tasks tokenizes only that task and redoes the
# vocabulary, statistics, training and decoding; a changed tokenizer config re-tokenizes,
# which changes the data.json files, which redoes everything after them.
done_or_run() {  # done_or_run <marker> <description> [inputs]: returns 0 if the step has to run
    local m; m="$(marks_of "$1")/$1"
    redo=0
    if [ -f "${m}" ]; then
        if [ ! -s "${m}" ]; then log "skip $2 (done, by an earlier version of this script that recorded no inputs; rm ${m} to redo)"; return 1; fi
        if [ "$(cat "${m}")" == "${3:-}" ]; then log "skip $2 (done; rm ${m} to redo)"; return 1; fi
        log "redo $2: its inputs changed (was: '$(cat "${m}")'; now: '${3:-}')"
        redo=1
    fi
    return 0
}
mark() { printf '%s\n' "${2:-}" > "$(marks_of "$1")/$1"; }  # mark <marker> [inputs]
unmark() { rm -f "$(marks_of "$1")/$1"; }  # a redo under way: if it fails, the retry resumes it
fingerprint() { ${python} -m espnet2.bin.speechlm_fingerprint "$@"; }  # content hash of files / folders
run_stage() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }

all_sets="${train_set} ${valid_set} ${test_sets}"

# stage 1 depends on its options and script; stage 2 on the index files it reads and --fs;
# stage 5 (below) also on the audio stage 2 wrote
if run_stage 1; then prep_inputs="opts: ${local_data_opts}; script: $(fingerprint local/data.sh)"; fi
if run_stage 1 && done_or_run stage1 "stage 1: data preparation" "${prep_inputs}"; then
    log "stage 1: local/data.sh ${local_data_opts}"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts}
    mark stage1 "${prep_inputs}"
fi

if run_stage 2; then
    for dset in ${all_sets}; do
        fmt_inputs="fs: ${fs}; data: $(fingerprint "data/${dset}")"
        done_or_run "stage2_${dset}" "stage 2: format ${dset}" "${fmt_inputs}" || continue
        log "stage 2: audio formatting of data/${dset} -> ${dumpdir}/audio/${dset} (fs=${fs})"
        ${python} -m espnet2.bin.speechlm_format_audio --in_dir "data/${dset}" \
            --out_dir "${dumpdir}/audio/${dset}" --fs "${fs}" --nj "${nj}"
        mark "stage2_${dset}" "${fmt_inputs}"
    done
fi

task_list="$(echo ${tasks})"  # normalised spacing
# each marker's inputs are computed in a plain assignment, so a failure stops the script (set -e)
if run_stage 3; then tok_inputs="tasks: ${task_list}; configs: $(fingerprint "${tokenizer_config}" "${task_dir}")"; fi
if run_stage 3 && done_or_run stage3 "stage 3: tokenizer training" "${tok_inputs}"; then
    log "stage 3: tokenizer training on ${dumpdir}/audio/${train_set}"
    # shellcheck disable=SC2086
    ${python} -m espnet2.bin.speechlm_prepare train_tokenizers --data_dir "${dumpdir}/audio/${train_set}" \
        --tasks ${tasks} --tokenizer_config "${tokenizer_config}" --tokenizer_dir "${tokdir}" \
        --max_items "${tokenizer_max_items}" ${task_dir_opt}
    mark stage3 "${tok_inputs}"
fi

if run_stage 5; then
    for t in ${tasks}; do
        for dset in ${all_sets}; do
            key="$(task_key "${t}")"
            tok5_inputs="configs: $(fingerprint "${tokenizer_config}" "${task_dir}"); max_seconds: ${max_seconds}; audio: $(
                fingerprint "${dumpdir}/audio/${dset}")"
            done_or_run "stage5_${key}_${dset}" "stage 5: tokenize ${key}/${dset}" "${tok5_inputs}" || continue
            out="${dumpdir}/${key}/${dset}"
            if [ "${redo}" = 1 ]; then
                log "stage 5: removing ${out} (made with other settings)"
                rm -rf "${out}"; unmark "stage5_${key}_${dset}"
            fi
            tok_args=(--task "${t}" --data_dir "${dumpdir}/audio/${dset}" --tokenizer_config "${tokenizer_config}"
                      --tokenizer_dir "${tokdir}" --out_dir "${out}" --max_seconds "${max_seconds}"
                      --shard_size "${prep_shard_size}")
            # no more jobs than shards (ids counted in wav.scp and text); one local job is left to the merge call
            jobs="${prep_jobs}"
            n_ids=$(cd "${dumpdir}/audio/${dset}" && cat $(ls wav.scp text 2>/dev/null) </dev/null | cut -d' ' -f1 | sort -u | wc -l)
            shards=$(( (n_ids + prep_shard_size - 1) / prep_shard_size ))
            [ "${n_ids}" -gt 0 ] && [ "${shards}" -lt "${jobs}" ] && jobs="${shards}"
            if [ -n "${prep_cmd}" ] && { [ "${jobs}" -gt 1 ] || [ -n "${prep_prefix}" ] || [[ "${prep_cmd%% *}" != *utils/run.sh ]]; }; then
                logdir="${dumpdir}/logs/stage5_${key}_${dset}"
                log "stage 5: tokenization ${key} ${dset}: ${jobs} jobs with ${prep_cmd} (logs: ${logdir})"
                # shellcheck disable=SC2086,SC2016
                ${prep_cmd} JOB=1:"${jobs}" "${logdir}/tokenize.JOB.log" ${prep_prefix} \
                    ${python} -m espnet2.bin.speechlm_prepare tokenize "${tok_args[@]}" \
                    --job_index '$((JOB-1))' --num_jobs "${jobs}" ${task_dir_opt} ||
                    { log "stage 5: shard jobs of ${key}/${dset} failed (logs named above); a re-run redoes only the unfinished shards"; exit 1; }
            fi
            log "stage 5: tokenization ${key} ${dset}: merge (and any shard not done, with --nj ${nj})"
            # shellcheck disable=SC2086
            ${python} -m espnet2.bin.speechlm_prepare tokenize "${tok_args[@]}" --nj "${nj}" ${task_dir_opt}
            mark "stage5_${key}_${dset}" "${tok5_inputs}"
        done
    done
fi

data_jsons() {  # data_jsons <set>: every task's data.json of a set
    for t in ${tasks}; do echo "${dumpdir}/$(task_key "${t}")/$1/data.json"; done
}

# Stage 6 extends an existing vocabulary (earlier ids stay, so a model can be fine-tuned with
# more tasks); after a tokenizer config change it starts a new one (the old one is moved aside).
tokenizers_print() { if [[ "$1" =~ tokenizers:\ ([0-9a-f]+) ]]; then echo "${BASH_REMATCH[1]}"; fi; }
# shellcheck disable=SC2046
if run_stage 6; then
    vocab_inputs="tasks: ${task_list}; tokenizers: $(fingerprint "${tokenizer_config}"); data: $(
        fingerprint $(data_jsons "${train_set}"))"
fi
if run_stage 6 && done_or_run stage6 "stage 6: joint vocabulary" "${vocab_inputs}"; then
    before="$(tokenizers_print "$(cat "${data_marks}/stage6" 2>/dev/null || true)")"
    if [ "${redo}" = 1 ] && [ -d "${vocabdir}" ] && [ -n "${before}" ] && [ "${before}" != "$(tokenizers_print "${vocab_inputs}")" ]; then
        old="${vocabdir}.$(date '+%Y%m%d-%H%M%S').$$"
        log "stage 6: the tokenizer config changed: a new vocabulary (the earlier one moved to ${old})"
        mv "${vocabdir}" "${old}"
    fi
    unmark stage6
    log "stage 6: joint vocabulary -> ${vocabdir}"
    # shellcheck disable=SC2046
    ${python} -m espnet2.bin.speechlm_prepare vocab --data_json $(data_jsons "${train_set}") --out_dir "${vocabdir}"
    mark stage6 "${vocab_inputs}"
fi

# shellcheck disable=SC2046
if run_stage 7; then
    stats_inputs="tasks: ${task_list}; data: $(fingerprint $(data_jsons "${train_set}") $(data_jsons "${valid_set}"))"
fi
if run_stage 7 && done_or_run stage7 "stage 7: length statistics" "${stats_inputs}"; then
    log "stage 7: length statistics"
    # shellcheck disable=SC2046
    ${python} -m espnet2.bin.speechlm_prepare stats --data_json $(data_jsons "${train_set}") $(data_jsons "${valid_set}")
    mark stage7 "${stats_inputs}"
fi

# shellcheck disable=SC2046
if run_stage 8; then
    train_inputs="tasks: ${task_list}; config: $(fingerprint "${train_config}"); vocab+data: $(
        fingerprint "${vocabdir}/vocab.json" $(data_jsons "${train_set}") $(data_jsons "${valid_set}"))"
fi
if run_stage 8 && done_or_run stage8 "stage 8: training" "${train_inputs}"; then
    if [ "${redo}" = 1 ]; then  # never resume a model made for other inputs
        if [ -d "${exp}/train" ]; then
            old="${exp}/train.$(date '+%Y%m%d-%H%M%S').$$"
            log "stage 8: moving the earlier training to ${old}"
            mv "${exp}/train" "${old}"  # a fresh name (time + pid): never into an existing folder
        fi
        unmark stage8
    fi
    log "stage 8: training -> ${exp}/train (logs: ${exp}/train/log/*.jsonl, TensorBoard: ${exp}/train/tensorboard, plots: ${exp}/train/images)"
    mkdir -p "${exp}/train"
    # shellcheck disable=SC2046
    ${python} -m espnet2.bin.speechlm_train --train_config "${train_config}" \
        --train_data_json $(data_jsons "${train_set}") --valid_data_json $(data_jsons "${valid_set}") \
        --vocab "${vocabdir}/vocab.json" --output_dir "${exp}/train" --ngpu "${ngpu}" --num_procs "${num_procs}"
    mark stage8 "${train_inputs}"
fi

if run_stage 9; then
    model_print="$(fingerprint "${exp}/train/model")"
    for t in ${test_tasks}; do
        for dset in ${test_sets}; do
            key="$(task_key "${t}")"
            dec_inputs="model: ${model_print}; config: $(fingerprint "${inference_config}"); data: $(
                fingerprint "${dumpdir}/${key}/${dset}/data.json"); nbest: ${nbest}"
            done_or_run "stage9_${key}_${dset}" "stage 9: inference ${key}/${dset}" "${dec_inputs}" || continue
            log "stage 9: inference ${key} ${dset}"
            ${python} -m espnet2.bin.speechlm_inference --model_dir "${exp}/train/model" \
                --data_json "${dumpdir}/${key}/${dset}/data.json" --inference_config "${inference_config}" \
                --out_dir "${exp}/decode/${key}_${dset}" --batch_size "${inference_batch_size}" --nbest "${nbest}"
            mark "stage9_${key}_${dset}" "${dec_inputs}"
        done
    done
fi

if run_stage 10; then
    for t in ${test_tasks}; do
        for dset in ${test_sets}; do
            key="$(task_key "${t}")"
            # the recipe's own config first, then the template's; a variant (tts_spkid) falls back to its base (tts)
            score_conf=""
            for c in "conf/score/${key}.yaml" "${score_config_dir}/${key}.yaml" "${score_config_dir}/${key%%_*}.yaml"; do
                if [ -f "${c}" ]; then score_conf="${c}"; break; fi
            done
            [ -n "${score_conf}" ] || { log "stage 10: no score config for ${key}; skipped"; continue; }
            dec="${exp}/decode/${key}_${dset}"
            # scores depend on the hypotheses (the decode folder but its score/), the score config and the references
            # shellcheck disable=SC2046
            score_inputs="hyps: $(fingerprint $(find "${dec}" -mindepth 1 -maxdepth 1 ! -name score | sort)); config: $(
                fingerprint "${score_conf}"); refs: $(fingerprint "${dumpdir}/audio/${dset}")"
            [ -f "${exp}/RESULTS.md" ] || unmark "stage10_${key}_${dset}"  # its rows live there
            done_or_run "stage10_${key}_${dset}" "stage 10: scoring ${key}/${dset}" "${score_inputs}" || continue
            log "stage 10: scoring ${key} ${dset} with ${score_conf}"
            ${python} -m espnet2.bin.speechlm_score --score_config "${score_conf}" \
                --hyp_dir "${exp}/decode/${key}_${dset}" --ref_dir "${dumpdir}/audio/${dset}" \
                --task "${key}" --test_set "${dset}" --out_dir "${exp}/decode/${key}_${dset}/score" \
                --results_md "${exp}/RESULTS.md" --nj "${nj}"
            # Resynthesis topline of a task with codec-audio targets scored by tts_wer: the references
            # through the trained tokenizer, scored by the same config, as the row "<task> (resynthesis
            # topline)"; resynthesis and scores are cached in ${dumpdir}/resynth (they do not depend on the model)
            if grep -q "tts_wer" "${score_conf}"; then
                log "stage 10: resynthesis topline of ${key} ${dset} (cached in ${dumpdir}/resynth)"
                ${python} -m espnet2.bin.speechlm_score topline --score_config "${score_conf}" \
                    --data_json "${dumpdir}/${key}/${dset}/data.json" --ref_dir "${dumpdir}/audio/${dset}" \
                    --tokenizer_dir "${tokdir}" --cache_dir "${dumpdir}/resynth" --task "${key}" --test_set "${dset}" \
                    --results_md "${exp}/RESULTS.md" --nj "${nj}" --no_progress
            fi
            mark "stage10_${key}_${dset}" "${score_inputs}"
        done
    done
    [ -f "${exp}/RESULTS.md" ] && cat "${exp}/RESULTS.md"
fi

if run_stage 11; then
    log "stage 11: pack model -> ${exp}/packed"
    results_opt=""; [ -f "${exp}/RESULTS.md" ] && results_opt="--results_md ${exp}/RESULTS.md"
    # shellcheck disable=SC2086
    ${python} -m espnet2.bin.speechlm_hub pack --model_dir "${exp}/train/model" --out_dir "${exp}/packed" \
        --overwrite --name "speechlm_${data_name}_${tag}" --tasks ${tasks} --datasets "${data_name}" \
        ${hf_repo:+--repo_id "${hf_repo}"} ${results_opt}
    if [ -n "${hf_repo}" ]; then
        log "stage 11: upload ${exp}/packed -> ${hf_repo}"
        ${python} -m espnet2.bin.speechlm_hub upload "${exp}/packed" "${hf_repo}"
    fi
fi

if run_stage 12; then
    log "stage 12: pack tokenized dataset -> ${exp}/dataset"
    # shellcheck disable=SC2046
    ${python} -m espnet2.bin.speechlm_hub pack_dataset --data_json $(for s in ${all_sets}; do data_jsons "${s}"; done) \
        --vocab_dir "${vocabdir}" --out_dir "${exp}/dataset"
    if [ -n "${hf_dataset_repo}" ]; then
        log "stage 12: upload ${exp}/dataset -> ${hf_dataset_repo}"
        ${python} -m espnet2.bin.speechlm_hub upload_dataset "${exp}/dataset" "${hf_dataset_repo}"
    fi
fi

log "finished stages ${stage}-${stop_stage}: ${exp}"
