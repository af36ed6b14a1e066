#!/usr/bin/env bash
# Debian packages for the container tests (podman, buildah, debootstrap), the runtime
# benchmark (wrk) and the README's walkthrough (curl). Idempotent: installs only what is missing.
set -euo pipefail
needed=()
for tool in podman buildah debootstrap wrk newuidmap curl; do
    command -v "$tool" >/dev/null 2>&1 || needed+=("$tool")
done
if [ "${#needed[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q podman buildah debootstrap wrk uidmap curl
fi
podman --version
buildah --version
