"""What looks like a secret, by name and by content: one home for the rules. PURE.

Three kinds, each acted on differently by the walkers and `save`:
- a file NAMED like a credential store (.env, *.pem, .kube/, kubeconfig, ...) is left out
  of a bundle or a registered model folder, and named;
- a file whose CONTENT is a key (a PEM private key, a PuTTY key, a GCP service-account
  JSON) is left out and named the same way, whatever its name;
- a high-confidence secret INSIDE a text file that ships (an entry script, a source file,
  a requirements file: an AWS key pair, a private key block, a GitHub token, an Azure
  storage key or SAS signature) refuses the save with file and line, unless the user allows
  that file ([secrets] allow, --allow-secret).

A table of patterns, not a detector library: the ones we know (detect-secrets and the like)
flag by entropy, which in model code and notebooks is mostly noise.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

# Matched case-insensitively against paths relative to the walked folder (folders end in /),
# so keep these lower-case. The last matching rule wins, so exceptions come first:
# `credentials` is the AWS credentials file, but `credentials/` is often a code package.
# fmt: off
NAME_RULES = (
    "credentials", "!credentials/",
    ".git/",  # its config can hold tokens in remote URLs
    ".env", ".env.*", "*.env", ".envrc",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.ppk", "*.jks", "*.keystore", "*.jceks", "*.kdbx",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".ssh/",
    ".aws/", ".azure/", ".kube/", "kubeconfig", "*.kubeconfig", ".docker/config.json", "**/.docker/config.json",
    ".dockercfg", ".netrc", "_netrc", ".pypirc", ".npmrc", "pip.conf", "pip.ini", ".git-credentials", ".pgpass",
    ".my.cnf", ".s3cfg", ".boto", ".vault-token", ".databrickscfg", ".huggingface/", "kaggle.json",
    ".streamlit/secrets.toml", "secrets.yaml", "secrets.yml", "secrets.json", "secrets.toml", ".htpasswd",
    "*.tfvars", "*.tfstate", "credentials.json", "application_default_credentials.json",
)
# fmt: on

HEAD_BYTES = 4096  # how much of a file the key-file checks read
TEXT_SCAN_LIMIT = 2 << 20  # a file of another kind that ships is scanned up to this size; larger ones are data
# Files that are text whatever their size (a notebook holds megabytes of output): scanned whole.
TEXT_SUFFIXES = (
    ".py",
    ".ipynb",
    ".txt",
    ".json",
    ".yaml",
    ".yml",
    ".toml",
    ".cfg",
    ".ini",
    ".conf",
    ".sh",
    ".md",
    ".r",
    ".sql",
    ".jinja",
    ".j2",
    ".env",
    ".properties",
    ".xml",
    ".csv",
    ".js",
    ".ts",
)
# Google credentials files: whichever type, a JSON with one of these keys holds a secret.
_GOOGLE_CREDENTIAL_TYPES = {"service_account", "authorized_user", "external_account"}
_GOOGLE_SECRET_KEYS = ("private_key", "refresh_token", "client_secret")
SERVICE_ACCOUNT_LIMIT = 1 << 20  # a service-account JSON is a few KB; larger JSON is data

_KEY_FILE_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|PuTTY-User-Key-File-\d+:)"
)

# (what it is, pattern) for secrets inside text files; each must be near-certain.
_TEXT_PATTERNS = (
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20}\b")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z]{34,}\b")),
    ("an OpenAI API key", re.compile(r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{32,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[0-9]+-[0-9A-Za-z-]{10,}")),
    ("an Azure storage account key", re.compile(r"AccountKey=(?!\$\{)[A-Za-z0-9+/]{40,}={0,2}", re.IGNORECASE)),
    ("an Azure SAS signature", re.compile(r"[?&]sv=\d{4}-\d{2}-\d{2}&\S*?\bsig=(?!\$\{)[A-Za-z0-9%+/=]{16,}")),
)
# A private key block: its marker, then key material (in the same line, as an escaped string
# holds it, or in the next ones); the marker alone is documentation.
_KEY_BLOCK = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_KEY_MATERIAL = re.compile(r"[A-Za-z0-9+/=]{40,}")
# A password written into a URL (`postgresql://ml:Pa55word@db`), unless it is a placeholder.
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:'\"]+:(?P<password>[^/@\s'\"]+)@")
_PLACEHOLDER = re.compile(
    r"\*+|x+|\.\.\.|<[^>]*>|\{[^}]*\}|\$\{?\w+\}?|%\(?\w*\)?s|password|passwd|pass|pwd|secret|changeme|"
    r"example|user|username|token|your[_-]?\w*",
    re.IGNORECASE,
)
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
AWS_NEARBY_LINES = 5  # a key id counts only with a secret this close: alone, it is an account name


@functools.lru_cache(maxsize=1)
def _name_spec():
    import pathspec  # lazy: only commands that look at files need it

    spec = pathspec.GitIgnoreSpec.from_lines(NAME_RULES)
    # pathspec tries the rules one by one (54 regex searches per file, half of a model
    # folder's walk); almost no file matches any, and when none that marks a secret matches,
    # no order of rules can make it one. So one search of them all first, the rules after.
    marking = [_unnamed_groups(p.regex.pattern) for p in spec.patterns if p.include and p.regex is not None]
    return spec, re.compile("|".join(f"(?:{pattern})" for pattern in marking))


def _unnamed_groups(pattern: str) -> str:
    """The same regex without group names: the rules share names, which one regex cannot."""
    return re.sub(r"\(\?P<\w+>", "(?:", pattern)


def is_secret_name(rel: str) -> bool:
    """Whether a POSIX path relative to a walked folder (folders end in /) is named like a secret."""
    spec, any_marking_rule = _name_spec()
    rel = rel.lower()
    return any_marking_rule.search(rel) is not None and spec.match_file(rel)


def is_allowed(path: Path, allowed: frozenset[Path]) -> bool:
    """Whether the user allowed this file, or a folder holding it ([secrets] allow, --allow-secret)."""
    if not allowed:
        return False
    path = Path(os.path.abspath(path))
    return path in allowed or any(parent in allowed for parent in path.parents)


def is_key_content(head: bytes, name: str, read_all) -> bool:
    """Whether a file's first bytes (`head`) show a key, whatever its name. `read_all()` is
    called only for small JSON files, to recognise a GCP service-account key."""
    if _KEY_FILE_START.match(head):
        return True
    if name.lower().endswith(".json") and any(f'"{kind}"'.encode() in head for kind in _GOOGLE_CREDENTIAL_TYPES):
        data = read_all()
        try:
            document = json.loads(data) if data is not None else None
        except (ValueError, RecursionError):
            return False
        return (
            isinstance(document, dict)
            and document.get("type") in _GOOGLE_CREDENTIAL_TYPES
            and any(key in document for key in _GOOGLE_SECRET_KEYS)
        )
    return False


def find_in_text(text: str) -> tuple[int, str] | None:
    """(line, what) of the first high-confidence secret in a text, or None."""
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines, start=1):
        for what, pattern in _TEXT_PATTERNS:
            if pattern.search(line):
                found.append((number, what))
                break
        block = _KEY_BLOCK.search(line)
        if block and any(_KEY_MATERIAL.search(text) for text in [line[block.end() :], *lines[number : number + 3]]):
            found.append((number, "a private key block"))
        password = _URL_PASSWORD.search(line)
        if password and not _PLACEHOLDER.fullmatch(password["password"]):
            found.append((number, "a password in a URL"))
        if _AWS_KEY_ID.search(line):
            nearby = lines[max(0, number - 1 - AWS_NEARBY_LINES) : number + AWS_NEARBY_LINES]
            if any(_AWS_SECRET.search(_AWS_KEY_ID.sub("", other)) for other in nearby):
                found.append((number, "an AWS access key with its secret"))
    return min(found) if found else None
