#!/usr/bin/env bash
# A stand-in for docker.io/library/python:3.11-slim, made with debootstrap (no registry can
# be pulled from here), following ../shared/container-testing.md. Tagged with the real name
# so emitted Dockerfiles build unmodified. Cached in podman's storage: skipped if present.
set -euo pipefail
image=docker.io/library/python:3.11-slim
# Storage flags from the test harness (overlay in its own root, or vfs); vfs by default.
podman="podman ${BUNDLER_PODMAN_STORAGE:---storage-driver vfs}"
if $podman image exists "$image"; then
    echo "$image already present"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$rootfs" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
rm -f "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED     # the official image lets pip install globally
ln -sf /usr/bin/python3 "$rootfs"/usr/local/bin/python
ln -sf /usr/bin/pip3 "$rootfs"/usr/local/bin/pip
cp /etc/ssl/certs/ca-certificates.crt "$rootfs"/etc/ssl/certs/ca-certificates.crt   # trust the proxy
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$rootfs"/etc/pip.conf
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" --numeric-owner -c . | $podman import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$image"
