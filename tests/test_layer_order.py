"""The build-cache rule, read from every golden Dockerfile with BuildKit's parser.

The container tests prove the cache with a real rebuild; these say, in a second, which
instruction breaks the rule when a template edit does: dependencies are installed from the
environment files alone, models come before the runtime and the app, and the app's COPY is
followed only by what must come after it (extra setup as root, USER, CMD).
"""

from __future__ import annotations

import json
from pathlib import Path

import dockerfile as buildkit
import pytest

from bundler.environment import CONDA_PREFIX
from bundler.layout import VENV

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
DOCKERFILES = sorted(GOLDEN.glob("*/Dockerfile"))


def stages(path: Path) -> list[list]:
    result: list[list] = []
    for command in buildkit.parse_file(str(path)):
        if command.cmd == "FROM":
            result.append([])
        if result:
            result[-1].append(command)
    return result


def copy_sources(command) -> tuple[str, ...]:
    return tuple(command.value[:-1])


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_dependencies_install_from_the_environment_files_alone(path):
    environment, _ = stages(path)
    install = next(i for i, c in enumerate(environment) if c.cmd == "RUN" and "pip install" in c.original)
    copied = [src for c in environment[:install] if c.cmd == "COPY" for src in copy_sources(c)]
    assert copied and all(src.startswith(("environment/", "runtime/requirements.txt")) for src in copied), copied


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_file_layers_go_from_rarely_to_often_changed(path):
    _, final = stages(path)
    copies = [copy_sources(c)[0] for c in final if c.cmd == "COPY"]
    inputs = json.loads((path.parent / "bundle.json").read_text())["inputs"]
    environment = CONDA_PREFIX if inputs.get("builder") == "conda" else VENV
    models = ["azureml-models/"] if inputs["models"] else []
    # CA certificates trusted at run time: tiny and the most rarely changed of all, so first.
    ca = ["environment/ca-certificates.pem"] if (path.parent / "environment" / "ca-certificates.pem").is_file() else []
    assert copies == [*ca, environment, *models, "runtime/bundler_runtime/", "azureml-app/"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_only_root_setup_user_and_command_follow_the_app(path):
    """Editing the entry script rebuilds the app layer and these few lines, never a setting."""
    _, final = stages(path)
    app = next(i for i, c in enumerate(final) if c.cmd == "COPY" and copy_sources(c) == ("azureml-app/",))
    after = [c.cmd for c in final[app + 1 :]]
    assert after[-2:] == ["USER", "CMD"], after
    assert set(after[:-2]) <= {"RUN"}, after  # the extra_setup block, as root
