"""Our scoring runtime against the reference Azure ML server, on the same entry script.

    python benchmarks/runtime_vs_reference.py [--rounds 3] [--seconds 10] [--slices 5] [--workers 1]

The model is the README's example (Ridge(alpha=0.5) on scikit-learn's diabetes data). Both
servers run the same score.py with the same worker count on loopback; wrk (-t2 -c16,
keep-alive) posts the seed request. In each round both servers (and the no-op floor) are up
and wrk loads them in turn, in SLICES short runs each, the order reversed every other slice,
so drift on the machine hits both alike within a round. Each server runs in its own clean venv with what its image would
install (see runtime_python). Cold start is process start to the first healthy answer
(polled every 2 ms), minus the time init() itself took (measured inside score.py); "less its
imports" also takes away the time score.py's module-level imports took (numpy, joblib),
leaving the server's own part. "floor" is what no server can avoid: a bare Python process
that only runs score.py's imports, start to exit, with the same packages. "no-op floor" is
our server answering a run() that returns at once (the server's own ceiling on this machine).
"1 MB"/"10 MB" are single JSON requests of that size (the same rows, many of them), median
time per request. "server CPU us/req" is the CPU time of the server's processes per request
during the load, and "wrk CPU" wrk's own: on a 2-core machine wrk takes CPU the servers would
use, so "2-core ceiling" is the best requests/s ratio both could show when they and wrk fill
both cores. "run() alone" is score.py's run() on the seed in a bare process: every server
pays it, which bounds how close to the no-op floor any server can come.
Needs wrk and the reference server's venv (.ci/setup-reference-server.sh).
Targets (issue 15): >= 3x the reference's requests/s and p99 <= half of its p99 in every
round, >= 85% of the no-op floor's requests/s; the same with --workers 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "runtime")]
from cache_dir import CACHE  # noqa: E402
from servers import REFERENCE_BIN, RUNTIME_DIR, free_port  # noqa: E402

SEED = '{"data": [[1,2,3,4,5,6,7,8,9,10],[10,9,8,7,6,5,4,3,2,1]]}'
SCRIPT_IMPORTS = "import json, os\nimport joblib, numpy as np\n"
# The example's score.py, timed: its own module-level imports, and init().
TIMED_SCORE = (
    """
import time
loading = time.perf_counter()
"""
    + SCRIPT_IMPORTS
    + """
imports = time.perf_counter() - loading
model = None
def init():
    global model
    started = time.perf_counter()
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.pkl"))
    # Written whole, then renamed: with 2 workers the other may be reading it meanwhile.
    partial = f"{os.environ['INIT_TIME_FILE']}.{os.getpid()}"
    with open(partial, "w") as f:
        json.dump({"init": time.perf_counter() - started, "imports": imports}, f)
    os.replace(partial, os.environ["INIT_TIME_FILE"])
def run(raw_data):
    return model.predict(np.array(json.loads(raw_data)["data"])).tolist()
"""
)


def runtime_python() -> Path:
    """A clean venv with what the image installs, as the reference gets its own clean venv:
    both then start without this machine's site-packages (and its .pth start-up hooks)."""
    venv = CACHE / "bundler-runtime-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-r",
                str(RUNTIME_DIR / "requirements.txt"),
                "-r",
                str(REPO / "examples/diabetes/requirements.txt"),
            ],
            check=True,
        )
    return python


def compiled_runtime(work: Path) -> Path:
    """A copy of the runtime compiled to .pyc, as the image's Dockerfile compiles it."""
    copy = work / "runtime"
    shutil.copytree(RUNTIME_DIR, copy)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([str(runtime_python()), "-m", "compileall", "-q", str(copy)], check=True, env=env)
    return copy


