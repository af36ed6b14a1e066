"""[environment] index_url, extra_index_urls, ca_certificates, trust_ca_at_runtime: what the
bundle says, and what it refuses. The build against a real authenticated HTTPS index is
tests/containers/test_private_index.py; the rendered file is golden/private_index."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bundler import api

CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    (tmp_path / "requirements.txt").write_text("numpy==2.1.3\n")
    (tmp_path / "corp.pem").write_text(CERTIFICATE)
    monkeypatch.setenv("BUNDLER_HOME", str(tmp_path / "registry"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def save_with(project, environment: str):
    (project / "bundler.toml").write_text(
        '[inference]\nentry_script = "score.py"\n[environment]\nrequirements = "requirements.txt"\n' + environment
    )
    return subprocess.run([sys.executable, "-m", "bundler", "save", "out"], capture_output=True, text=True)


@pytest.mark.parametrize(
    "environment, message",
    [
        ('index_url = "https://me:hunter2@pypi.corp.example/simple"\n', "the URL holds a credential"),
        ('index_url = "https://pypi.corp.example/simple?token=abcdef0123456789abcdef"\n', "the URL holds a credential"),
        ('extra_index_urls = ["https://ghp_0123456789abcdefABCDEF0123456789abcd@x.example/simple"]\n', "credential"),
        ('index_url = "ftp://pypi.corp.example/simple"\n', "is not an http(s) URL"),
        ('index_url = "https://pypi.fury.io/1A2b3C4d5E6f7G8h9I0j/acme/"\n', "the URL holds a credential"),
        ('index_url = "https://pypi.corp.example/simple?x=1"\n', "no query, spaces or brackets"),
        ('index_url = "https://[fd00::1]:8443/simple"\n', "no query, spaces or brackets"),
        ('index_url = "nonsense"\n', "is not an http(s) URL"),
        ('ca_certificates = ["missing.pem"]\n', "not found"),
        ('ca_certificates = ["requirements.txt"]\n', "is not a PEM CA certificate"),
        ("trust_ca_at_runtime = true\n", "give ca_certificates to trust"),
    ],
)
def test_refused_in_one_line_naming_the_line(project, environment, message):
    result = save_with(project, environment)
    assert result.returncode == 2
    assert message in result.stderr and "bundler.toml:" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "hunter2" not in result.stderr and "abcdef0123456789" not in result.stderr and "ghp_" not in result.stderr
    assert not (project / "out").exists()


def test_a_private_key_is_never_a_ca_certificate(project):
    (project / "both.pem").write_text(CERTIFICATE + "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    result = save_with(project, 'ca_certificates = ["both.pem"]\n')
    assert result.returncode == 2 and "no private key" in result.stderr


def test_the_bundle_installs_from_the_index_with_the_ca_and_the_secret(project):
    (project / "second.pem").write_text(CERTIFICATE.replace("MIIB", "MIIC"))
    result = save_with(
        project,
        'index_url = "https://pypi.corp.example/simple"\nca_certificates = ["corp.pem", "second.pem"]\n',
    )
    assert result.returncode == 0, result.stderr
    dockerfile = (project / "out" / "Dockerfile").read_text()
    assert "RUN --mount=type=secret,id=netrc,target=/run/secrets/netrc,mode=0400,uid=0 \\\n" in dockerfile
    assert "--index-url https://pypi.corp.example/simple" in dockerfile and "--no-input" in dockerfile
    assert "--cert /tmp/bundler/environment/ca-certificates.pem" in dockerfile
    assert "update-ca-certificates" not in dockerfile  # stage 1 only, unless asked
    assert "PROXY" not in dockerfile.split("# ---- Stage 2")[1]  # never baked into the serving image
    shipped = (project / "out" / "environment" / "ca-certificates.pem").read_text()
    assert shipped == CERTIFICATE + CERTIFICATE.replace("MIIB", "MIIC")  # both, in order
    assert api.verify(project / "out").ok


def test_a_conda_build_gets_the_index_through_variables(project):
    (project / "env.yml").write_text("dependencies:\n  - python=3.11\n  - mkl=2024.0\n")
    (project / "bundler.toml").write_text(
        '[inference]\nentry_script = "score.py"\n[environment]\nconda_file = "env.yml"\n'
        'index_url = "https://pypi.corp.example/simple"\nca_certificates = ["corp.pem"]\n'
    )
    result = subprocess.run([sys.executable, "-m", "bundler", "save", "out"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    dockerfile = (project / "out" / "Dockerfile").read_text()
    assert "uid=57439" in dockerfile  # micromamba's user reads the secret
    for variable in ("PIP_INDEX_URL=https://pypi.corp.example/simple", "MAMBA_SSL_VERIFY=", "PIP_CERT=", "NETRC="):
        assert variable in dockerfile


def test_only_the_certificates_of_a_ca_file_ship(project):
    (project / "commented.pem").write_text(
        "# pip index: https://alice:S3cretPassw0rd@pypi.corp.example/simple\n" + CERTIFICATE + "trailing notes\n"
    )
    result = save_with(project, 'ca_certificates = ["commented.pem"]\n')
    assert result.returncode == 0, result.stderr
    assert (project / "out" / "environment" / "ca-certificates.pem").read_text() == CERTIFICATE
    assert not [p for p in (project / "out").rglob("*") if p.is_file() and b"S3cret" in p.read_bytes()]


@pytest.mark.parametrize(
    "environment, message",
    [
        ('ca_certificates = ["corp.pem"]\ntrust_ca_at_runtime = true\n', "has no update-ca-certificates"),
        ('extra_index_urls = ["https://a.example/simple", "https://b.example/simple"]\n', "list one"),
    ],
)
def test_what_the_conda_builder_cannot_do_is_refused(project, environment, message):
    (project / "env.yml").write_text("dependencies:\n  - python=3.11\n  - mkl=2024.0\n")
    (project / "bundler.toml").write_text(
        '[inference]\nentry_script = "score.py"\n[environment]\nconda_file = "env.yml"\n' + environment
    )
    result = subprocess.run([sys.executable, "-m", "bundler", "save", "out"], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
