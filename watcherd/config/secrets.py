"""Secrets: where they come from and how they are read; values are never printed.

Lookup order: `$CREDENTIALS_DIRECTORY/<credential>` (systemd `LoadCredential=`), then
a file (refused when group or world readable, or not a regular file), then an
environment variable. `redact_url` masks the credentials a URL may carry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from watcherd.errors import ConfigError
from watcherd.textfile import present, read_regular, refuse_irregular

_SECRET_MAX_BYTES: Final = 1 << 20
#: What a masked credential looks like in printed URLs.
MASK: Final = "***"
#: Query or fragment parameter names whose values are taken for secrets.
_SECRET_PARAM = re.compile(r"token|key|secret|pass|pwd|sig|auth|cred|session", re.IGNORECASE)
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_PARAM = re.compile(r"([?&#;])([^=&#;]*)=([^&#;]*)")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret comes from; the value is read only when needed, never printed.

    Lookup order: `$CREDENTIALS_DIRECTORY/<credential>`, then `file`, then `env`.
    """

    credential: str | None = None
    file: Path | None = None
    env: str | None = None

    def describe(self, environ: Mapping[str, str] | None = None) -> str:
        """A redacted description for `check-config`, e.g. `env TOGETHER_API_KEY (set)`."""
        env = os.environ if environ is None else environ
        parts = []
        if self.credential is not None:
            found = present(_credential_path(self.credential, env))
            parts.append(f"credential {self.credential} ({'set' if found else 'missing'})")
        if self.file is not None:
            parts.append(f"file {self.file} ({'set' if present(self.file) else 'missing'})")
        if self.env is not None:
            parts.append(f"env {self.env} ({'set' if env.get(self.env) else 'missing'})")
        return ", ".join(parts) or "none"

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        """Read the secret; raises ConfigError if missing, empty or group/world readable.

        The first source present wins; a present but unusable one is an error, not
        skipped. Errors name the source, never the value.
        """
        env = os.environ if environ is None else environ
        if self.credential is not None:
            path = _credential_path(self.credential, env)
            if path is not None and present(path):
                return _read_secret_file(path, check_mode=False)
        if self.file is not None and present(self.file):
            return _read_secret_file(self.file, check_mode=True)
        if self.env is not None and self.env in env:
            value = env[self.env].rstrip("\r\n")
            if not value.strip():
                raise ConfigError(f"secret environment variable {self.env} is empty")
            return value
        raise ConfigError(f"secret not found; looked in {self.describe(env)}")

    def check(self, environ: Mapping[str, str] | None = None) -> None:
        """At config load: refuse the secret file `resolve` would refuse for its mode or type.

        Only a file that would be read is checked (a present credential shadows it, and
        credentials are never mode-checked); nothing is read, and a missing or
        unreachable file is left for `resolve` to report when the secret is needed.
        """
        env = os.environ if environ is None else environ
        credential = None if self.credential is None else _credential_path(self.credential, env)
        if self.file is None or present(credential):
            return
        try:
            st = os.stat(self.file)
        except OSError:
            return
        _refuse_loose(st, self.file)


def _credential_path(name: str, environ: Mapping[str, str]) -> Path | None:
    """`$CREDENTIALS_DIRECTORY/<name>`, or None outside systemd."""
    folder = environ.get("CREDENTIALS_DIRECTORY")
    return Path(folder) / name if folder else None


def _read_secret_file(path: Path, *, check_mode: bool) -> str:
    """A secret file's text without its trailing newline; refuses loose permissions."""
    try:
        data, st = read_regular(path, limit=_SECRET_MAX_BYTES, what="secret file")
    except OSError as exc:
        raise ConfigError(f"cannot read secret file: {exc.strerror}", path=str(path)) from None
    if check_mode:
        _refuse_loose(st, path)
    try:
        value = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError("secret file is not UTF-8 text", path=str(path)) from None
    if not value.strip():
        raise ConfigError("secret file is empty", path=str(path))
    return value


def _refuse_loose(st: os.stat_result, path: Path) -> None:
    """ConfigError for a secret file that is not regular, or is group or world readable."""
    refuse_irregular(st, path, f"secret file {path}")
    if st.st_mode & 0o044:
        raise ConfigError(
            f"secret file is group or world readable; run: chmod 600 {path}", path=str(path)
        )


def redact_url(url: str) -> str:
    """`url` with its userinfo and the values of secret-looking parameters masked.

    `http://user:pass@host/x?token=t&page=2` becomes `http://***@host/x?token=***&page=2`;
    parameter names holding token, key, secret, pass, pwd, sig, auth, cred or session
    count as secret, in the query and in the fragment. A secret in the path (as in some
    webhook URLs) cannot be told apart and stays.
    """
    return _PARAM.sub(_mask_param, _USERINFO.sub(rf"\1{MASK}@", url))


def _mask_param(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    return f"{sep}{name}={MASK if _SECRET_PARAM.search(name) else value}"