def start(kind: str, app: Path, port: int, workers: int, init_file: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUNDLER_", "AZUREML_", "AML_"))}
    env.update(AML_APP_ROOT=str(app), AZUREML_MODEL_DIR=str(app), INIT_TIME_FILE=str(init_file))
    if kind == "bundler":
        env.update(
            PYTHONPATH=str(app.parent / "runtime"),
            AZUREML_ENTRY_SCRIPT="score.py",
            BUNDLER_PORT=str(port),
            BUNDLER_WORKERS=str(workers),
            BUNDLER_HOST="127.0.0.1",
        )
        argv = [str(runtime_python()), "-m", "bundler_runtime"]
    else:
        env.update(WORKER_COUNT=str(workers))
        argv = [str(REFERENCE_BIN), "--entry_script", str(app / "score.py"), "--port", str(port)]
    return subprocess.Popen(argv, env=env, cwd=app, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_healthy(port: int, process: subprocess.Popen) -> float:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    started = time.perf_counter()
    while True:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with opener.open(f"http://127.0.0.1:{port}/", timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.002)


NOOP_SCORE = "def init():\n    pass\n\ndef run(raw_data):\n    return [0.0]\n"


def large_request(port: int, megabytes: int, repeats: int = 5) -> float:
    """Median seconds for one POST of a JSON body of about MEGABYTES, answered 200."""
    import urllib.request

    row = "[1,2,3,4,5,6,7,8,9,10]"
    rows = max(1, megabytes * 1_000_000 // (len(row) + 1))
    body = ('{"data": [' + ",".join([row] * rows) + "]}").encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    times = []
    for _ in range(repeats):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/score", data=body, headers={"Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with opener.open(request, timeout=300) as response:
            response.read()
            assert response.status == 200
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass  # exited meanwhile
    return total


def wrk(port: int, seconds: int, script: Path, server_pid: int) -> dict:
    """wrk's figures, and the CPU time per request of the server (all its processes) and of
    wrk itself: on a 2-core machine the load generator competes with the server for CPU."""
    server_before, wrk_before = process_tree_cpu(server_pid), _children_cpu()
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}/score"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    server_cpu, wrk_cpu = process_tree_cpu(server_pid) - server_before, _children_cpu() - wrk_before
    requests = int(re.search(r"(\d+) requests in", out).group(1))

    def ms(label):
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)$", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    took, unit = re.search(r"\d+ requests in ([\d.]+)(ms|s|m)", out).groups()
    return {
        "requests": requests,
        "seconds": float(took) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit],
        "server_cpu_us": server_cpu / requests * 1e6,
        "wrk_cpu_us": wrk_cpu / requests * 1e6,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms("50%"),
        "p99": ms("99%"),
        "errors": int(errors.group(1)) if errors else 0,
    }


