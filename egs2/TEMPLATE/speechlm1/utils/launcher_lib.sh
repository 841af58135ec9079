# Sourced by run.sh and slurm.sh: what every backend of the `${cmd} JOB=1:N LOG COMMAND` form shares.
#
# The interface (ESPnet's run.pl / slurm.pl):
#   <backend> [options] [JOB=A:B] LOG COMMAND...
# runs COMMAND once per job id in A..B, every occurrence of JOB (any NAME=A:B works) in LOG
# and COMMAND replaced by the id; LOG gets the command's stdout and stderr between a
# "# <command>" header and a "# Ended (code N) ..." footer. Without JOB=A:B it runs once.
# COMMAND is run by bash as one command line: words without blanks or quotes are kept as they
# are, so '$((JOB-1))', '|' or '>' given as words are evaluated by bash; other words are quoted.
# A COMMAND given as a single word is taken as the whole command line ("a JOB | b JOB").
#
# Options every backend accepts (so cmd.sh can swap backends without touching callers);
# a backend ignores the ones it cannot honour:
#   --max_jobs_run M    at most M jobs at once (default: all)
#   --mem X             memory per job, e.g. 8G
#   --num_threads N     CPUs per job (alias --cpus-per-task)
#   --gpu N             GPUs per job
#   --time T            time limit per job, e.g. 4:00:00
#   --partition P       queue / partition
#   --NAME=VALUE, --FLAG    backend-specific extras (Slurm: passed to sbatch/srun as they are)

launcher_usage() {  # the calling script's header, then the shared interface
    sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'
    echo
    sed -n '/^# The interface/,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

launcher_die() { echo "${launcher_name}: $*" >&2; exit 1; }

# launcher_parse "$@": sets max_jobs_run mem num_threads gpu time_limit partition extra_opts
# job_name job_start job_end log_pattern cmdline
launcher_parse() {
    max_jobs_run=0 mem="" num_threads="" gpu=0 time_limit="" partition="" extra_opts=()
    while [ $# -gt 0 ]; do
        case "$1" in
            -h|--help) launcher_usage; exit 0 ;;
            --max_jobs_run|--mem|--num_threads|--cpus-per-task|--gpu|--time|--partition)
                [ $# -ge 2 ] || launcher_die "option $1 needs a value"
                launcher_set "${1#--}" "$2"; shift 2 ;;
            --max_jobs_run=*|--mem=*|--num_threads=*|--cpus-per-task=*|--gpu=*|--time=*|--partition=*)
                local kv="${1#--}"; launcher_set "${kv%%=*}" "${kv#*=}"; shift ;;
            --?*) extra_opts+=("$1"); shift ;;
            *) break ;;
        esac
    done
    job_name="" job_start=1 job_end=1
    if [[ $# -gt 0 && "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+)(:([0-9]+))?$ ]]; then
        job_name="${BASH_REMATCH[1]}"
        job_start=$((10#${BASH_REMATCH[2]}))
        job_end=$((10#${BASH_REMATCH[4]:-${BASH_REMATCH[2]}}))
        [ "${job_start}" -ge 1 ] && [ "${job_end}" -ge "${job_start}" ] ||
            launcher_die "bad job range $1 (need ${job_name}=A:B with 1 <= A <= B)"
        shift
    fi
    [ $# -ge 2 ] || launcher_die "usage: ${launcher_name} [options] [JOB=1:N] LOG COMMAND... (--help for more)"
    log_pattern="$1"; shift
    cmdline="$(launcher_join "$@")"
    [[ "${max_jobs_run}" =~ ^[0-9]+$ ]] || launcher_die "--max_jobs_run needs a number, got '${max_jobs_run}'"
    [[ "${gpu}" =~ ^[0-9]+$ ]] || launcher_die "--gpu needs a number, got '${gpu}'"
    [ -z "${num_threads}" ] || [[ "${num_threads}" =~ ^[1-9][0-9]*$ ]] ||
        launcher_die "--num_threads needs a positive number, got '${num_threads}'"
}

launcher_set() {
    case "$1" in
        max_jobs_run) max_jobs_run="$2" ;;
        mem) mem="$2" ;;
        num_threads|cpus-per-task) num_threads="$2" ;;
        gpu) gpu="$2" ;;
        time) time_limit="$2" ;;
        partition) partition="$2" ;;
    esac
}

# launcher_join WORD...: one bash command line (see the interface above)
launcher_join() {
    if [ $# -eq 1 ]; then echo "$1"; return; fi
    local out="" w
    for w in "$@"; do
        if [[ -n "${w}" && ! "${w}" =~ [[:space:]\'\"\\] ]]; then
            out+="${w} "
        else
            out+="$(printf '%q' "${w}") "
        fi
    done
    echo "${out% }"
}

# launcher_sub TEXT ID: TEXT with the job name replaced by ID
launcher_sub() {
    if [ -n "${job_name}" ]; then echo "${1//${job_name}/$2}"; else echo "$1"; fi
}

# launcher_wait_slot: block while max_jobs_run background jobs of this shell are running
launcher_wait_slot() {
    [ "${max_jobs_run}" -gt 0 ] || return 0
    while [ "$(jobs -rp | wc -l)" -ge "${max_jobs_run}" ]; do wait -n || true; done
}

# launcher_check_logs: exit 1 naming every job whose log lacks a "code 0" footer
launcher_check_logs() {
    local id log failed=() n=0
    for ((id = job_start; id <= job_end; id++)); do
        log="$(launcher_sub "${log_pattern}" "${id}")"
        n=$((n + 1))
        if [ ! -f "${log}" ]; then
            failed+=("${log} (missing: the job never started)")
        elif [[ "$(tail -n 1 "${log}")" != "# Ended (code 0)"* ]]; then
            failed+=("${log}")
        fi
    done
    [ ${#failed[@]} -eq 0 ] && return 0
    {
        echo "${launcher_name}: ${#failed[@]} of ${n} jobs failed; see"
        printf '  %s\n' "${failed[@]}"
    } >&2
    exit 1
}

# launcher_header CMD: the first lines of a job's log
launcher_header() {
    echo "# $1"
    echo "# Started at $(date '+%Y-%m-%dT%H:%M:%S') on $(hostname)"
}

launcher_footer() {  # launcher_footer RC SECONDS
    echo "# Ended (code $1) at $(date '+%Y-%m-%dT%H:%M:%S'), elapsed $2 s"
}
