"""TLS for the tests' own servers on 127.0.0.1: a CA made for the test, and a server
certificate it signs for IP 127.0.0.1 (a SAN: Go's and Python's TLS both want one)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _run(*args) -> None:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, args))} ({result.returncode}):\n{result.stdout}{result.stderr}"


def make_certificates(folder: Path, subject: str = "bundler test CA") -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key) in FOLDER."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca = ["-subj", f"/CN={subject}", "-addext", "basicConstraints=critical,CA:TRUE"]
    ca += ["-addext", "keyUsage=critical,keyCertSign,cRLSign", "-days", "2"]
    _run("openssl", "req", "-x509", *key, *ca, "-keyout", folder / "ca.key", "-out", folder / "ca.crt")
    _run("openssl", "req", *key, "-subj", "/CN=127.0.0.1", "-keyout", folder / "server.key", "-out", folder / "csr")
    (folder / "server.ext").write_text(
        "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\nbasicConstraints = CA:FALSE\n"
        "keyUsage = critical,digitalSignature\n"
    )
    signer = ["-CA", folder / "ca.crt", "-CAkey", folder / "ca.key", "-CAcreateserial", "-days", "2"]
    signed = ["-extfile", folder / "server.ext", "-out", folder / "server.crt"]
    _run("openssl", "x509", "-req", "-in", folder / "csr", *signer, *signed)
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"
