"""Credentials in URLs, found and masked, for every file that ships as it is. PURE.

A URL carries a credential when its user info holds one (`https://me:secret@host`, a token
as the user name: `https://TOKEN:@host`, or `https://TOKEN@host` for a name that looks like
a token) or when a query or fragment parameter is named like a token or a signature
(`?access_token=`, `?sig=` of an Azure SAS, `X-Amz-Signature` of a signed S3 URL). A value
written as `${VARIABLE}`, which pip expands at build time, is not a credential. Over ssh, a
user name alone (`git@github.com`) is an account, not a secret; so is a short one over
HTTPS (`https://myorg@dev.azure.com/...`, Azure DevOps' own clone URL).

What is found is shown masked whole: the message must not repeat any part of a secret.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:(?P<userinfo>[^/@\s?#]*)@)?(?P<rest>[^\s]*)")
_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z0-9_]+\}")
# Query parameters that always carry a secret, whatever their value looks like.
# fmt: off
_SECRET_PARAMETERS = {
    "sig", "signature", "password", "passwd", "pwd", "secret", "apikey", "api_key", "api-key", "access_token",
    "token", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
    "x-goog-credential",
}
# fmt: on
_SECRET_WORDS = ("token", "secret", "password", "signature", "apikey", "api_key")
# Names that carry a secret only when the value looks like one (`?code=release` does not).
_MAYBE_SECRET_PARAMETERS = {"key", "code", "auth", "authorization", "credential"}
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "hf_", "xox", "sk-")


def find(text: str) -> str | None:
    """The first credential in a URL of text, masked (e.g. "****:****@", "sig=****"), or None."""
    for match in _URL.finditer(text):
        found = _in_userinfo(match["scheme"].lower(), match["userinfo"]) or _in_parameters(match["rest"])
        if found:
            return found
    return None


def looks_like_a_token(value: str) -> bool:
    """A known token prefix, or a long run of letters and digits that is no word."""
    if value.startswith(_TOKEN_PREFIXES):
        return True
    return len(value) >= 16 and bool(re.search(r"[0-9]", value)) and bool(re.search(r"[A-Za-z]", value))


def _literal(value: str) -> bool:
    """Whether a value holds something other than ${VARIABLE} references."""
    return bool(_ENV_REFERENCE.sub("", value))


def _in_userinfo(scheme: str, userinfo: str | None) -> str | None:
    if not userinfo:
        return None
    user, colon, password = userinfo.partition(":")
    if password:
        return "****:****@" if _literal(password) else None
    if not scheme.endswith(("http", "https")) or not _literal(user):
        return None
    # Over HTTP(S) a token travels as the user name: `TOKEN:@` says so; a bare name must look like one.
    return "****@" if colon or looks_like_a_token(user) else None


def _in_parameters(rest: str) -> str | None:
    for part in re.split(r"[?#]", rest)[1:]:  # the query and the fragment, whichever there are
        for name, value in parse_qsl(part.replace(";", "&"), keep_blank_values=True):
            lowered = name.lower()
            if not value or not _literal(value):
                continue
            if lowered in _SECRET_PARAMETERS or any(word in lowered for word in _SECRET_WORDS):
                return f"{name}=****"
            if lowered in _MAYBE_SECRET_PARAMETERS and looks_like_a_token(value):
                return f"{name}=****"
    return None
