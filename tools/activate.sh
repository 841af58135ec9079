# Source me: puts the project's virtualenv and caches on the path.
_speechlm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "${_speechlm_root}/tools/venv/bin/activate"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-${_speechlm_root}/tools/.cache/torch_extensions}"
export DS_ACCELERATOR="${DS_ACCELERATOR:-$(command -v nvidia-smi >/dev/null 2>&1 && echo cuda || echo cpu)}"
export HF_HUB_DISABLE_TELEMETRY=1
export PYTHONUNBUFFERED=1
