#!/usr/bin/env bash
# safejax::remote (feature `object-store`) against a real S3-protocol server: starts moto's server
# (pinned in scripts/requirements.txt) on a free loopback port, runs the object store tests with
# SAFEJAX_S3_ENDPOINT pointing at it (tests/remote_s3.rs, feature `s3-tests`), the in-memory ones
# (tests/remote.rs, tests/remote_orbax.rs), the unit tests and the doc examples with the feature,
# then stops the server.
# This script is the one place the S3 tests run: without the server they fail, by design.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup-python.sh
if [ ! -x .venv/bin/moto_server ]; then
    # setup-python.sh installs it from requirements.txt; this covers a venv stamped before that.
    .venv/bin/python -m pip install -q --disable-pip-version-check "moto[server]==5.2.5"
fi

port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
server=$!
stop() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -f "$log"
}
trap stop EXIT

# Wait for the server to answer (up to 30 s).
.venv/bin/python - "$port" "$log" <<'PY'
import sys, time, urllib.request
port, log = sys.argv[1], sys.argv[2]
for _ in range(150):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
        print(f"s3_tests.sh: moto server on 127.0.0.1:{port}")
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.stderr.write(open(log).read())
sys.exit("s3_tests.sh: the moto server did not start")
PY

export SAFEJAX_S3_ENDPOINT="http://127.0.0.1:$port"
cargo test --features s3-tests --lib --test remote --test remote_orbax --test remote_s3
cargo test --features s3-tests --doc
