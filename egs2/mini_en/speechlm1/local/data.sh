#!/usr/bin/env bash
# Stage 1 of mini_en: synthesize an offline multi-speaker English corpus.
# Writes <out>/{train,valid,test}/{wav.scp,text,utt2spk,spk2utt}; wavs are
# cached in <out>/../downloads/mini_en/wav (re-runs only fill in what is missing).
# Usage (from egs2/mini_en/speechlm1):
#   ./local/data.sh [--out data] [--num_train 6000] [--num_valid 100]
#                   [--num_test 100] [--seed 0] [--nj 2]
set -euo pipefail

out=data
num_train=6000
num_valid=100
num_test=100
seed=0
nj=$(nproc 2>/dev/null || echo 1)

while [ $# -gt 0 ]; do
    case "$1" in
        --out|--num_train|--num_valid|--num_test|--seed|--nj)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 1; }
            declare "${1#--}=$2"
            shift 2
            ;;
        -h|--help)
            sed -n '2,7p' "$0"
            exit 0
            ;;
        *)
            echo "$0: unknown option $1" >&2
            exit 1
            ;;
    esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python "${here}/synth_corpus.py" \
    --out "${out}" \
    --num_train "${num_train}" --num_valid "${num_valid}" --num_test "${num_test}" \
    --seed "${seed}" --nj "${nj}"
