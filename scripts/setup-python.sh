#!/usr/bin/env bash
# Create (or refresh) the Python virtualenv at <repo>/.venv with the pinned frameworks used by
# scripts/gen_fixtures.py and scripts/check_rust_files.py.
#
# Idempotent: when .venv/.stamp matches the hash of the requirements files (and the interpreter),
# it returns at once.  Needs python3 (>= 3.11) with the venv module, and access to PyPI.
#   PYTHON=python3.11 scripts/setup-python.sh     # choose the interpreter (default: python3)
#   FORCE=1 scripts/setup-python.sh               # reinstall even if the stamp matches
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$root/.venv"
req="$here/requirements.txt"
req_nodeps="$here/requirements-nodeps.txt"
stamp="$venv/.stamp"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "setup-python.sh: $python is missing or older than 3.11 (jax 0.10.2 needs >= 3.11); set PYTHON=..." >&2
    exit 1
fi

hash_inputs() {
    {
        cat "$req" "$req_nodeps" "$here/setup-python.sh"
        if [ -x "$venv/bin/python" ]; then "$venv/bin/python" -c 'import sys; print(sys.version)'; fi
    } | sha256sum | cut -d' ' -f1
}

if [ -z "${FORCE:-}" ] && [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(hash_inputs)" ]; then
    echo "setup-python.sh: $venv is up to date"
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup-python.sh: creating $venv with $python"
    "$python" -m venv "$venv"
fi
rm -f "$stamp"

pip=("$venv/bin/python" -m pip --disable-pip-version-check)
export PIP_NO_INPUT=1
echo "setup-python.sh: installing $req"
"${pip[@]}" install -q -r "$req"
echo "setup-python.sh: installing $req_nodeps (--no-deps)"
"${pip[@]}" install -q --no-deps -r "$req_nodeps"

# Smoke test: everything imports (with the DeviceArray shim safejax 0.5.0 needs).
"$venv/bin/python" - <<'PY'
import jax, jax.numpy as jnp
jnp.DeviceArray = jax.Array
import flax, haiku, objax, safetensors, safejax, safejax.flax, safejax.haiku, safejax.objax  # noqa: F401
from flax import nnx  # noqa: F401
print("setup-python.sh: jax", jax.__version__, "flax", flax.__version__, "haiku", haiku.__version__,
      "objax", objax.__version__, "safejax", safejax.__version__)
PY
# Hugging Face interop: transformers 4.x with its Flax classes (5.x has none).
HF_HUB_OFFLINE=1 "$venv/bin/python" -W ignore - <<'PY'
import transformers
from transformers import FlaxBertModel  # noqa: F401
print("setup-python.sh: transformers", transformers.__version__, "with FlaxBertModel")
PY

hash_inputs > "$stamp"
echo "setup-python.sh: done"
