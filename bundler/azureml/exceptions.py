"""The SDK's exception names, as bundler errors: the CLI prints them as one line, and code
that caught the SDK's exceptions catches these."""

from __future__ import annotations

from bundler.errors import BundlerError, InputError


class UserErrorException(InputError):
    """A call that cannot work as asked (the SDK's name)."""


class WebserviceException(BundlerError):
    """A local web service failed to start, answer or stop (the SDK's name)."""


class NotSupportedError(UserErrorException):
    """An SDK name that needs Azure's cloud, or that bundler does not offer."""


def refuse(name: str, instead: str) -> NotSupportedError:
    return NotSupportedError(f"{name} is not supported by bundler.azureml: {instead}")


class Refusing(type):
    """A metaclass: SDK names listed in a class's REFUSED (name -> what to do instead) raise
    NotSupportedError when used, on the class (Model.profile) or an instance (ws.datastores);
    any other unknown name is a plain AttributeError."""

    REFUSED: dict[str, str] = {}

    def __getattr__(cls, name: str):
        if name in cls.REFUSED:
            raise refuse(f"{cls.__name__}.{name}", cls.REFUSED[name])
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")


class RefusingObject(metaclass=Refusing):
    REFUSED: dict[str, str] = {}

    def __getattr__(self, name: str):
        if name in type(self).REFUSED:
            raise refuse(f"{type(self).__name__}.{name}", type(self).REFUSED[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


CLOUD = "it needs Azure ML's cloud"
