"""``${ENV}`` interpolation of recipe values.

Applied to string scalars *after* YAML parsing, never to the text: an environment value containing
``: `` or a newline therefore cannot change the recipe's structure, and mapping keys (structure) are left
alone. Results are always strings; the schema coerces numeric strings where it wants a number, so
``repetitions: ${REPS:-3}`` works while ``label: ${BUILD}`` stays the string ``"007"``.

Syntax: ``${VAR}``, ``${VAR:-default}`` (default when VAR is unset *or empty*, like the shell), and
``$${`` for a literal ``${``. Anything else starting with ``${`` is an error rather than silently kept,
because a typo such as ``${VAR:default}`` would otherwise reach a server as a literal string.

Values of variables whose name looks secret (TOKEN, KEY, PASSWORD, ...) are collected so the report layer
can mask them; the recipe's original text, which keeps the ``${...}`` references, is safe to embed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.schema import INVALID, Issue, join

SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)

# Alternatives in priority order: the escape, a complete reference, an unterminated ``${``.
_TOKEN = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_SYNTAX_FIX = "write ${NAME} or ${NAME:-default}, or $${ for a literal ${"


def is_secret_name(name: str) -> bool:
    """True when a variable's name suggests its value is a credential (over-matching is the safe side)."""
    return SECRET_NAME.search(name) is not None


@dataclass
class Expansion:
    """One string after interpolation: its value, the variables read from the environment, the problems."""

    value: str
    used: dict[str, str] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (problem, fix)


def expand(text: str, env: Mapping[str, str]) -> Expansion:
    """Interpolate one string, collecting every problem instead of stopping at the first."""
    if "$" not in text:  # fast path, and the identity the property test pins down
        return Expansion(text)
    result = Expansion(text)

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        body = match.group("body")
        if body is None:
            result.problems.append(("unterminated '${' (no closing '}')", _SYNTAX_FIX))
            return token
        ref = _BODY.fullmatch(body)
        if ref is None:
            result.problems.append((f"malformed reference '{token}'", _SYNTAX_FIX))
            return token
        name, default = ref.group("name"), ref.group("default")
        if default is not None and "${" in default:
            result.problems.append((f"nested reference in the default of '{token}}}' is not supported",
                                    "use a plain default value"))
            return token
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            result.problems.append((f"environment variable {name} is not set",
                                    f"set {name} or write ${{{name}:-default}}"))
            return token
        result.used[name] = value
        return value

    result.value = _TOKEN.sub(replace, text)
    return result


def interpolate(text: str, env: Mapping[str, str] | None = None) -> str:
    """Interpolate one string against ``env`` (default: ``os.environ``); raise on the first problem."""
    expansion = expand(text, os.environ if env is None else env)
    if expansion.problems:
        problem, fix = expansion.problems[0]
        raise HwbenchInputError(problem, fix=fix)
    return expansion.value


def escape(text: str) -> str:
    """The recipe spelling of a literal string: every ``${`` becomes ``$${``."""
    return text.replace("${", "$${")


@dataclass
class TreeResult:
    data: Any
    secrets: set[str] = field(default_factory=set)
    issues: list[Issue] = field(default_factory=list)


def interpolate_tree(data: Any, env: Mapping[str, str] | None = None) -> TreeResult:
    """Interpolate every string scalar in a parsed YAML tree (keys untouched).

    A string that cannot be interpolated becomes ``INVALID`` so the schema does not report it again;
    its problems are in ``issues`` with the field path. ``secrets`` holds the non-empty environment values
    of secret-looking variables (an empty value must never be "redacted": it would match everywhere).
    """
    environ = os.environ if env is None else env
    out = TreeResult(None)

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, str):
            expansion = expand(node, environ)
            for name, value in expansion.used.items():
                if value and is_secret_name(name):
                    out.secrets.add(value)
            if expansion.problems:
                out.issues.extend(Issue(path or None, p, f) for p, f in expansion.problems)
                return INVALID
            return expansion.value
        if isinstance(node, dict):
            return {k: walk(v, join(path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    out.data = walk(data, "")
    return out
