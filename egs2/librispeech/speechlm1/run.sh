#!/usr/bin/env bash
# LibriSpeech: download the corpus yourself (https://www.openslr.org/12), then
#   bash run.sh --local_data_opts "--librispeech_dir /path/to/LibriSpeech"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash ../../../tools/install.sh
. ./path.sh

./speechlm.sh \
    --data_name librispeech \
    --tasks "asr tts_spkid textlm audiolm" \
    --train_set train_clean_100 --valid_set dev_clean --test_sets "test_clean" \
    --tokenizer_config conf/tokenizers.yaml \
    --train_config conf/train.yaml \
    --inference_config conf/decode.yaml \
    --nj 8 \
    "$@"
