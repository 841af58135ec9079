# How stage 5's tokenization jobs are launched; sourced by speechlm.sh (--prep_cmd on the command
# line wins). Form: ${prep_cmd} JOB=1:N LOG COMMAND (ESPnet's --cmd); --prep_jobs sets N (default: --nj).
# utils/ is egs2/TEMPLATE/speechlm1/utils (bash speechlm.sh --help lists the launchers).

# This machine: background processes, at most 2 at a time.
prep_cmd="utils/run.sh --max_jobs_run 2"

# Slurm: one job array, a task per shard job (add sbatch options as --name=value, e.g. --account=...).
# prep_cmd="utils/slurm.sh --partition cpu --num_threads 2 --mem 4G --time 1:00:00 --max_jobs_run 8"
