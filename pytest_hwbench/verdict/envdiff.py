"""What changed in the environment between a baseline and the current run.

An upgrade gate is about exactly this diff (driver, firmware/BIOS, kernel, image digest, package
versions): a regression verdict without it tells the reader *that* something got slower but not *what*
was changed. So every baseline verdict carries it, as short ``key: old -> new`` lines.

Fingerprints are nested dicts written by ``measure``; they are flattened to dotted keys so that one changed
package version is one line, not a whole re-printed sub-dict. Lists are compared whole (a GPU list or a
kernel command line is one fact). Keys that change on every run (timestamps, run ids, pids) would drown
the real changes and are skipped; the hostname is kept on purpose, since "ran on a different box" is
often the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Leaf key names (the last dotted segment) or full dotted keys that differ on every run by nature, so a
#: difference there says nothing about the machine. ``hostname`` is deliberately NOT in here.
IGNORED: frozenset[str] = frozenset({
    "timestamp", "timestamp_ns", "time", "time_ns", "date", "datetime",
    "started_at", "finished_at", "ended_at", "saved_at", "captured_at", "collected_at", "created_at",
    "run_id", "session_id", "invocation_id", "uuid_run",
    "pid", "ppid",
    "boot_time", "uptime", "uptime_s",
})

#: Longest rendering of one value before it is shortened: a diff line must stay readable in a terminal.
MAX_VALUE_CHARS = 120


class _Absent:
    """Marks a key present on one side only; distinct from a JSON ``null`` value."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(absent)"

    def __bool__(self) -> bool:
        return False


#: The value of a key on the side where the key does not exist.
ABSENT: Any = _Absent()


@dataclass(frozen=True)
class EnvChange:
    """One dotted key whose value differs; ``baseline``/``current`` is ``ABSENT`` when the key is new/gone."""

    key: str
    baseline: Any
    current: Any

    @property
    def kind(self) -> str:
        """``added``, ``removed`` or ``changed``: lets reports group lines without comparing to ABSENT."""
        if self.baseline is ABSENT:
            return "added"
        if self.current is ABSENT:
            return "removed"
        return "changed"

    def __str__(self) -> str:
        return f"{self.key}: {format_value(self.baseline)} -> {format_value(self.current)}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; an absent side is ``None`` and ``kind`` says which side was absent."""
        return {"key": self.key, "kind": self.kind,
                "baseline": None if self.baseline is ABSENT else self.baseline,
                "current": None if self.current is ABSENT else self.current}


def format_value(value: Any) -> str:
    """A value as a human reads it in a diff line: strings unquoted, the rest as compact JSON."""
    if value is ABSENT:
        text = "(absent)"
    elif isinstance(value, str):
        text = value if value else '""'
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return text


def flatten(env: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to ``{"a.b.c": leaf}``. Lists and empty dicts are leaves (compared whole)."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _ignored(key: str, ignore: frozenset[str]) -> bool:
    return key in ignore or key.rsplit(".", 1)[-1] in ignore


def environment_diff(baseline_env: Mapping[str, Any] | None, current_env: Mapping[str, Any] | None, *,
                     ignore: Iterable[str] = IGNORED) -> list[EnvChange]:
    """Every flattened key whose value differs between the two fingerprints, sorted by key.

    ``ignore`` holds leaf names or full dotted keys to skip (default ``IGNORED``). A missing fingerprint
    (old baseline without one) is treated as empty, so every current key shows up as added rather than
    the comparison failing.
    """
    skip = frozenset(ignore)
    old = flatten(baseline_env or {})
    new = flatten(current_env or {})
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if _ignored(key, skip):
            continue
        before = old.get(key, ABSENT)
        after = new.get(key, ABSENT)
        if before is ABSENT or after is ABSENT or not _same(before, after):
            changes.append(EnvChange(key, before, after))
    return changes


def _same(a: Any, b: Any) -> bool:
    """Equality that treats ``1`` and ``1.0`` alike but ``"1"`` and ``1`` as different (JSON round trips
    keep types, so a type change is a real change in what the fingerprint reported)."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def format_env_diff(changes: Iterable[EnvChange], limit: int = 20) -> str:
    """Diff lines for a verdict message; at most ``limit`` lines plus a count of the rest, so a changed
    package list of hundreds of entries cannot bury the failure it explains. ``limit <= 0`` shows all."""
    items = list(changes)
    if not items:
        return "environment unchanged"
    noun = "change" if len(items) == 1 else "changes"
    lines = [f"environment diff vs baseline ({len(items)} {noun}):"]
    shown = items if limit <= 0 or len(items) <= limit else items[:limit]
    lines += [f"  {change}" for change in shown]
    if len(shown) < len(items):
        lines.append(f"  ... and {len(items) - len(shown)} more")
    return "\n".join(lines)
