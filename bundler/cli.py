"""The command line: parse arguments, call the core, print the result. Nothing else.

Errors from the core are BundlerError values; `BundlerGroup.invoke` turns each into one
line on stderr and its exit code (1 failure, 2 bad input), in this one place. `--debug`
shows the traceback instead, for bug reports. Core modules are imported inside the
commands, so `bundler --help` and each command pay only for what they use. A file name is
printed as it is when it is plain text, else quoted with escapes (`shown`), so no name
can break a line or pass for another line of output.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING

import click

from bundler import __version__

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_BUNDLE = "imagefiles"


class PathParameter(click.Path):
    """click.Path handing the command a pathlib.Path. pathlib is imported when a command runs,
    not for `bundler --help`, where it was a third of bundler's own start-up beyond click."""

    def convert(self, value, param, ctx):
        from pathlib import Path

        return Path(super().convert(value, param, ctx))


class BundlerGroup(click.Group):
    def main(self, args=None, prog_name=None, **kwargs):
        """Usage errors, like every error, are one line: what is wrong and where to look."""
        kwargs.pop("standalone_mode", None)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "bundler"
            message = " ".join(exc.format_message().split()).rstrip(".")
            click.echo(f"bundler: error: {one_line(message)}; see '{where} --help'", err=True)
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
            click.echo(f"bundler: error: {one_line(str(exc))}", err=True)
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
            click.echo(f"bundler: error: {one_line(f'{where}{exc.strerror or exc}')}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("bundler: interrupted; nothing was half-written", err=True)
            ctx.exit(130)

    def format_commands(self, ctx: click.Context, formatter) -> None:
        """Each command with its whole first line of help (click would cut it to fit one line)."""
        rows = [
            (name, command.get_short_help_str(limit=200))
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def shown(name: str) -> str:
    """A file name as printed: as it is when plain, else in quotes with escapes (a newline as \\n,
    a byte that is not UTF-8 as \\xNN)."""
    if name.isprintable() and name == name.strip() and not name.startswith('"'):
        return name
    out = []
    for char in name:
        if "\udc80" <= char <= "\udcff":  # a byte that was not UTF-8, as os.fsdecode keeps it
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() or char == " ":
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return '"' + "".join(out) + '"'


def one_line(message: str) -> str:
    """A message with nothing in it that could end the line or fail to print."""
    if message.isprintable():
        return message
    return "".join(char if char.isprintable() else shown(char)[1:-1] for char in message)


def home_option(func):
    return click.option(
        "--home",
        type=PathParameter(file_okay=False),
        envvar="BUNDLER_HOME",
        default=None,
        help="Model registry folder (default: $BUNDLER_HOME, else ~/.bundler).",
    )(func)


def json_option(func):
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON document on stdout (what bundler.api returns); messages go to stderr.",
    )(func)


def _print_json(result) -> None:
    import json

    click.echo(json.dumps(result.to_json() if hasattr(result, "to_json") else result, indent=2, sort_keys=True))


@click.group(cls=BundlerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bundler")
@click.option("--debug", is_flag=True, help="Show a traceback on errors (for bug reports).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (they show only on a terminal anyway).")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Turn a registered model into a deterministic, hand-editable Docker build context."""
    ctx.meta["bundler.debug"] = debug
    if not quiet and sys.stderr.isatty():
        from bundler import progress

        progress.install(progress.terminal_bar)


@main.command()
@click.argument("path", type=PathParameter())
@click.option("--name", required=True, help="Model name: letters, digits, . _ - (e.g. diabetes).")
@click.option("--description", default="", help="Free text shown by `models show`.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag; repeatable.")
@home_option
def register(path: Path, name: str, description: str, tags: tuple[str, ...], home: Path | None) -> None:
    """Register a model file or folder as the next version of NAME; prints NAME:VERSION."""
    from bundler import api
    from bundler.registry import parse_tags

    done = api.register(path, name, description=description, tags=parse_tags(tags), home=home)
    # Notes go to stderr: stdout stays just NAME:VERSION, for scripts.
    if done.freed_bytes:
        click.echo(f"freed: {_size(done.freed_bytes)} left in the registry by an interrupted register", err=True)
    for skipped in done.skipped_secrets:
        click.echo(f"skipped: {shown(skipped)} (looks like a secret; not registered)", err=True)
    for skipped in done.skipped_registries:
        click.echo(f"skipped: {shown(skipped)} (a bundler model registry; never registered)", err=True)
    for skipped in done.skipped_bundles:
        click.echo(f"skipped: {shown(skipped)} (a saved bundle; never registered)", err=True)
    click.echo(done.version.ref)


@main.command()
@home_option
def gc(home: Path | None) -> None:
    """Free what interrupted registers left in the registry, and files no version uses."""
    from bundler import api

    registry = api.registry(home)
    done = registry.gc()
    click.echo(
        f"freed {_size(done.tmp_bytes + done.blob_bytes)} in {registry.home}: {_size(done.tmp_bytes)} of "
        f"interrupted registers, {done.blob_count} stored file(s) no version uses ({_size(done.blob_bytes)})"
    )


@main.group(cls=BundlerGroup)
def models() -> None:
    """List and show registered models."""


@models.command("list")
@home_option
@json_option
def models_list(home: Path | None, as_json: bool) -> None:
    """Every registered model with its versions."""
    from bundler import api

    found = api.models(home)
    if as_json:
        _print_json({"models": [summary.to_json() for summary in found]})
        return
    if not found:
        where = api.registry(home).home
        click.echo(f"no models registered in {where}; add one with: bundler register PATH --name NAME")
        return
    click.echo(f"{'NAME':<30} {'LATEST':>6}  VERSIONS")
    for summary in found:
        click.echo(f"{summary.name:<30} {summary.latest:>6}  {', '.join(map(str, summary.versions))}")


@models.command("show")
@click.argument("ref")
@home_option
@json_option
def models_show(ref: str, home: Path | None, as_json: bool) -> None:
    """Files, sizes, sha256, description and tags of NAME[:VERSION] (default: latest)."""
    from bundler import api

    model = api.model(ref, home)
    if as_json:
        _print_json(model)
        return
    click.echo(model.ref)
    if model.description:
        click.echo(f"description: {one_line(model.description)}")
    for key, value in model.tags:
        click.echo(f"tag: {one_line(key)}={one_line(value)}")
    for key, value in model.properties:
        click.echo(f"property: {one_line(key)}={one_line(value)}")
    for f in model.files:
        click.echo(f"{f.sha256}  {f.size:>12}  {shown(f.path)}")


# Each input option's parameter, and the Flags field it fills.
_INPUT_FIELDS = {
    "models_": "models",
    "entry_script": "entry_script",
    "source_dir": "source_directory",
    "requirements": "requirements",
    "conda_file": "conda_file",
    "conda_builder": "conda_builder",
    "base_image": "base_image",
    "config_path": "config",
    "vendor": "vendor",
    "with_base_image": "with_base_image",
    "deploy": "deploy",
    "allow_secrets": "allow_secrets",
}


def input_options(func):
    """The inputs of a bundle, shared by `save`, `diff` and `verify --against-inputs`; the
    command receives them as one `flags` value (and the registry as `home`)."""

    @functools.wraps(func)
    def with_flags(*args, **kwargs):
        from bundler.config import Flags

        flags = Flags(**{field: kwargs.pop(name) for name, field in _INPUT_FIELDS.items()})
        return func(*args, flags=flags, **kwargs)

    options = [
        click.option(
            "--model",
            "models_",
            multiple=True,
            metavar="NAME[:VERSION]",
            help="Model to include; repeatable (none: AZUREML_MODEL_DIR is an empty folder).",
        ),
        click.option("--entry-script", help="The init()/run() script (relative to --source-dir when given)."),
        click.option("--source-dir", help="Folder whose files ship next to the entry script."),
        click.option("--requirements", help="pip requirements file for the image."),
        click.option("--conda-file", help="conda environment file for the image (instead of --requirements)."),
        click.option(
            "--conda-builder",
            type=click.Choice(["auto", "pip", "conda"]),
            help="What installs the conda file: pip into a venv, or conda (micromamba); default auto.",
        ),
        click.option("--base-image", help="Base image, e.g. python:3.11-slim."),
        click.option(
            "--config",
            "config_path",
            type=PathParameter(),
            help="Config file (default: ./bundler.toml when present).",
        ),
        click.option(
            "--vendor/--no-vendor",
            default=None,
            help="Download the image's packages into the bundle, so docker build needs no network.",
        ),
        click.option(
            "--with-base-image/--without-base-image",
            default=None,
            help="Export the base image into the bundle (base-images/), for `docker load` where no registry is.",
        ),
        click.option(
            "--deploy/--no-deploy",
            default=None,
            help="Write deploy/kubernetes.yaml and deploy/compose.yaml (default: yes, unless [deploy] enabled=false).",
        ),
        click.option(
            "--allow-secret",
            "allow_secrets",
            multiple=True,
            metavar="PATH",
            help="A file (or folder) that only looks like a secret: ship it; repeatable.",
        ),
        home_option,
    ]
    for option in reversed(options):
        with_flags = option(with_flags)
    return with_flags


@main.command()
@click.argument("outdir", default=DEFAULT_BUNDLE, type=PathParameter())
@input_options
@click.option("--force", is_flag=True, help="Replace a bundle even if it has hand edits.")
@click.option(
    "--archive",
    type=PathParameter(dir_okay=False),
    help="Also write the bundle as one archive (.tar or .tar.gz) to carry across an air gap.",
)
@json_option
def save(outdir: Path, flags, home: Path | None, force: bool, archive: Path | None, as_json: bool) -> None:
    """Write the Docker build context for the configured models to OUTDIR (default ./imagefiles)."""
    import time

    from bundler import api

    started = time.monotonic()
    result = api.save(outdir, flags, home=home, force=force)
    packed = api.pack(result.path, archive) if archive else None
    seconds = time.monotonic() - started
    if as_json:
        _print_json({**result.to_json(), "archive": packed.to_json() if packed else None})
        return
    image, plan = result.plan.image, result.plan
    click.echo(f"models: {', '.join(image.model_refs) or 'none (AZUREML_MODEL_DIR is an empty folder)'}")
    click.echo(f"engine: {image.engine} ({image.engine_reason})")
    if plan.manifest.conda_file:
        click.echo(f"environment: {image.environment.kind} builder ({image.environment.reason})")
    for skipped in plan.skipped_secrets:
        click.echo(f"skipped: {shown(skipped)} (looks like a secret; not copied into the bundle)")
    for skipped in plan.skipped_registries:
        click.echo(f"skipped: {shown(skipped)} (a bundler model registry; never copied into a bundle)")
    for skipped in plan.skipped_bundles:
        click.echo(f"skipped: {shown(skipped)} (a saved bundle; never copied into another)")
    for added in plan.added_requirements:
        click.echo(f"added: {added} to the server's requirements (the entry script uses it; Azure ML brings it too)")
    if plan.unprovided_imports:
        names = ", ".join(f"{name} (line {line})" for name, line in plan.unprovided_imports)
        click.echo(
            f"note: {image.entry_script} imports {names}, which no requirement seems to provide; "
            "add them to your requirements if the image lacks them"
        )
    if plan.unpinned:
        click.echo(
            f"note: not pinned to one version: {', '.join(plan.unpinned)}; each docker build may "
            "install different versions (pin them with ==, or save with --vendor)"
        )
    if image.environment.vendored:
        click.echo(f"vendored: {result.prepared.wheel_count} wheels (docker build needs no network but the base image)")
    size = _size(result.bytes_written)
    click.echo(f"wrote {result.file_count} files ({size}) to {shown(str(result.path))} in {seconds:.1f} s")
    for _, path in image.base_archives:
        click.echo(f"base image: {path} (docker load --input {_typed(result.path / path)}, before docker build)")
    if packed:
        click.echo(f"archive: {shown(str(packed.path))} ({_size(packed.bytes)})")
        click.echo(f"next: docker build --tag {image.default_tag} - < {_typed(packed.path)}")
    else:
        click.echo(f"next: docker build --tag {image.default_tag} {_typed(result.path)}")


@main.command()
@click.argument("bundle", default=DEFAULT_BUNDLE, type=PathParameter())
@click.option(
    "--against-inputs",
    is_flag=True,
    help="Compare with what save would write from the inputs now (bundle.json is not signed).",
)
@input_options
@json_option
def verify(bundle: Path, against_inputs: bool, flags, home: Path | None, as_json: bool) -> None:
    """Check every file of BUNDLE (default ./imagefiles) or of an archive, unextracted, against its bundle.json."""
    from bundler import api

    report = api.verify(bundle, against=flags if against_inputs else None, home=home)
    reference = "the inputs" if against_inputs else "bundle.json"
    if as_json:
        _print_json({"bundle": str(bundle), "against": reference, **report.to_json()})
    else:
        for label, paths in (("modified", report.modified), ("missing", report.missing), ("extra", report.extra)):
            for path in paths:
                click.echo(f"{label}: {shown(path)}")
    if not report.ok:
        raise report.failure(bundle, reference)
    if not as_json:
        click.echo(f"ok: every file of {shown(str(bundle))} matches {reference}")


@main.command()
@click.argument("bundle", default=DEFAULT_BUNDLE, type=PathParameter())
@click.option(
    "-o",
    "--output",
    "target",
    default="imagefiles.tar.gz",
    show_default=True,
    type=PathParameter(dir_okay=False),
    help="The archive to write: .tar or .tar.gz.",
)
@json_option
def pack(bundle: Path, target: Path, as_json: bool) -> None:
    """Write BUNDLE (default ./imagefiles) as one deterministic archive, every file checked on the way."""
    from bundler import api

    packed = api.pack(bundle, target)
    if as_json:
        _print_json(packed)
        return
    click.echo(f"wrote {packed.files} files to {shown(str(packed.path))} ({_size(packed.bytes)})")
    click.echo(f"next: bundler verify {_typed(packed.path)}, then docker build --tag IMAGE - < {_typed(packed.path)}")


@main.command()
@click.argument("bundle", default=DEFAULT_BUNDLE, type=PathParameter())
@input_options
def diff(bundle: Path, flags, home: Path | None) -> None:
    """Show what `save` with the current inputs would change in BUNDLE (default ./imagefiles); writes nothing."""
    from pathlib import Path

    from bundler import api
    from bundler import diff as diff_module

    lines = diff_module.run(flags, api.registry(home).home, Path.cwd(), bundle)
    for line in lines:
        click.echo(one_line(line))
    if lines:
        click.echo(f"save would change {bundle} as shown above")
    else:
        click.echo(f"no changes: save would write {bundle} exactly as it is")


@main.command()
@click.argument("bundle", default=DEFAULT_BUNDLE, type=PathParameter())
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: the bundle's).")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes (default: the bundle's).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 serves every interface, as the container does.",
)
def serve(bundle: Path, port: int | None, workers: int | None, host: str) -> None:
    """Run the scoring server of BUNDLE (default ./imagefiles) here, without Docker, as the container would."""
    from bundler.serve import serve as serve_bundle

    serve_bundle(bundle, port, workers, host)


@main.command()
@click.argument("bundle", default=DEFAULT_BUNDLE, type=PathParameter())
@click.option("-t", "--tag", help="Image name (default: the first model's name).")
@click.option("--push", is_flag=True, help="Then push it as `bundler push` does (log in first).")
@json_option
def build(bundle: Path, tag: str | None, push: bool, as_json: bool) -> None:
    """Build the image of BUNDLE (default ./imagefiles) with docker, or podman; prints its name."""
    from bundler import api

    # With --json, stdout holds the document alone: the engine's output goes to stderr.
    built = api.build(bundle, tag, push=push, output=sys.stderr if as_json else None)
    if as_json:
        _print_json(built)
        return
    click.echo(f"built image: {built.image}")
    if built.pushed:
        _echo_pushed(built.pushed, bundle)


@main.command()
@click.argument("bundle", default=DEFAULT_BUNDLE, type=PathParameter())
@click.option("-t", "--tag", help="The local image to push (default: the bundle's image name).")
@click.option("--to", "to", metavar="HOST/NAME:TAG", help="Where to push (default: the bundle's [registry]).")
@json_option
def push(bundle: Path, tag: str | None, to: str | None, as_json: bool) -> None:
    """Push the image built from BUNDLE (default ./imagefiles) to its registry; prints the digest."""
    from bundler import api

    pushed = api.push(bundle, tag, to=to)
    if as_json:
        _print_json(pushed)
    else:
        _echo_pushed(pushed, bundle)


@main.command()
@click.argument("bundle", default=DEFAULT_BUNDLE, type=PathParameter())
def login(bundle: Path) -> None:
    """Log docker (or podman) in to the registries of BUNDLE (default ./imagefiles).

    The password is read from the environment variable the file names and given to the
    engine on its standard input, never on a command line or in a file."""
    from bundler import api

    for address in api.login(bundle):
        click.echo(f"logged in: {address}")


@main.command("deploy-manifest")
@click.argument("bundle", default=DEFAULT_BUNDLE, type=PathParameter())
@click.option("--image", metavar="REF", help="The image the cluster runs, e.g. what push printed (NAME@sha256:...).")
def deploy_manifest(bundle: Path, image: str | None) -> None:
    """Print BUNDLE's (default ./imagefiles) Kubernetes manifest, for kubectl apply -f -."""
    from bundler import api

    click.echo(api.deploy_manifest(bundle, image), nl=False)


def _echo_pushed(pushed, bundle: Path) -> None:
    click.echo(f"pushed: {pushed.reference}")
    click.echo(f"digest: {pushed.digest}")
    click.echo(f"pull it as: {pushed.pinned}")
    if (bundle / "deploy" / "kubernetes.yaml").is_file():
        click.echo(f"deploy it: bundler deploy-manifest {_typed(bundle)} --image {pushed.pinned} | kubectl apply -f -")


def _typed(path: Path) -> str:
    """The path as typed in a suggested command: relative where it can be, quoted for the shell
    (and, holding a line break or another control character, shown with escapes instead)."""
    import shlex
    from pathlib import Path

    try:
        text = str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        text = str(path)
    return shlex.quote(text) if text.isprintable() else shown(text)


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} bytes"
    scaled, unit = next(
        (count / 1000**power, unit) for power, unit in ((3, "GB"), (2, "MB"), (1, "KB")) if count >= 1000**power
    )
    return f"{scaled:.1f} {unit}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
