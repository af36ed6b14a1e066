"""The one small hierarchy of errors a user can act on.

The core raises these; only the CLI turns them into a message and an exit code.
Every message says what is wrong, where, and how to fix it, on one line.
"""


class BundlerError(Exception):
    """A failure the user can act on. Exit code 1."""

    exit_code = 1


class InputError(BundlerError):
    """Bad input: a flag, a config file, a model reference, an entry script. Exit code 2."""

    exit_code = 2


class ConfigError(InputError):
    """A problem in bundler.toml or in the flags that override it."""


class RegistryError(BundlerError):
    """The local model registry cannot do what was asked."""


class ModelNotFound(InputError):
    """A model reference names no registered model or version."""


class EntryScriptError(InputError):
    """The entry script is missing or does not define init() and run()."""


class SourceError(InputError):
    """A source or model file cannot be taken into the bundle safely."""


class OutputError(BundlerError):
    """The destination cannot be written or replaced safely."""
