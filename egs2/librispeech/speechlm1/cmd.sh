# How stage 5's tokenization jobs are launched; sourced by speechlm.sh (--prep_cmd on the command
# line wins). Form: ${prep_cmd} JOB=1:N LOG COMMAND (ESPnet's --cmd); --prep_jobs sets N
# (default: --nj). utils/ is egs2/TEMPLATE/speechlm1/utils (bash speechlm.sh --help lists the launchers).

# This machine: background processes, at most 8 at a time.
prep_cmd="utils/run.sh --max_jobs_run 8"

# Slurm: one job array; with `run.sh --prep_jobs 29` each task tokenizes one of train_clean_100's
# 29 shards (28,539 utterances, 1000 per shard). Set your partition and account.
# prep_cmd="utils/slurm.sh --partition cpu --num_threads 4 --mem 16G --time 4:00:00 --max_jobs_run 32 --account=YOUR_ACCOUNT"
