#!/usr/bin/env bash
# Mini English recipe: an offline multi-speaker corpus synthesized with flite and espeak-ng,
# four tasks (asr, tts, textlm, audiolm) in one delay-interleave model trained on CPU.
#   bash run.sh                                   # everything, ~24 min on 2 idle cores
#   bash run.sh --train_config conf/train_full.yaml   # longer training (better numbers)
#   bash run.sh --stage 9 --stop_stage 10         # decode and score what changed since (rm exp/*/.done/stage9_* to force)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash ../../../tools/install.sh          # idempotent: returns at once when already installed
. ./path.sh

./speechlm.sh \
    --data_name mini_en \
    --tasks "asr tts_spkid textlm audiolm" \
    --train_set train --valid_set valid --test_sets "test" \
    --tokenizer_config conf/tokenizers.yaml \
    --train_config conf/train.yaml \
    --inference_config conf/decode.yaml \
    --local_data_opts "--nj 2" \
    --nj 2 \
    "$@"
