"""How long `bundler save` of the diabetes example (and `bundler --help`) takes, against
references run alongside.

    python benchmarks/save_speed.py [--runs 10] [--mlflow /path/to/venv/bin/mlflow]

References, each measured in this same run, alternating with bundler:
- `python -c pass`: the interpreter's own start-up, the floor for any Python CLI;
- importing what `save` cannot do without (click, jinja2, tomllib): the floor for this save;
- importing click alone: the floor for `--help`;
- `mlflow models generate-dockerfile` on the same model (optional; needs an MLflow install).
Prints medians and ratios. Issue 15's targets: save at most 0.10 s median, --help at most 0.06 s.
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
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "diabetes"


def timed(cmd, cwd, env) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--mlflow", help="an mlflow executable, to time generate-dockerfile as a peer")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bundler-bench-"))
    try:
        shutil.copytree(EXAMPLE, work / "example", ignore=shutil.ignore_patterns("imagefiles", "model.pkl"))
        cwd = work / "example"
        env = {**os.environ, "BUNDLER_HOME": str(work / "home")}
        subprocess.run([sys.executable, "train.py"], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [sys.executable, "-m", "bundler", "register", "model.pkl", "--name", "diabetes"],
            cwd=cwd,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import click, jinja2, tomllib": [sys.executable, "-c", "import click, jinja2, tomllib"],
            "bundler save": [sys.executable, "-m", "bundler", "save", "imagefiles"],
            "import click": [sys.executable, "-c", "import click"],
            "bundler --help": [sys.executable, "-m", "bundler", "--help"],
        }
        if args.mlflow:
            _mlflow_model(args.mlflow, cwd)
            commands["mlflow models generate-dockerfile"] = [
                args.mlflow,
                "models",
                "generate-dockerfile",
                "-m",
                str(cwd / "mlflow-model"),
                "-d",
                str(cwd / "mlflow-dockerfile"),
                "--env-manager",
                "local",
            ]
        times = {name: [] for name in commands}
        for _ in range(args.runs):  # alternate, so drift on the machine hits all alike
            for name, cmd in commands.items():
                times[name].append(timed(cmd, cwd, env))
        base = statistics.median(times["python -c pass"])
        print(f"{'command':<36} {'median s':>9} {'min s':>7} {'x python start':>15}")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:<36} {median:>9.3f} {min(values):>7.3f} {median / base:>15.1f}")
        if args.mlflow:
            ratio = statistics.median(times["mlflow models generate-dockerfile"]) / statistics.median(
                times["bundler save"]
            )
            print(f"mlflow generate-dockerfile / bundler save = {ratio:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _mlflow_model(mlflow: str, cwd: Path) -> None:
    python = str(Path(mlflow).with_name("python"))
    code = (
        "import joblib, mlflow.sklearn; "
        "mlflow.sklearn.save_model(joblib.load('model.pkl'), 'mlflow-model', serialization_format='pickle')"
    )
    subprocess.run([python, "-c", code], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
