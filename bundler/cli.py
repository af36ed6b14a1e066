"""The command line: parse arguments, call the core, print the result. Nothing else.

Errors from the core are BundlerError values; `BundlerGroup.invoke` turns each into one
line on stderr and its exit code (1 failure, 2 bad input), in this one place. `--debug`
shows the traceback instead, for bug reports. Core modules are imported inside the
commands, so `bundler --help` and each command pay only for what they use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bundler import __version__


class BundlerGroup(click.Group):
    def main(self, args=None, prog_name=None, **kwargs):
        """Usage errors, like every error, are one line: what is wrong and where to look."""
        kwargs.pop("standalone_mode", None)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "bundler"
            message = " ".join(exc.format_message().split()).rstrip(".")
            click.echo(f"bundler: error: {message}; see '{where} --help'", err=True)
            sys.exit(2)
        except click.Abort:
            click.echo("bundler: interrupted; nothing was half-written", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        from bundler.errors import BundlerError

        try:
            return super().invoke(ctx)
        except BundlerError as exc:
            if ctx.meta.get("bundler.debug"):
                raise
            click.echo(f"bundler: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            # `bundler verify | head -1`: the reader has what it wanted; Python's own recipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(1)
        except OSError as exc:
            # The machine, not the user's input or a bug: a full disk, a permission, a vanished file.
            if ctx.meta.get("bundler.debug"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"bundler: error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("bundler: interrupted; nothing was half-written", err=True)
            ctx.exit(130)


def home_option(func):
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="BUNDLER_HOME",
        default=None,
        help="Model registry folder (default: $BUNDLER_HOME, else ~/.bundler).",
    )(func)


def _registry(home: Path | None):
    from bundler.registry import Registry, default_home

    return Registry(home or default_home())


@click.group(cls=BundlerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bundler")
@click.option("--debug", is_flag=True, help="Show a traceback on errors (for bug reports).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Turn a registered model into a deterministic, hand-editable Docker build context."""
    ctx.meta["bundler.debug"] = debug


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Model name: letters, digits, . _ - (e.g. diabetes).")
@click.option("--description", default="", help="Free text shown by `models show`.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag; repeatable.")
@home_option
def register(path: Path, name: str, description: str, tags: tuple[str, ...], home: Path | None) -> None:
    """Register a model file or folder as the next version of NAME; prints NAME:VERSION."""
    from bundler.errors import InputError

    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise InputError(f"--tag {tag!r}: expected KEY=VALUE, e.g. --tag framework=sklearn")
        parsed[key] = value
    version = _registry(home).register(path, name, description, parsed)
    for skipped in version.skipped_secrets:  # on stderr: stdout stays just NAME:VERSION, for scripts
        click.echo(f"skipped: {skipped} (looks like a secret; not registered)", err=True)
    click.echo(version.ref)


@main.group(cls=BundlerGroup)
def models() -> None:
    """List and show registered models."""


@models.command("list")
@home_option
def models_list(home: Path | None) -> None:
    """Every registered model with its versions."""
    registry = _registry(home)
    names = registry.names()
    if not names:
        click.echo(f"no models registered in {registry.home}; add one with: bundler register PATH --name NAME")
        return
    click.echo(f"{'NAME':<30} {'LATEST':>6}  VERSIONS")
    for name in names:
        versions = registry.versions(name)
        click.echo(f"{name:<30} {versions[-1]:>6}  {', '.join(map(str, versions))}")


@models.command("show")
@click.argument("ref")
@home_option
def models_show(ref: str, home: Path | None) -> None:
    """Files, sizes, sha256, description and tags of NAME[:VERSION] (default: latest)."""
    from bundler.registry import parse_ref

    model = _registry(home).resolve(parse_ref(ref))
    click.echo(model.ref)
    if model.description:
        click.echo(f"description: {model.description}")
    for key, value in model.tags:
        click.echo(f"tag: {key}={value}")
    for f in model.files:
        click.echo(f"{f.sha256}  {f.size:>12}  {f.path}")


def input_options(func):
    """The inputs of a bundle, shared by `save` and `diff`; collected into `flags`."""
    options = [
        click.option(
            "--model", "models_", multiple=True, metavar="NAME[:VERSION]", help="Model to include; repeatable."
        ),
        click.option("--entry-script", help="The init()/run() script (relative to --source-dir when given)."),
        click.option("--source-dir", help="Folder whose files ship next to the entry script."),
        click.option("--requirements", help="pip requirements file for the image."),
        click.option("--base-image", help="Base image, e.g. python:3.11-slim."),
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path),
            help="Config file (default: ./bundler.toml when present).",
        ),
        click.option(
            "--vendor/--no-vendor",
            default=None,
            help="Download the image's wheels into the bundle, so docker build needs no network.",
        ),
        home_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _flags(models_, entry_script, source_dir, requirements, base_image, config_path, vendor):
    from bundler.config import Flags

    return Flags(
        config=config_path,
        models=models_,
        entry_script=entry_script,
        source_directory=source_dir,
        requirements=requirements,
        base_image=base_image,
        vendor=vendor,
    )