def interleaved(servers: dict, seconds: int, slices: int, script: Path) -> dict:
    """wrk on each server in turn, SLICES times, SECONDS/SLICES each, the order reversed every
    other slice; a round's figures for each server are its slices' together. This machine's
    speed drifts (a neighbour's load comes and goes): a round of one long run per server let
    one server meet a slow minute that the other missed."""
    parts = {kind: [] for kind in servers}
    kinds = list(servers)
    for index in range(slices):
        for kind in kinds if index % 2 == 0 else kinds[::-1]:
            port, pid = servers[kind]
            parts[kind].append(wrk(port, max(1, seconds // slices), script, pid))
    return {kind: _together(each) for kind, each in parts.items()}


def _together(parts: list[dict]) -> dict:
    requests = sum(p["requests"] for p in parts)
    return {
        "rps": requests / sum(p["seconds"] for p in parts),
        "p50": statistics.median(p["p50"] for p in parts),
        "p99": max(p["p99"] for p in parts),  # the worst slice's, for both servers alike
        "errors": sum(p["errors"] for p in parts),
        "server_cpu_us": sum(p["server_cpu_us"] * p["requests"] for p in parts) / requests,
        "wrk_cpu_us": sum(p["wrk_cpu_us"] * p["requests"] for p in parts) / requests,
    }


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


RUN_ALONE = """
import json, os, sys, time
sys.path.insert(0, os.getcwd())
import score
score.init()
seed = sys.argv[1]
for _ in range(500):
    score.run(seed)
started, calls = time.perf_counter(), 5000
for _ in range(calls):
    score.run(seed)
print((time.perf_counter() - started) / calls * 1e6)
"""


def run_alone_us(app: Path, init_file: Path) -> float:
    """Microseconds per call of score.py's run() on the seed request in a bare process: what
    every server pays per request before any HTTP work of its own."""
    env = {**os.environ, "AZUREML_MODEL_DIR": str(app), "INIT_TIME_FILE": str(init_file)}
    out = subprocess.run(
        [str(runtime_python()), "-c", RUN_ALONE, SEED], cwd=app, env=env, check=True, capture_output=True
    )
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--slices", type=int, default=5, help="interleaved wrk runs per server and round")
    parser.add_argument("--cold-starts", type=int, default=10, help="extra alternating starts, for cold start alone")
    args = parser.parse_args()
    if not shutil.which("wrk") or not REFERENCE_BIN.exists():
        raise SystemExit("needs wrk (apt-get install wrk) and the reference server (.ci/setup-reference-server.sh)")

    work = Path(tempfile.mkdtemp(prefix="bundler-runtime-bench-"))
    try:
        app = work / "app"
        app.mkdir()
        subprocess.run(
            [sys.executable, str(REPO / "examples/diabetes/train.py"), str(app / "model.pkl")],
            check=True,
            capture_output=True,
        )
        (app / "score.py").write_text(TIMED_SCORE)
        compiled_runtime(work)
        lua = work / "post.lua"
        lua.write_text(
            f'wrk.method = "POST"\nwrk.body = \'{SEED}\'\nwrk.headers["Content-Type"] = "application/json"\n'
        )
        results = {"bundler": [], "reference": [], "noop": []}

        noop = work / "noop"
        noop.mkdir()
        (noop / "score.py").write_text(NOOP_SCORE)

        def launch(kind: str, folder: Path = app) -> tuple[subprocess.Popen, int, dict]:
            """A started server, its port, and its cold start figures."""
            port, init_file = free_port(), work / f"init-{kind}"
            process = start(kind if kind != "noop" else "bundler", folder, port, args.workers, init_file)
            try:
                healthy = wait_healthy(port, process)
                timed = json.loads(init_file.read_text()) if init_file.exists() else None
            except BaseException:
                stop(process)
                raise
            if timed is None:  # the no-op script times nothing
                return process, port, {}
            return (
                process,
                port,
                {
                    "init": timed["init"],
                    "cold_overhead": healthy - timed["init"],
                    "server_overhead": healthy - timed["init"] - timed["imports"],
                },
            )

        def stop(process: subprocess.Popen) -> None:
            process.terminate()
            process.wait(30)

        def cold_start(kind: str) -> dict:
            process, _, cold = launch(kind)
            stop(process)
            return cold

        # Each round: all three servers up (the no-op floor is our server with a run() that does
        # nothing), wrk on each in interleaved slices, then the large requests.
        for _ in range(args.rounds):
            running = {}
            try:
                for kind in ("reference", "bundler", "noop"):
                    running[kind] = launch(kind, noop if kind == "noop" else app)
                loads = interleaved(
                    {kind: (port, process.pid) for kind, (process, port, _) in running.items()},
                    args.seconds,
                    args.slices,
                    lua,
                )
                for kind, (_, port, cold) in running.items():
                    if kind == "noop":
                        results["noop"].append(loads[kind])
                    else:
                        large = {"1 MB s": large_request(port, 1), "10 MB s": large_request(port, 10)}
                        results[kind].append({**loads[kind], **large, **cold})
            finally:
                for process, _, _ in running.values():
                    stop(process)

        # Cold start varies more than throughput: measure it on its own, many times, alternating.
        def floor() -> dict:
            started = time.perf_counter()
            subprocess.run([str(runtime_python()), "-c", SCRIPT_IMPORTS], check=True, cwd=app)
            return {"floor": time.perf_counter() - started}

        results["floor"] = []
        for _ in range(args.cold_starts):
            for kind in ("reference", "bundler"):
                results[kind].append(cold_start(kind))
            results["floor"].append(floor())

        def median(kind, key):
            values = [r[key] for r in results[kind] if key in r]
            return statistics.median(values) if values else None

        print(
            f"{args.rounds} rounds of {args.seconds}s per server in {args.slices} interleaved slices, "
            f"{args.workers} worker(s), wrk -t2 -c16; "
            f"cold start over {args.rounds + args.cold_starts} alternating starts each"
        )
        print(f"{'':18}{'bundler':>12}{'reference':>12}{'ratio':>10}   target")
        rows = [
            ("requests/s", "rps", ">= 3.0"),
            ("p50 latency ms", "p50", ""),
            ("p99 latency ms", "p99", "<= 0.5"),
            ("server CPU us/req", "server_cpu_us", "<= 0.33 (the same target, in CPU)"),
            ("wrk CPU us/req", "wrk_cpu_us", ""),
            ("1 MB request s", "1 MB s", ""),
            ("10 MB request s", "10 MB s", ""),
            ("cold overhead s", "cold_overhead", "<= 0.33"),
            ("  less its imports", "server_overhead", ""),
            ("init() s", "init", ""),
        ]
        for label, key, target in rows:
            ours, ref = median("bundler", key), median("reference", key)
            if ours is not None:  # no throughput figures with --rounds 0
                print(f"{label:18}{ours:12.3f}{ref:12.3f}{ours / ref:10.2f}   {target}")
        # The loaded rounds, ours and the reference's side by side (cold starts alone carry no load).
        rounds = list(zip(*([r for r in results[kind] if "rps" in r] for kind in ("bundler", "reference"))))

        def each_round(key: str) -> list[float]:
            return [round(ours[key] / ref[key], 2) for ours, ref in rounds]

        if rounds:
            ratios, p99s, cpus = each_round("rps"), each_round("p99"), each_round("server_cpu_us")
            print(
                f"{'each round':18} requests/s ratio {ratios} (min {min(ratios)}), p99 ratio {p99s} (max {max(p99s)}), "
                f"server CPU/req ratio {cpus} (max {max(cpus)})"
            )
        if results["noop"]:
            noop_rps = statistics.median(r["rps"] for r in results["noop"])
            ours = median("bundler", "rps")
            print(f"{'no-op floor rps':18}{ours:12.1f}{noop_rps:12.1f}{ours / noop_rps:10.2f}   >= 0.85 (ours / no-op)")
        if results["noop"] and rounds:
            # What stops the 85% target: the server's own cost is already below run()'s own.
            alone = run_alone_us(app, work / "init-alone")
            noop_cpu = statistics.median(r["server_cpu_us"] for r in results["noop"])
            ours_cpu, ref_cpu = median("bundler", "server_cpu_us"), median("reference", "server_cpu_us")
            print(
                f"{'run() alone us':18}{alone:12.1f}{'':12}{'':10}   in a bare process; "
                f"no-op server {noop_cpu:.1f} us CPU/req, so at best {noop_cpu / (noop_cpu + alone):.2f} of the "
                f"no-op's rate (measured {ours_cpu:.1f} us/req)"
            )
            ceiling = (ref_cpu + median("reference", "wrk_cpu_us")) / (ours_cpu + median("bundler", "wrk_cpu_us"))
            print(
                f"{'2-core ceiling':18}{'':12}{'':12}{ceiling:10.2f}   the requests/s ratio when servers and wrk "
                "share both cores (what --workers 2 can show on this machine)"
            )
        if results["floor"]:
            lowest, ref = median("floor", "floor"), median("reference", "cold_overhead")
            print(f"{'floor s':18}{lowest:12.3f}{ref:12.3f}{lowest / ref:10.2f}   (python + score.py's imports alone)")
        print(
            json.dumps(
                {k: [{m: round(v, 4) for m, v in r.items()} for r in rs if "rps" in r] for k, rs in results.items()}
            )
        )
        assert not any(r.get("errors") for rs in results.values() for r in rs), "non-2xx responses during the load"
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
