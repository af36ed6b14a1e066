"""`bundler save`: gather the inputs (I/O), plan and render them (pure), emit the tree (I/O).

`prepare` is everything but the writing (diff and verify --against-inputs use it too);
`save` writes what it prepared. This is the only place that connects the shell to the
core; it never prints.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bundler import config as config_module
from bundler import emit, entry_script, layout, render, requirements, secret_rules, sources
from bundler import plan as plan_module
from bundler.config import PEM_CERTIFICATE
from bundler.entries import FileEntry
from bundler.errors import ConfigError, SourceError
from bundler.registry import Registry

RUNTIME_SOURCE = Path(__file__).parent / "runtime"  # bundler's own copy, shipped in every bundle


@dataclass(frozen=True)
class Prepared:
    plan: plan_module.Plan
    entries: tuple[FileEntry, ...]  # every file but the manifest, sorted by path

    @property
    def wheel_count(self) -> int:
        return sum(1 for e in self.entries if e.path.startswith(layout.WHEELS_DIR + "/"))


@dataclass(frozen=True)
class SaveResult:
    path: Path
    prepared: Prepared
    bytes_written: int = 0  # every file's size, bundle.json included

    @property
    def plan(self) -> plan_module.Plan:
        return self.prepared.plan

    @property
    def file_count(self) -> int:
        return len(self.prepared.entries) + 1  # and the manifest

    def to_json(self) -> dict:
        plan, image = self.plan, self.plan.image
        return {
            "path": str(self.path),
            "files": self.file_count,
            "models": list(image.model_refs),
            "image": image.default_tag,
            "engine": {"name": image.engine, "reason": image.engine_reason},
            "environment": {
                "builder": image.environment.kind,
                "reason": image.environment.reason,
                "vendored_wheels": self.prepared.wheel_count if image.environment.vendored else None,
            },
            "push": [r.push for r in image.registries if r.push],
            "skipped_secrets": list(plan.skipped_secrets),
            "skipped_registries": list(plan.skipped_registries),
            "skipped_bundles": list(plan.skipped_bundles),
            "added_requirements": list(plan.added_requirements),
            "unprovided_imports": [{"name": name, "line": line} for name, line in plan.unprovided_imports],
            "unpinned": list(plan.unpinned),
        }


def runtime_files() -> plan_module.RuntimeFiles:
    """The scoring server's files, as they ship in every bundle (no caches)."""
    package = RUNTIME_SOURCE / layout.RUNTIME_PACKAGE
    files = tuple(
        (path.relative_to(RUNTIME_SOURCE).as_posix(), path)
        for path in sorted(package.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    return plan_module.RuntimeFiles(files, (RUNTIME_SOURCE / "requirements.txt").read_bytes())


def gather(flags: config_module.Flags, home: Path, cwd: Path, outdir: Path) -> plan_module.Inputs:
    """Read every input a plan needs: the config, the registry, the entry script, the sources."""
    config = config_module.load(flags, cwd)
    registry = Registry(home)
    models = []
    for ref in config.models:
        version = registry.resolve(ref)
        models.append(plan_module.StoredModel(version, tuple(registry.blob_path(f.sha256) for f in version.files)))
    selection = None
    if config.source_directory is not None:
        # Never the output folder, nor the registry: a registry inside the sources would ship every model.
        selection = sources.select(config.source_directory, (outdir, home), config.allowed_secrets)
    requirement_files = conda_files = None
    if config.requirements:
        requirement_files = requirements.collect(config.requirements, vendored=config.vendor)
    if config.conda_file:
        from bundler import conda  # only for a conda file: it brings PyYAML

        conda_files = conda.collect(config.conda_file, vendored=config.vendor)
    shipped_text = [f.file for f in selection.files] if selection else [config.entry_script]
    shipped_text += [path for _, path in requirement_files.files] if requirement_files else []
    shipped_text += [conda_files.top, *(path for _, path in conda_files.included)] if conda_files else []
    shipped_text += [config.dockerfile_template] if config.dockerfile_template else []  # its lines reach the Dockerfile
    _refuse_secrets_in_text(shipped_text, frozenset(Path(os.path.abspath(p)) for p in config.allowed_secrets))
    return plan_module.Inputs(
        config=config,
        models=tuple(models),
        entry=entry_script.inspect(config.entry_script),
        sources=selection,
        requirements=requirement_files,
        conda=conda_files,
        runtime=runtime_files(),
        user_template=_user_template(config),
        ca_bundle=_ca_bundle(config),
    )


def _ca_bundle(config: config_module.Config) -> bytes | None:
    """The CA certificates given, one after the other, as pip's --cert reads them."""
    if config.package_index is None or not config.package_index.ca_certificates:
        return None
    # Only the certificates: a comment or anything else in the file never ships.
    blocks = [b for path in config.package_index.ca_certificates for b in PEM_CERTIFICATE.findall(path.read_bytes())]
    return b"".join(block.replace(b"\r\n", b"\n") + b"\n" for block in blocks)


def _refuse_secrets_in_text(paths: list[Path], allowed: frozenset[Path]) -> None:
    """A key or token written into a file that ships is refused, with file and line."""
    for path in paths:
        if secret_rules.is_allowed(path, allowed):
            continue
        text = _text_of(path)
        found = secret_rules.find_in_text(text) if text else None
        if found:
            line, what = found
            raise SourceError(
                f"{path}:{line}: {what}, in a file that would ship in the bundle; remove it (read it at run time "
                f"from an environment variable or a mounted secret), or if it is not a real one allow the file: "
                f"--allow-secret {path} or [secrets] allow in bundler.toml"
            )


def _text_of(path: Path) -> str | None:
    """The file as text when it is text: by its suffix, whatever its size (a notebook), else when
    small and free of NUL bytes. Bytes that are not UTF-8 become U+FFFD: the secrets searched
    for are ASCII, and a Latin-1 comment must not hide them."""
    try:
        if path.suffix.lower() not in secret_rules.TEXT_SUFFIXES:
            if path.stat().st_size > secret_rules.TEXT_SCAN_LIMIT:
                return None
            data = path.read_bytes()
            if b"\0" in data[: secret_rules.HEAD_BYTES]:
                return None
        else:
            data = path.read_bytes()
        return data.decode("utf-8", errors="replace")
    except OSError:
        return None


def _user_template(config: config_module.Config) -> str | None:
    if config.dockerfile_template is None:
        return None
    try:
        return config.dockerfile_template.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Dockerfile template {config.dockerfile_template}: cannot read it ({exc})") from exc


def prepare(flags: config_module.Flags, home: Path, cwd: Path, outdir: Path, scratch: Path) -> Prepared:
    """Gather, plan, vendor (into scratch, with --vendor) and render: every file save would write."""
    plan = plan_module.make(gather(flags, home, cwd, outdir))
    wheels = ()
    if plan.image.environment.vendored:
        from bundler import vendor

        wheels = vendor.packages_for(plan, scratch)
    if plan.image.base_archives:
        from bundler import base_images

        exported, records = base_images.export(plan.image.base_archives, scratch)
        wheels += exported
        plan = replace(plan, manifest=replace(plan.manifest, base_image_archives=records))
    entries = plan.files + wheels + render.generated_files(plan)
    return Prepared(plan, tuple(sorted(entries, key=lambda e: e.path)))


def save(flags: config_module.Flags, home: Path, cwd: Path, outdir: Path, force: bool = False) -> SaveResult:
    outdir = Path(cwd, outdir)
    written = []  # what emit hashed as it wrote, and the manifest made from that

    def manifest(records: dict) -> bytes:
        data = render.manifest(prepared.plan, records)
        written.append(sum(record.size for record in records.values()) + len(data))
        return data

    with tempfile.TemporaryDirectory(prefix="bundler-save-") as scratch:
        prepared = prepare(flags, home, cwd, outdir, Path(scratch))
        path = emit.write(outdir, prepared.entries, manifest, force=force)
    return SaveResult(path, prepared, written[-1])
