#!/usr/bin/env bash
# Creates (once) the separate virtualenv holding the reference ESPnet-SpeechLM (PyPI espnet==202506)
# for the side-by-side benchmark. Idempotent: a stamp file records what was installed.
#
#   bash bench/suite/setup_reference.sh            # venv at bench/suite/.ref-venv, torch 2.13.0 (CPU)
#   REF_TORCH=any REF_VENV=/tmp/ref-any bash bench/suite/setup_reference.sh  # the torch espnet's pins pick
#
# Why a separate venv: espnet pins numpy<1.24 (and setuptools<74, which would make pip swap
# torch 2.13 for a 2.12 build), and its import name `espnet2` is ours too.
# Why --no-deps: the parts benchmarked (espnet2/speechlm/core_lm, module, net_utils) import only
# torch; its ~30 other requirements (lightning, librosa 0.9, hydra, ...) are not needed and several
# no longer build on Python 3.11+. We keep its numpy pin so the environment is the one it declares.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${REF_VENV:-${here}/.ref-venv}"
espnet_version="${REF_ESPNET:-202506}"
torch_spec="${REF_TORCH:-2.13.0}"
python="${REF_PYTHON:-python3}"

stamp="${venv}/.installed-$(cat "${BASH_SOURCE[0]}" | sha1sum | cut -c1-12)-${espnet_version}-${torch_spec}"
if [ -f "${stamp}" ]; then exit 0; fi

[ -x "${venv}/bin/python" ] || "${python}" -m venv "${venv}"
pip=("${venv}/bin/python" -m pip)
"${pip[@]}" install -q --upgrade pip wheel
cons="${venv}/constraints.txt"
if [ "${torch_spec}" = "any" ]; then
    # what espnet's own pins resolve to: setuptools<74 excludes torch >= 2.13 (it needs >= 77)
    echo "[reference] espnet==${espnet_version} with the torch its pins allow"
    printf 'numpy<1.24\nsetuptools<74\n' > "${cons}"
    "${pip[@]}" install -q -c "${cons}" "torch" "numpy<1.24" "setuptools<74"
else
    echo "[reference] espnet==${espnet_version} with torch==${torch_spec} (CPU build)"
    printf 'torch==%s\nnumpy<1.24\n' "${torch_spec}" > "${cons}"
    "${pip[@]}" install -q -c "${cons}" ${REF_TORCH_INDEX_URL:+--index-url "${REF_TORCH_INDEX_URL}"} \
        "torch==${torch_spec}" "numpy<1.24"
fi
"${pip[@]}" install -q --no-deps "espnet==${espnet_version}"
# smoke check: the benchmarked modules import, from this venv and not from a checkout
(cd / && env -u PYTHONPATH "${venv}/bin/python" -c "
import espnet, espnet2, torch, numpy
import espnet2.speechlm.core_lm.ar_multiscale, espnet2.speechlm.core_lm.valle
assert 'site-packages' in espnet2.__file__, espnet2.__file__
print('[reference] espnet', espnet.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__)
")
rm -f "${venv}"/.installed-*
touch "${stamp}"
