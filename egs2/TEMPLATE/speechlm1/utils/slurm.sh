#!/usr/bin/env bash
# Slurm backend of the `${cmd} JOB=1:N LOG COMMAND` interface (ESPnet's slurm.pl):
#   utils/slurm.sh --partition cpu --mem 8G --num_threads 4 --time 2:00:00 --max_jobs_run 16 \
#       JOB=1:N exp/log/x.JOB.log python -m prog --part JOB
# submits one job array `sbatch --wait --array=1-N%16` and returns when every task has ended;
# exits 1 naming the log of every task that failed (or never started). Each task writes its
# own LOG (Slurm's --output, so scheduler messages such as an out-of-memory kill land there too).
#
# Options (see utils/launcher_lib.sh for the common ones):
#   --mem X --num_threads N (--cpus-per-task N) --gpu N --time T --partition P
#                        -> sbatch --mem=X --cpus-per-task=N --gres=gpu:N --time=T --partition=P
#   --max_jobs_run M     -> --array=A-B%M (at most M tasks running at once)
#   --srun               one `srun` per job from this shell instead of an array (inside salloc or an
#                        interactive allocation); at most --max_jobs_run at a time
#   --NAME=VALUE, --FLAG passed to sbatch (or srun) unchanged, e.g. --account=speech --qos=high --exclusive
# The generated task script is kept next to the logs, in q/<name>.sh, for inspection or re-submission.
set -euo pipefail

launcher_name="${0##*/}"
# shellcheck source=launcher_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/launcher_lib.sh"
launcher_parse "$@"
use_srun=false  # --srun is this backend's own flag: take it out of the pass-through options
rest=()
for o in "${extra_opts[@]}"; do if [ "${o}" = "--srun" ]; then use_srun=true; else rest+=("${o}"); fi; done

# scheduler options shared by sbatch and srun
opts=()
[ -n "${mem}" ] && opts+=("--mem=${mem}")
[ -n "${num_threads}" ] && opts+=("--cpus-per-task=${num_threads}")
[ "${gpu}" -gt 0 ] && opts+=("--gres=gpu:${gpu}")
[ -n "${time_limit}" ] && opts+=("--time=${time_limit}")
[ -n "${partition}" ] && opts+=("--partition=${partition}")
opts+=("${rest[@]}")

# the task script: job id from $1 (srun mode) or the array task id
log_dir="$(dirname "${log_pattern}")"
base="$(basename "${log_pattern}" .log)"
[ -n "${job_name}" ] && base="${base//.${job_name}/}" && base="${base//${job_name}/}"
qdir="$(launcher_sub "${log_dir}" "${job_start}")/q"
script="${qdir}/${base:-job}.sh"
mkdir -p "${qdir}"
for ((id = job_start; id <= job_end; id++)); do mkdir -p "$(launcher_sub "${log_dir}" "${id}")"; done
{
    echo "#!/usr/bin/env bash"
    echo "# Written by ${launcher_name}: one job of '${log_pattern}'; job id = \$1 or the array task id."
    echo "cd $(printf '%q' "${PWD}")"
    echo "id=\${1:-\${SLURM_ARRAY_TASK_ID:?run as a Slurm array task or with the job id as argument}}"
    echo "cmd=$(printf '%q' "${cmdline}")"
    [ -n "${job_name}" ] && echo "cmd=\${cmd//${job_name}/\${id}}"
    echo "echo \"# \${cmd}\""
    echo "echo \"# Started at \$(date '+%Y-%m-%dT%H:%M:%S') on \$(hostname) (Slurm job \${SLURM_JOB_ID:-?})\""
    echo "t0=\${SECONDS}; rc=0"
    echo "bash -c \"\${cmd}\" </dev/null 2>&1 || rc=\$?"
    echo "echo \"# Ended (code \${rc}) at \$(date '+%Y-%m-%dT%H:%M:%S'), elapsed \$((SECONDS - t0)) s\""
    echo "exit \${rc}"
} >"${script}"
chmod +x "${script}"

if ${use_srun}; then
    command -v srun >/dev/null || launcher_die "srun not found on PATH (is this a Slurm login node?)"
    pids=()
    trap 'for p in "${pids[@]}"; do kill -TERM "${p}" 2>/dev/null || true; done; exit 130' INT TERM
    for ((id = job_start; id <= job_end; id++)); do
        launcher_wait_slot
        srun --ntasks=1 --job-name="${base:-job}" "${opts[@]}" bash "${script}" "${id}" \
            >"$(launcher_sub "${log_pattern}" "${id}")" 2>&1 </dev/null &
        pids+=($!)
    done
    wait
else
    command -v sbatch >/dev/null || launcher_die "sbatch not found on PATH (is this a Slurm login node?)"
    array="${job_start}-${job_end}"
    [ "${max_jobs_run}" -gt 0 ] && array+="%${max_jobs_run}"
    # Slurm expands %a to the array task id in --output; a literal % is written %%
    output="${log_pattern//%/%%}"
    [ -n "${job_name}" ] && output="${output//${job_name}/%a}"
    rc=0
    sbatch --wait --parsable --array="${array}" --job-name="${base:-job}" --output="${output}" \
        "${opts[@]}" "${script}" || rc=$?
    [ "${rc}" -eq 0 ] || echo "${launcher_name}: sbatch exited with code ${rc}" >&2
fi
launcher_check_logs
