#!/usr/bin/env bash
# The reference Azure ML inference server, in its own virtual environment (it pins Flask and
# pydantic), for the contract tests and the runtime benchmark. Idempotent; cached between runs.
set -euo pipefail
cache="${BUNDLER_TEST_CACHE:-$HOME/.cache/bundler-tests}"
venv="$cache/azmlinfsrv-venv"
if [ ! -x "$venv/bin/azmlinfsrv" ]; then
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "azureml-inference-server-http==1.5.1" "inference-schema==1.8" \
        -r "$(dirname "$0")/../examples/diabetes/requirements.txt"
fi
echo "$venv/bin/azmlinfsrv"
