"""`bundler save`: gather the inputs (I/O), plan and render them (pure), emit the tree (I/O).

This is the only place that connects the shell to the core; it never prints.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from bundler import config as config_module
from bundler import emit, entry_script, plan as plan_module, render, requirements, sources
from bundler.errors import ConfigError
from bundler.registry import Registry

RUNTIME_DIR = Path(__file__).parent / "runtime"
RUNTIME_PACKAGE_DIR = RUNTIME_DIR / plan_module.RUNTIME_PACKAGE


@dataclass(frozen=True)
class SaveResult:
    path: Path
    plan: plan_module.Plan
    file_count: int


def runtime_files() -> tuple[tuple[str, Path], ...]:
    """The scoring server's files, as they ship in every bundle (no caches)."""
    files = []
    for path in sorted(RUNTIME_PACKAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append((path.relative_to(RUNTIME_DIR).as_posix(), path))
    return tuple(files)


def build_plan(
    flags: config_module.Flags, home: Path, cwd: Path, outdir: Path, wheel_dir: Path | None = None
) -> tuple[plan_module.Plan, str | None]:
    """Gather inputs and plan; wheel_dir (a scratch folder) is needed only when vendoring."""
    config = config_module.load(flags, cwd)
    registry = Registry(home)
    models = tuple(registry.resolve(ref) for ref in config.models)
    info = entry_script.inspect(config.entry_script)
    selection = None
    if config.source_directory is not None:
        selection = sources.select(config.source_directory, exclude=(outdir,))
    user_template = None
    if config.dockerfile_template is not None:
        try:
            user_template = config.dockerfile_template.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Dockerfile template {config.dockerfile_template}: cannot read it ({exc})") from exc
    environment = None
    if config.requirements is not None:
        environment = requirements.collect(config.requirements, vendored=config.vendor)
    runtime_requirements = (RUNTIME_DIR / "requirements.txt").read_bytes()
    wheels = ()
    if config.vendor:
        wheels = _vendor(config, info, runtime_requirements, wheel_dir, apart=bool(environment and environment.hashed))
    plan = plan_module.make(
        config,
        models,
        info,
        selection,
        runtime_files(),
        runtime_requirements,
        registry.blob_path,
        wheels,
        environment,
    )
    return plan, user_template


def _vendor(config, info, runtime_requirements: bytes, wheel_dir: Path, apart: bool = False):
    """Download wheels for the image (network); pip sees the same requirement files, in the
    same runs (`apart`: hashed requirements get their own), as the image will."""
    from bundler import vendor

    engine, _ = plan_module.choose_engine(config, info)
    runtime_file = wheel_dir.parent / "runtime-requirements.txt"
    runtime_file.write_bytes(plan_module.runtime_requirements_for(engine, runtime_requirements))
    files = (runtime_file,) + ((config.requirements,) if config.requirements else ())
    runs = [(f,) for f in files] if apart else [files]
    for run in runs:
        wheels = vendor.download(run, config.python, config.platform, wheel_dir)
    return wheels  # everything in wheel_dir, after the last run


def bundle_entries(plan: plan_module.Plan, user_template: str | None) -> tuple[plan_module.FileEntry, ...]:
    return tuple(sorted(plan.files + render.generated_files(plan, user_template), key=lambda e: e.path))


def save(flags: config_module.Flags, home: Path, cwd: Path, outdir: Path, force: bool = False) -> SaveResult:
    outdir = Path(cwd, outdir)
    with tempfile.TemporaryDirectory(prefix="bundler-wheels-") as scratch:
        plan, user_template = build_plan(flags, home, cwd, outdir, Path(scratch) / "wheels")
        entries = bundle_entries(plan, user_template)
        path = emit.write(outdir, entries, lambda digests: render.bundle_manifest(plan, digests), force=force)
    return SaveResult(path, plan, len(entries) + 1)
