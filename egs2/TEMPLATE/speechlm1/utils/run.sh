#!/usr/bin/env bash
# Local backend of the `${cmd} JOB=1:N LOG COMMAND` interface (ESPnet's run.pl):
#   utils/run.sh [--max_jobs_run M] JOB=1:N exp/log/x.JOB.log python -m prog --part JOB
# runs the N jobs as background processes of this machine, at most M at a time (default: all),
# and exits 1 naming the log of every job that failed. --mem, --num_threads, --gpu, --time,
# --partition and --NAME=VALUE extras are accepted (so cmd.sh can swap backends) and ignored.
# See utils/launcher_lib.sh for the full interface (utils/run.sh --help).
set -euo pipefail

launcher_name="${0##*/}"
# shellcheck source=launcher_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/launcher_lib.sh"
launcher_parse "$@"

run_job() {  # run_job ID: one job, its output and exit code in its log
    local log cmd rc=0 t0=${SECONDS}
    log="$(launcher_sub "${log_pattern}" "$1")"
    cmd="$(launcher_sub "${cmdline}" "$1")"
    mkdir -p "$(dirname "${log}")"
    launcher_header "${cmd}" >"${log}"
    bash -c "${cmd}" </dev/null >>"${log}" 2>&1 || rc=$?
    launcher_footer "${rc}" $((SECONDS - t0)) >>"${log}"
}

pids=()
stop_jobs() {  # on INT/TERM: end the jobs this script started (and their direct children), then fail
    trap - INT TERM
    local p
    for p in "${pids[@]}"; do pkill -TERM -P "${p}" 2>/dev/null || true; kill -TERM "${p}" 2>/dev/null || true; done
    echo "${launcher_name}: interrupted; jobs stopped" >&2
    exit 130
}
trap stop_jobs INT TERM

for ((id = job_start; id <= job_end; id++)); do
    launcher_wait_slot
    run_job "${id}" &
    pids+=($!)
done
wait
launcher_check_logs