@main.command()
@click.argument("outdir", default="imagefiles", type=click.Path(path_type=Path))
@input_options
@click.option("--force", is_flag=True, help="Replace a bundle even if it has hand edits.")
def save(outdir, models_, entry_script, source_dir, requirements, base_image, config_path, vendor, home, force) -> None:
    """Write the Docker build context for the configured models to OUTDIR (default ./imagefiles)."""
    from bundler.registry import default_home
    from bundler.save import save as save_bundle

    flags = _flags(models_, entry_script, source_dir, requirements, base_image, config_path, vendor)
    result = save_bundle(flags, home or default_home(), Path.cwd(), outdir, force=force)
    image, plan = result.plan.image, result.plan
    click.echo(f"models: {', '.join(image.model_refs)}")
    click.echo(f"engine: {image.engine} ({image.engine_reason})")
    for skipped in plan.skipped_secrets:
        click.echo(f"skipped: {skipped} (looks like a secret; not copied into the bundle)")
    if plan.unpinned:
        click.echo(
            f"note: not pinned to one version: {', '.join(plan.unpinned)}; each docker build may "
            "install different versions (pin them with ==, or save with --vendor)"
        )
    if image.environment.vendored:
        click.echo(f"vendored: {result.prepared.wheel_count} wheels (docker build needs no network but the base image)")
    click.echo(f"wrote {result.file_count} files to {result.path}")
    click.echo(f"next: docker build --tag {image.default_tag} {_shown(result.path)}")


@main.command()
@click.argument("bundle", default="imagefiles", type=click.Path(path_type=Path))
def verify(bundle: Path) -> None:
    """Check every file of BUNDLE against its bundle.json (sha256, size, mode)."""
    from bundler import verify as verify_module
    from bundler.errors import BundlerError

    report = verify_module.check(bundle)
    for label, paths in (("modified", report.modified), ("missing", report.missing), ("extra", report.extra)):
        for path in paths:
            click.echo(f"{label}: {path}")
    if not report.ok:
        count = len(report.modified) + len(report.missing) + len(report.extra)
        raise BundlerError(f"{bundle}: {count} file(s) differ from bundle.json")
    click.echo(f"ok: every file of {bundle} matches bundle.json")


@main.command()
@click.argument("bundle", default="imagefiles", type=click.Path(path_type=Path))
@input_options
def diff(bundle, models_, entry_script, source_dir, requirements, base_image, config_path, vendor, home) -> None:
    """Show what `save` with the current inputs would change in BUNDLE (writes nothing)."""
    from bundler import diff as diff_module
    from bundler.registry import default_home

    flags = _flags(models_, entry_script, source_dir, requirements, base_image, config_path, vendor)
    lines = diff_module.run(flags, home or default_home(), Path.cwd(), bundle)
    for line in lines:
        click.echo(line)
    if lines:
        click.echo(f"save would change {bundle} as shown above")
    else:
        click.echo(f"no changes: save would write {bundle} exactly as it is")


@main.command()
@click.argument("bundle", default="imagefiles", type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: the bundle's).")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes (default: the bundle's).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 serves every interface, as the container does.",
)
def serve(bundle: Path, port: int | None, workers: int | None, host: str) -> None:
    """Run a saved bundle's scoring server here, without Docker, as the container would."""
    from bundler.serve import serve as serve_bundle

    serve_bundle(bundle, port, workers, host)


@main.command()
@click.argument("bundle", default="imagefiles", type=click.Path(path_type=Path))
@click.option("-t", "--tag", help="Image name (default: the first model's name).")
def build(bundle: Path, tag: str | None) -> None:
    """Build the bundle's image with docker (or podman); prints the image name."""
    from bundler.build import build as build_image

    click.echo(f"built image: {build_image(bundle, tag)}")


def _shown(path: Path) -> str:
    """The path as typed in a suggested command: relative where it can be, quoted for the shell."""
    import shlex

    try:
        return shlex.quote(str(path.relative_to(Path.cwd())) or ".")
    except ValueError:
        return shlex.quote(str(path))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
