#!/usr/bin/env bash
# Stage 1 of librispeech: index an existing LibriSpeech copy (nothing is downloaded).
# Writes <out>/<subset with - -> _>/{wav.scp,text,utt2spk,spk2utt}; text is lowercased.
# Usage (from egs2/librispeech/speechlm1):
#   ./local/data.sh --librispeech_dir /path/LibriSpeech \
#       [--subsets "train-clean-100 dev-clean test-clean"] [--out data] \
#       [--keep_case true] [--skip_missing true]
set -euo pipefail

librispeech_dir=${LIBRISPEECH:-downloads/LibriSpeech}
subsets="train-clean-100 dev-clean test-clean"
out=data
keep_case=false
skip_missing=false

while [ $# -gt 0 ]; do
    case "$1" in
        --librispeech_dir|--subsets|--out|--keep_case|--skip_missing)
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

if [ ! -d "${librispeech_dir}" ]; then
    echo "$0: ${librispeech_dir} not found. Obtain LibriSpeech yourself and pass" \
         "--librispeech_dir /path/LibriSpeech (or set LIBRISPEECH)." >&2
    exit 1
fi

extra=()
[ "${keep_case}" = true ] && extra+=(--keep_case)
[ "${skip_missing}" = true ] && extra+=(--skip_missing)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2086  # subsets is a space-separated list on purpose
python "${here}/data_prep.py" --librispeech_dir "${librispeech_dir}" \
    --subsets ${subsets} --out "${out}" "${extra[@]}"
