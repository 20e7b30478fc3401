"""The one redactor: keep secrets out of every sink (terminal, JUnit, report files, service logs, the state
directory, MLflow).

What is a secret, decided once, at recipe load (``recipe.loader``):

- the values of ``${ENV}`` variables whose name looks secret (TOKEN, KEY, PASSWORD, ...);
- literal values of secret-named settings (``password``, ``hf_token``, ``api_key``, ``secret_key``, ...)
  anywhere in ``services`` or ``settings``, and of secret-named ``env`` entries of a service;
- the argument after a secret-looking flag in a service's ``args`` (``--requirepass X``, ``--api-key=X``).

Beyond those values, :meth:`Redactor.text` also masks the password of any ``scheme://user:password@host``
URL and the value after a secret-looking command-line flag, so a credential the recipe did not declare
(a DSN built by a catalog entry) does not leak either.

Why one process-wide instance as well as explicit ones: services write logs and pid records far from the
session object; :func:`register_secrets` (called when the session's recipe loads) makes every sink that
calls :func:`redact_text` / :func:`redact` mask the run's secrets without threading them through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
#: Shorter values are not masked: masking every "a" or "1" in a report would destroy it, and a secret that
#: short protects nothing anyway.
MIN_SECRET_LENGTH = 4

#: Setting and variable names whose values are credentials (over-matching is the safe side, but ``key_size``
#: and ``keyspace`` are sizes and ``access_key`` is an id, not a secret).
SECRET_KEY_NAME = re.compile(
    r"(^|[_\-.])(token|password|passwd|pass|pwd|secret|api[_\-]?key|secret[_\-]?key|private[_\-]?key|"
    r"credentials?|auth)($|[_\-.])|requirepass|masterauth", re.IGNORECASE)
_FLAG = re.compile(r"^--?[A-Za-z0-9_\-.]+$")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<pw>[^@\s/]+)(?P<tail>@)")
_FLAG_VALUE = re.compile(
    r"(?P<flag>--?[A-Za-z0-9_\-.]*(?:token|password|passwd|secret|api[_\-]?key|requirepass|masterauth|auth)"
    r"[A-Za-z0-9_\-.]*)(?P<sep>[= ]+)(?P<value>(?!-)[^\s'\"]+)", re.IGNORECASE)


#: Cheap pre-check before the flag regex (most strings in a report hold no flag at all): the regex can only
#: match where one of these lower-case substrings occurs. Not plain "pass" or "key": every result says
#: "PASS" or "passed", and the regex was then run over every result for nothing (~15 µs each, issue #14).
_FLAG_WORDS = ("token", "passw", "requirepass", "secret", "apikey", "api_key", "api-key", "auth")
_FLAG_HINT = re.compile("(?i)" + "|".join(re.escape(w) for w in _FLAG_WORDS))


def is_secret_key(name: object) -> bool:
    """True when a setting, variable or flag name says its value is a credential."""
    return isinstance(name, str) and SECRET_KEY_NAME.search(name.lstrip("-")) is not None


def secret_args(args: Any) -> set[str]:
    """Values following secret-looking flags in an argv list or string (``--requirepass X``, ``--token=X``)."""
    argv = args.split() if isinstance(args, str) else [str(a) for a in args] if isinstance(args, list) else []
    found: set[str] = set()
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if not _FLAG.match(flag) or not is_secret_key(flag):
            continue
        if eq:
            found.add(value)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            found.add(argv[i + 1])
    return {v for v in found if len(v) >= MIN_SECRET_LENGTH}


def mask_argv(argv: list[str]) -> list[str]:
    """argv as logs, pid records and reports may show it: secret flag values and known secrets masked."""
    values = secret_args(argv)
    return [_PROCESS.text(MASK if a in values else a) for a in argv]


def secrets_in_tree(data: Any) -> set[str]:
    """Literal secrets of a parsed recipe section: secret-named keys' string values, secret flags' values."""
    found: set[str] = set()

    def walk(node: Any, key: object = None) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
            return
        if key == "args" or key == "command":
            found.update(secret_args(node))
        if isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and is_secret_key(key) and len(node) >= MIN_SECRET_LENGTH and "${" not in node:
            found.add(node)

    walk(data)
    return found


class Redactor:
    """Masks known secret values (longest first, so one containing another goes whole), URL passwords and
    values of secret flags. Keys of mappings are redacted as well: a secret can end up in an id or a URL."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = ()
        # Redacted form of strings already seen (default mask only; cleared when the secrets change): every
        # result payload repeats the same keys and words, and the walk over them was ~0.25 ms per test.
        self._seen: dict[str, str] = {}
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        merged = set(self.secrets) | {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        self.secrets = tuple(sorted(merged, key=len, reverse=True))
        self._seen = {}

    def _text_cached(self, value: str) -> str:
        out = self._seen.get(value)
        if out is None:
            out = self.text(value)
            if len(value) <= 200:  # short, repeated strings only; bounded
                if len(self._seen) >= 4096:
                    self._seen = {}
                self._seen[value] = out
        return out

    def text(self, value: str, mask: str = MASK) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, mask)
        if "://" in value and "@" in value:
            value = _URL_PASSWORD.sub(lambda m: m["head"] + mask + m["tail"], value)
        if "-" in value and _FLAG_HINT.search(value):
            value = _FLAG_VALUE.sub(lambda m: m["flag"] + m["sep"] + (mask if m["value"] != mask else m["value"]),
                                    value)
        return value

    def data(self, obj: Any) -> Any:
        """A copy of a JSON-like structure with every string redacted."""
        if isinstance(obj, (int, float)) or obj is None:
            return obj
        if isinstance(obj, str):
            return self._text_cached(obj)
        if isinstance(obj, dict):
            return {self.data(k): self.data(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.data(v) for v in obj]
        return obj

    def may_change_json(self, text: str) -> bool:
        """False when :meth:`data` would change nothing in the structure whose ``json.dumps`` (ASCII, the
        default) is ``text``; True when it might. One scan of the encoded text instead of a walk over every
        node (the controller encodes each result anyway): JSON escapes a string character by character, so
        a secret, URL password or secret flag inside any key or value also shows in the text — in escaped
        form, which is what is looked for."""
        if any(json.dumps(s)[1:-1] in text for s in self.secrets):
            return True
        if "://" in text and "@" in text:
            return True
        if "-" not in text:
            return False
        low = text.lower()  # plain substring tests: the case-blind regex hint costs ~0.1 ms on a result
        return any(w in low for w in _FLAG_WORDS) and _FLAG_VALUE.search(text) is not None

    def found_in(self, data: bytes) -> bool:
        return any(s.encode("utf-8") in data for s in self.secrets)


#: The run's secrets, for sinks far from the session (service logs, pid records, start errors).
_PROCESS = Redactor()


def register_secrets(secrets: Iterable[str]) -> None:
    """Add secrets to the process-wide redactor (the session does this when its recipe loads)."""
    _PROCESS.add(secrets)


def process_redactor() -> Redactor:
    return _PROCESS


def redact_text(text: str) -> str:
    """``text`` with the process-wide secrets, URL passwords and secret flag values masked."""
    return _PROCESS.text(text)


def redact(obj: Any, secrets: Iterable[str] = frozenset()) -> Any:
    """A copy of a JSON-like structure with every occurrence of a secret (``secrets`` plus the registered
    ones) replaced by ``***``."""
    if secrets:
        extra = Redactor(_PROCESS.secrets)
        extra.add(secrets)
        return extra.data(obj)
    return _PROCESS.data(obj)


def redact_encoded(obj: Any, text: str, secrets: Iterable[str] = frozenset()) -> tuple[Any, bool]:
    """``(obj, False)`` when ``text`` (``json.dumps(obj)``) shows nothing to mask, else ``(redacted copy,
    True)``: :func:`redact` for a caller that has the JSON text at hand."""
    redactor = _PROCESS
    if any(s not in _PROCESS.secrets for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH):
        redactor = Redactor(_PROCESS.secrets)
        redactor.add(secrets)
    if not redactor.may_change_json(text):
        return obj, False
    return redactor.data(obj), True


def redact_report(report: Any) -> None:
    """Mask secrets in a pytest report in place: the failure text, captured output, JUnit properties.

    The terminal and the JUnit XML both render from the report, so this covers them.
    """
    longrepr = getattr(report, "longrepr", None)
    if longrepr is not None:
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            report.longrepr = (longrepr[0], longrepr[1], _PROCESS.text(str(longrepr[2])))
        else:
            text = str(longrepr)
            masked = _PROCESS.text(text)
            if masked != text:
                report.longrepr = masked
    sections = getattr(report, "sections", None)
    if sections:
        report.sections = [(title, _PROCESS.text(content)) for title, content in sections]
    props = getattr(report, "user_properties", None)
    if props and _PROCESS.secrets:
        report.user_properties = [(k, _PROCESS.text(v) if isinstance(v, str) else v) for k, v in props]
