#!/usr/bin/env bash
# The test command of the README and CI: installs what is missing, then runs the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/install.sh
# shellcheck disable=SC1091
. tools/activate.sh
python -m pytest test "$@"
