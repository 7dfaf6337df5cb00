#!/usr/bin/env bash
# One command for the llmproxy benchmark:
#   bash tests/bench/run.sh [--quick] [--soak] [--profile] [--check-targets] [...]
# Installs nginx and wrk from Debian's packages when missing (needs root or
# sudo), then runs tests/bench/bench.py with the project's venv. All options
# are bench.py's: bash tests/bench/run.sh --help
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "[bench] installing ${need[*]} from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; then
        $sudo apt-get update >/dev/null
        $sudo apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
    fi
fi

python="$root/.venv/bin/python"
[ -x "$python" ] || python="$(command -v python3)"
if [[ " $* " == *" --profile"* ]] && ! [ -x "$(dirname "$python")/py-spy" ] && ! command -v py-spy >/dev/null 2>&1; then
    echo "[bench] installing py-spy into $(dirname "$python")/.. for --profile" >&2
    "$python" -m pip install --quiet py-spy
fi
cd "$root"
if [ "${1:-}" = "--cache" ]; then
    # Response cache hits (memory, Redis) next to the pass-through: bench_cache.py.
    shift
    command -v redis-server >/dev/null 2>&1 || { echo "[bench] --cache needs redis-server (apt-get install redis-server)" >&2; exit 2; }
    exec "$python" "$here/bench_cache.py" "$@"
fi
exec "$python" "$here/bench.py" "$@"
