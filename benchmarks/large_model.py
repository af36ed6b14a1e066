"""register, save and verify with a large model: time against plain tools, memory against size.

    python benchmarks/large_model.py [--sizes 64,512] [--runs 3]

For each model size (MiB of random bytes), in one run and alternating with the references:
- `bundler register` and `bundler save` against `cp` of the same file (one read, one write);
- `bundler verify` against `cat` of the bundle's files (one read), Python's hashlib hashing
  each once (the floor for any check) and `sha256sum` (coreutils' hash, often slower);
- each bundler command's peak memory (max RSS), which must not grow with the model.
The issues' targets: memory does not grow with model size; verify's speed is close to
reading the files once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ENTRY = "def init():\n    pass\n\ndef run(raw_data):\n    return raw_data\n"
# The floor for any check: every file read once and hashed once, by the same hash library.
HASH_ONCE = "import hashlib, sys\nfor name in sys.argv[1:]:\n    hashlib.file_digest(open(name, 'rb'), 'sha256')"


def measured(argv, cwd, env) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one command, from the kernel's accounting of that child."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} failed:\n{process.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def add_row(rows: dict, step: str, reference_name: str, ours: tuple, reference: tuple) -> None:
    row = rows.setdefault((step, reference_name), {"ours": [], "ref": [], "rss": []})
    row["ours"].append(ours[0])
    row["rss"].append(ours[1])
    row["ref"].append(reference[0])


def write_random(path: Path, mib: int) -> None:
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(os.urandom(1 << 20))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="64,512", help="model sizes in MiB, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("sha256sum"):
        raise SystemExit("needs sha256sum (coreutils)")
    bundler = [sys.executable, "-m", "bundler"]

    print(f"{'MiB':>5} {'step':<10} {'bundler s':>10} {'reference':<10} {'ref s':>7} {'ratio':>6} {'peak RSS MiB':>13}")
    for mib in (int(s) for s in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix="bundler-large-"))
        try:
            env = {**os.environ, "BUNDLER_HOME": str(work / "home")}
            write_random(work / "model.bin", mib)
            (work / "score.py").write_text(ENTRY)
            rows: dict[tuple[str, str], dict[str, list]] = {}
            record = partial(add_row, rows)
            for run in range(args.runs):
                shutil.rmtree(work / "home", ignore_errors=True)
                ref_copy = measured(["cp", "model.bin", "copy.bin"], work, env)
                record(
                    "register",
                    "cp",
                    measured([*bundler, "register", "model.bin", "--name", "big"], work, env),
                    ref_copy,
                )
                out = f"out{run}"
                ref_copy = measured(["cp", "model.bin", "copy.bin"], work, env)
                record(
                    "save",
                    "cp",
                    measured([*bundler, "save", out, "--model", "big", "--entry-script", "score.py"], work, env),
                    ref_copy,
                )
                files = [str(p) for p in sorted((work / out).rglob("*")) if p.is_file()]
                ref_read = measured(["sh", "-c", 'cat "$@" >/dev/null', "cat", *files], work, env)
                ref_hash = measured(["sha256sum", *files], work, env)
                ref_hashlib = measured([sys.executable, "-c", HASH_ONCE, *files], work, env)
                ours = measured([*bundler, "verify", out], work, env)
                record("verify", "cat", ours, ref_read)
                record("verify", "hashlib", ours, ref_hashlib)
                record("verify", "sha256sum", ours, ref_hash)
                shutil.rmtree(work / out)
            for (step, reference_name), row in rows.items():
                ours, ref = statistics.median(row["ours"]), statistics.median(row["ref"])
                print(
                    f"{mib:>5} {step:<10} {ours:>10.3f} {reference_name:<10} {ref:>7.3f} {ours / ref:>6.2f} "
                    f"{max(row['rss']):>13.1f}"
                )
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
