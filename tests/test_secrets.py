"""Secrets never enter a bundle: not from the source tree, not from the environment, not from config."""

from __future__ import annotations

import os
import subprocess
import sys

SECRET = "S3CR3T-VALUE-do-not-ship-7f3a"
PLANTED = [
    ".env",
    ".env.production",
    "id_rsa",
    "keys/server.pem",
    "keys/tls.key",
    ".ssh/config",
    ".git/config",
    ".aws/credentials",
    "credentials.json",
    ".netrc",
    ".pypirc",
]


def test_planted_secrets_are_skipped_named_and_absent(tmp_path):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (src / "pkg" / "util.py").write_text("VALUE = 1\n")
    for rel in PLANTED:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(f"token={SECRET}\n")
    (tmp_path / "m.bin").write_bytes(b"m")
    (tmp_path / "bundler.toml").write_text(
        'models = ["m"]\n[inference]\nentry_script = "score.py"\nsource_directory = "src"\n'
        '[registry]\naddress = "docker.io"\nusername = "me"\npassword_env = "MY_REGISTRY_PASSWORD"\n'
    )
    env = {**os.environ, "BUNDLER_HOME": str(tmp_path / "home"), "MY_REGISTRY_PASSWORD": SECRET}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "bundler", *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    assert run("register", "m.bin", "--name", "m").returncode == 0
    saved = run("save", "out")
    assert saved.returncode == 0, saved.stderr
    skipped = sorted(line.split()[1] for line in saved.stdout.splitlines() if line.startswith("skipped: "))
    assert skipped == sorted(
        [
            ".aws/",
            ".env",
            ".env.production",
            ".git/",
            ".netrc",
            ".pypirc",
            ".ssh/",
            "credentials.json",
            "id_rsa",
            "keys/server.pem",
            "keys/tls.key",
        ]
    )
    emitted = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name == "util.py" for p in emitted)  # ordinary sources do ship
    for path in emitted:
        assert SECRET.encode() not in path.read_bytes(), f"the secret leaked into {path}"
    login = (tmp_path / "out" / "registry-login.json").read_text()
    assert "MY_REGISTRY_PASSWORD" in login and 'password"' not in login
