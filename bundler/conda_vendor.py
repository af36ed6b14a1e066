"""`--vendor` for the conda builder: the conda file's packages, carried in the bundle as a
local channel, so micromamba installs them with --offline.

Solving is py-rattler's (the conda engine behind pixi; an optional dependency:
`pip install 'bundler[conda]'`), for the image's platform and glibc, not this machine's.
Each package is downloaded from the URL the solver chose and checked against the sha256 the
channel published; rattler then indexes the folder (repodata.json per subdir). The pip: list
is vendored as wheels by vendor.py, like any pip step.
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.request
from pathlib import Path

from bundler import conda, layout
from bundler.digest import copy_hashing
from bundler.entries import Copied, FileEntry
from bundler.environment import CONDA_CHANNEL_DIR, FALLBACK_CHANNEL, CondaInstall
from bundler.errors import BundlerError

SUBDIRS = {"linux/amd64": "linux-64", "linux/arm64": "linux-aarch64"}
GLIBC = "2.36"  # Debian bookworm, as vendored wheels assume
# conda's "defaults" is a meta-channel; rattler needs the channels it stands for.
DEFAULTS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
PIP_LIST_NAME = ".bundler-pip-list.txt"


class CondaVendorError(BundlerError):
    pass


def pip_list_file(conda_file: Path) -> Path | None:
    """The conda file's pip: list as a requirements file beside it (its -r lines resolve there), or None."""
    environment = conda.parse(conda_file.read_text(encoding="utf-8-sig"), str(conda_file))
    if not environment.pip:
        return None
    path = conda_file.parent / PIP_LIST_NAME
    path.write_text("".join(f"{line}\n" for line, _ in environment.pip), encoding="utf-8")
    return path


def channel_for(conda_file: Path, install: CondaInstall, platform: str, dest: Path) -> tuple[FileEntry, ...]:
    """Solve the conda file (plus what the install adds) for the image, download every package into `dest`
    as a channel, index it; the channel's files as bundle entries under environment/conda-channel/."""
    try:
        import rattler
        import rattler.index
    except ImportError:
        raise CondaVendorError(
            "vendoring a conda environment needs py-rattler: pip install 'bundler[conda]', or save without --vendor"
        ) from None
    environment = conda.parse(conda_file.read_text(encoding="utf-8-sig"), str(conda_file))
    channels = [url for name, _ in environment.listed_channels for url in (DEFAULTS if name == "defaults" else (name,))]
    subdir = SUBDIRS[platform]
    wanted = [spec.text for spec in environment.dependencies] + list(install.extra_specs)
    try:
        records = asyncio.run(
            rattler.solve(
                channels or [FALLBACK_CHANNEL],
                wanted,
                platforms=[subdir, "noarch"],
                virtual_packages=_image_virtual_packages(rattler, subdir, install.cuda),
                timestamp_policy="allow-missing",
            )
        )
    except Exception as exc:  # noqa: BLE001 - the solver's errors are many kinds; each is one line here
        message = " ".join(str(exc).split())[:400]
        raise CondaVendorError(
            f"{conda_file.name}: the conda environment cannot be solved for {subdir}: "
            f"{message}; fix the conda file, or save without --vendor"
        ) from None
    for record in records:
        _download(record, dest / record.subdir / record.file_name)
    for folder in (subdir, "noarch"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
    asyncio.run(rattler.index.index_fs(dest, write_zst=False, write_shards=False))
    return tuple(
        FileEntry(f"{CONDA_CHANNEL_DIR}/{path.relative_to(dest).as_posix()}", layout.FILE_MODE, Copied(path))
        for path in sorted(dest.rglob("*"))
        if path.is_file()
    )


def _image_virtual_packages(rattler, subdir: str, cuda: str | None) -> list:
    """The system the packages will run on: Linux with the base image's glibc (and CUDA), not this machine."""

    def virtual(name: str, version: str):
        return rattler.GenericVirtualPackage(
            rattler.PackageName(name), rattler.Version(version), rattler.BuildString("0")
        )

    arch = "x86_64" if subdir == "linux-64" else "aarch64"
    system = [virtual("__linux", "6.1"), virtual("__glibc", GLIBC), virtual("__unix", "0"), virtual("__archspec", arch)]
    return system + ([virtual("__cuda", cuda)] if cuda else [])


def _download(record, target: Path) -> None:
    """A package from the URL the solver chose, checked against the channel's sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(str(record.url), timeout=120) as source, open(target, "wb") as out:
            sha, _ = copy_hashing(source, out)
    except OSError as exc:
        raise CondaVendorError(
            f"cannot download {record.url} ({exc}); check the network, or save without --vendor"
        ) from None
    expected = record.sha256.hex() if isinstance(record.sha256, bytes) else record.sha256
    if expected and sha != expected:
        target.unlink()
        raise CondaVendorError(
            f"{record.url}: its sha256 is {sha[:12]}..., the channel says {expected[:12]}...; "
            "the download was damaged or the channel changed: save again"
        )
    if not expected and record.md5:  # an older channel publishes md5 only
        md5 = hashlib.md5(target.read_bytes()).hexdigest()  # the channel's checksum, not a security measure
        want = record.md5.hex() if isinstance(record.md5, bytes) else record.md5
        if md5 != want:
            target.unlink()
            raise CondaVendorError(f"{record.url}: its md5 does not match the channel's; save again")
