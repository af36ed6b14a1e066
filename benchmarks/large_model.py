"""register, save and verify with a large model: time against plain tools, memory against size.

    python benchmarks/large_model.py [--sizes 64,512] [--runs 3]

For each model size (MiB of random bytes), in one run and alternating with the references:
- `bundler register` against `cp` of the same file, `cp` + `sync FILE` (register makes
  its copy durable: a copy that survives a crash is the fair reference), and hashing the
  file once (register names the file by its sha256: no register can take less);
- `bundler save` against `cp`, and against hashing the file once (the floor for a copy that
  checks every byte: on a CPU without SHA extensions, hashing is slower than copying);
- `bundler pack` (.tar) against `tar cf` of the same bundle folder;
- `bundler verify` against `cat` of the bundle's files (one read), Python's hashlib hashing
  each once (the floor for any check) and `sha256sum` (coreutils' hash, often slower);
- each bundler command's peak memory (max RSS), which must not grow with the model;
- with --small-files N: `bundler register` of a folder of N small files (a tokenizer, a
  sharded checkpoint) against `cp -r` and `cp -r` + `sync -f`, on the disk and, where there
  is one, on a memory file system (/dev/shm): where creating a file costs the disk little,
  what each file costs in Python shows.
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
    """(seconds, peak RSS in MiB) of one command, from the kernel's accounting of that child.
    Each starts with no dirty pages: what the previous command left to write back would
    otherwise throttle this one's writes (a 2 GiB `cp` leaves 2 GiB behind it)."""
    subprocess.run(["sync"], check=True)
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


def print_rows(rows: dict, size: str) -> None:
    """Medians, their ratio, and the ratio of the fastest runs ("best"): on a machine whose disk
    is shared, a run can be several times slower than the next for reasons outside it, and
    the fastest run of each is the least disturbed measure of its own cost."""
    for (step, reference_name), row in rows.items():
        ours, ref = statistics.median(row["ours"]), statistics.median(row["ref"])
        best = min(row["ours"]) / min(row["ref"])
        print(
            f"{size} {step:<10} {ours:>10.3f} {reference_name:<10} {ref:>7.3f} {ours / ref:>6.2f} {best:>6.2f} "
            f"{max(row['rss']):>13.1f}"
        )


def write_random(path: Path, mib: int) -> None:
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(os.urandom(1 << 20))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="64,512", help="model sizes in MiB, comma-separated; empty: none")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small-files", type=int, default=2000, help="files in the folder case; 0: skip it")
    args = parser.parse_args()
    if not shutil.which("sha256sum"):
        raise SystemExit("needs sha256sum (coreutils)")
    bundler = [sys.executable, "-m", "bundler"]

    print(
        f"{'MiB':>5} {'step':<10} {'bundler s':>10} {'reference':<10} {'ref s':>7} {'ratio':>6} {'best':>6} "
        f"{'peak RSS MiB':>13}"
    )
    for mib in (int(s) for s in args.sizes.split(",") if s.strip()):
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
                ref_durable = measured(
                    ["sh", "-c", "rm -f copy.bin && cp model.bin copy.bin && sync copy.bin"], work, env
                )
                ref_floor = measured([sys.executable, "-c", HASH_ONCE, "model.bin"], work, env)
                ours = measured([*bundler, "register", "model.bin", "--name", "big"], work, env)
                record("register", "cp", ours, ref_copy)
                record("register", "cp+sync", ours, ref_durable)
                record("register", "hash once", ours, ref_floor)
                out = f"out{run}"
                ref_copy = measured(["cp", "model.bin", "copy.bin"], work, env)
                ref_floor = measured([sys.executable, "-c", HASH_ONCE, "model.bin"], work, env)
                ours = measured([*bundler, "save", out, "--model", "big", "--entry-script", "score.py"], work, env)
                record("save", "cp", ours, ref_copy)
                record("save", "hash once", ours, ref_floor)
                ref_tar = measured(["tar", "cf", "ref.tar", "-C", out, "."], work, env)
                record("pack .tar", "tar cf", measured([*bundler, "pack", out, "-o", "out.tar"], work, env), ref_tar)
                (work / "ref.tar").unlink()
                (work / "out.tar").unlink()
                files = [str(p) for p in sorted((work / out).rglob("*")) if p.is_file()]
                ref_read = measured(["sh", "-c", 'cat "$@" >/dev/null', "cat", *files], work, env)
                ref_hash = measured(["sha256sum", *files], work, env)
                ref_hashlib = measured([sys.executable, "-c", HASH_ONCE, *files], work, env)
                ours = measured([*bundler, "verify", out], work, env)
                record("verify", "cat", ours, ref_read)
                record("verify", "hashlib", ours, ref_hashlib)
                record("verify", "sha256sum", ours, ref_hash)
                shutil.rmtree(work / out)
            print_rows(rows, f"{mib:>5}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if args.small_files:
        for where in (None, "/dev/shm"):
            if where is None or os.path.isdir(where):
                small_files(bundler, args.small_files, args.runs, where)


def small_files(bundler, count: int, runs: int, where: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="bundler-small-", dir=where))
    try:
        env = {**os.environ, "BUNDLER_HOME": str(work / "home")}
        (work / "shards").mkdir()
        for i in range(count):
            (work / "shards" / f"shard-{i:05d}.bin").write_bytes(os.urandom(2048 + i % 4096))
        (work / "one").mkdir()
        (work / "one" / "shard-00000.bin").write_bytes(os.urandom(2048))
        rows: dict[tuple[str, str], dict[str, list]] = {}
        for _ in range(runs):
            shutil.rmtree(work / "home", ignore_errors=True)
            shutil.rmtree(work / "copy", ignore_errors=True)
            ref = measured(["cp", "-r", "shards", "copy"], work, env)
            shutil.rmtree(work / "copy")
            durable = measured(["sh", "-c", "cp -r shards copy && sync -f copy"], work, env)
            ours = measured([*bundler, "register", "shards", "--name", "shards"], work, env)
            add_row(rows, f"{count} files", "cp -r", ours, ref)
            add_row(rows, f"{count} files", "cp -r+sync", ours, durable)
            # One file: each command's start-up, so what a file costs beyond it shows.
            shutil.rmtree(work / "copy")
            one_ref = measured(["sh", "-c", "cp -r one copy && sync -f copy"], work, env)
            one = measured([*bundler, "register", "one", "--name", "one"], work, env)
            add_row(rows, "1 file", "cp -r+sync", one, one_ref)
        print(f"in {work.parent}:")
        print_rows(rows, f"{'':>5}")
        per_file = {
            name: (
                statistics.median(rows[(f"{count} files", "cp -r+sync")][name])
                - statistics.median(rows[("1 file", "cp -r+sync")][name])
            )
            / (count - 1)
            * 1e6
            for name in ("ours", "ref")
        }
        print(
            f"{'':>5} per file beyond the first: bundler {per_file['ours']:.0f} us, cp -r+sync {per_file['ref']:.0f} us"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
