"""Keep secrets out of every report: values that came from secret-looking ``${ENV}`` variables are masked.

Applied to anything written under ``reports/``, sent to MLflow or put into JUnit properties.
"""

from __future__ import annotations

from typing import Any

MASK = "***"
#: Shorter values are not masked: masking every "a" or "1" in a report would destroy it, and a secret that
#: short protects nothing anyway.
MIN_SECRET_LENGTH = 4


def redact(obj: Any, secrets: frozenset[str]) -> Any:
    """A copy of a JSON-like structure with every occurrence of a secret value replaced by ``***``.

    Keys are redacted as well as values: a secret can end up in a parameter id or a URL.
    """
    if not secrets:
        return obj
    # Longest first, so a secret that contains another one is masked whole.
    ordered = tuple(sorted((s for s in secrets if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True))
    return _redact(obj, ordered)


def _redact(obj: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(obj, str):
        for s in secrets:
            if s in obj:
                obj = obj.replace(s, MASK)
        return obj
    if isinstance(obj, dict):
        return {_redact(k, secrets): _redact(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_redact(v, secrets) for v in obj]
    return obj
