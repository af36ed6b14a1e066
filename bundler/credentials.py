"""Credentials in URLs, found and masked, for every file that ships as it is (requirements
today). PURE.

A URL carries a credential when its user info holds one (`https://me:secret@host`, a token
as the user name `https://TOKEN@host` or `https://TOKEN:@host`) or when a query parameter
is named like a token or a signature (`?access_token=`, `?sig=` of an Azure SAS,
`X-Amz-Signature` of a signed S3 URL). A value written as `${VARIABLE}`, which pip expands
at build time, is not a credential. Over ssh, a user name alone (`git@github.com`) is an
account, not a secret.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:(?P<userinfo>[^/@\s?#]*)@)?(?P<rest>[^\s#]*)")
_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z0-9_]+\}")
# Query parameters that carry a secret: exact names, then words a name may contain.
_SECRET_PARAMETERS = {
    "sig",
    "signature",
    "key",
    "code",
    "auth",
    "authorization",
    "password",
    "passwd",
    "pwd",
    "secret",
    "apikey",
    "api_key",
    "api-key",
    "access_token",
    "token",
    "credential",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
}
_SECRET_WORDS = ("token", "secret", "password", "signature", "credential", "apikey", "api_key")


def find(text: str) -> str | None:
    """The first credential in a URL of text, masked (e.g. "me:****@", "sig=****"), or None."""
    for match in _URL.finditer(text):
        found = _in_userinfo(match["scheme"].lower(), match["userinfo"]) or _in_query(match["rest"])
        if found:
            return found
    return None


def _literal(value: str) -> bool:
    """Whether a value holds something other than ${VARIABLE} references."""
    return bool(_ENV_REFERENCE.sub("", value))


def _in_userinfo(scheme: str, userinfo: str | None) -> str | None:
    if not userinfo:
        return None
    user, colon, password = userinfo.partition(":")
    if password:
        return f"{user}:****@" if _literal(password) else None
    # No password (or an empty one): over HTTP(S) the user name is how a token travels.
    if scheme.endswith("http") or scheme.endswith("https"):
        return "****@" if _literal(user) else None
    return None


def _in_query(rest: str) -> str | None:
    _, question, query = rest.partition("?")
    if not question:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        lowered = name.lower()
        secret_name = lowered in _SECRET_PARAMETERS or any(word in lowered for word in _SECRET_WORDS)
        if secret_name and value and _literal(value):
            return f"{name}=****"
    return None
