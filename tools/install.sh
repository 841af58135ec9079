#!/usr/bin/env bash
# Idempotent installer: Debian tools for the mini recipe, a virtualenv at tools/venv, CPU torch
# first (so a CUDA build is never pulled by accident), then this package with its extras,
# all pinned by tools/constraints.txt. Re-running it is a no-op when nothing changed.
#   tools/install.sh            # CPU: eval + dev extras
#   tools/install.sh gpu        # also flash-attn and liger-kernel (CUDA machines)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="eval,dev${1:+,$1}"
venv=tools/venv

missing=""
for tool in flite espeak-ng sox; do command -v "${tool}" >/dev/null 2>&1 || missing="${missing} ${tool}"; done
if [ -n "${missing}" ]; then
    echo "[install] Debian packages:${missing}"
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    ${sudo_cmd} apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive ${sudo_cmd} apt-get install -y -qq ${missing} >/dev/null
fi

stamp="${venv}/.installed-$(cat tools/constraints.txt pyproject.toml | sha1sum | cut -c1-12)-${extras}"
if [ -f "${stamp}" ]; then exit 0; fi

[ -x "${venv}/bin/python" ] || python3 -m venv "${venv}"
pip=("${venv}/bin/python" -m pip)
"${pip[@]}" install -q --upgrade pip "setuptools>=77" wheel
torch_version="$(grep -E '^torch==' tools/constraints.txt | cut -d= -f3)"
if ! "${venv}/bin/python" -c "import torch,sys; sys.exit(torch.__version__.split('+')[0] != '${torch_version}')" 2>/dev/null; then
    echo "[install] torch==${torch_version} (CPU build)"
    # TORCH_INDEX_URL: e.g. https://download.pytorch.org/whl/cpu where PyPI's torch is a CUDA build
    "${pip[@]}" install -q -c tools/constraints.txt ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"} \
        "torch==${torch_version}"
fi
echo "[install] espnet-speechlm[${extras}]"
"${pip[@]}" install -q -c tools/constraints.txt -e ".[${extras}]"
rm -f "${venv}"/.installed-*
touch "${stamp}"
echo "[install] done: source tools/activate.sh"
