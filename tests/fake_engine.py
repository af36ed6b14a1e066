"""A recording stand-in for docker and podman (no engine runs on a test machine): each call
lands in calls.jsonl beside it, with its standard input when it is a password. `docker info`
answers only with FAKE_DOCKER_UP set; `login` accepts only FAKE_GOOD_PASSWORD; `push` and
`image inspect` answer with DIGEST; `image inspect missing` fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

DIGEST = "sha256:" + "ab" * 32
FAKE_ENGINE = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
name = Path(sys.argv[0]).name
args = sys.argv[1:]
record = {{"argv": args, "stdin": sys.stdin.read() if "--password-stdin" in args else None}}
with open(Path(sys.argv[0]).parent / "calls.jsonl", "a") as out:
    out.write(json.dumps(record) + "\\n")
if args[0] == "info":
    sys.exit(0 if name == "docker" and os.environ.get("FAKE_DOCKER_UP") else 1)
if args[0] == "login" and record["stdin"] != os.environ.get("FAKE_GOOD_PASSWORD"):
    print("Error: logging in: invalid username/password", file=sys.stderr)
    sys.exit(1)
if args[0] == "push" and "--digestfile" in args:
    Path(args[args.index("--digestfile") + 1]).write_text("{DIGEST}")
if args[:2] == ["image", "inspect"] and "--format" in args:
    repository = args[-1].rsplit(":", 1)[0]
    print(json.dumps([repository + "@{DIGEST}"]))
if args[:2] == ["image", "inspect"] and "--format" not in args and args[-1] == "missing":
    sys.exit(1)
"""


def install(folder: Path) -> Path:
    """docker and podman stand-ins in FOLDER (put it first on PATH)."""
    folder.mkdir(exist_ok=True)
    for name in ("docker", "podman"):
        (folder / name).write_text(FAKE_ENGINE)
        (folder / name).chmod(0o755)
    return folder


def calls(folder: Path) -> list[dict]:
    path = folder / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
