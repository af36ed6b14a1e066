#!/usr/bin/env bash
# Debian packages for the container tests (podman, buildah, debootstrap; for the registry
# flow a real registry, docker-registry, with skopeo, htpasswd from apache2-utils and
# openssl), the runtime benchmark (wrk) and the README's walkthrough (curl).
# Idempotent: installs only what is missing.
set -euo pipefail
needed=()
for tool in podman buildah debootstrap wrk newuidmap curl docker-registry skopeo htpasswd openssl; do
    command -v "$tool" >/dev/null 2>&1 || needed+=("$tool")
done
if [ "${#needed[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q podman buildah debootstrap wrk uidmap curl docker-registry skopeo apache2-utils openssl
fi
podman --version
buildah --version
