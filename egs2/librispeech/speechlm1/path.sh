# Sourced by run.sh: the project's virtualenv and caches.
# shellcheck disable=SC1091
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/tools/activate.sh"
