"""Bounded loading of user files (recipes, baselines): hostile input gets a clear error, never a hang.

Why a module of its own: a recipe or a baseline file comes from a repository anybody can send a pull
request to, and CI runs it. PyYAML's safe loader is safe against code execution, not against size: a
392-byte "billion laughs" alias bomb expands to gigabytes, a recursive alias builds a cyclic structure that
every later walk recurses into, deep nesting ends in ``RecursionError`` and ``--recipe /dev/zero`` reads
until memory runs out. Here each of those is bounded and becomes an :class:`HwbenchInputError` naming the
file, what limit was hit and the fix.

Limits (generous for any real recipe or baseline history):

- ``MAX_YAML_BYTES``/``MAX_JSON_BYTES``: read at most this much (a device file never ends);
- ``MAX_NODES``: nodes of the document *with aliases expanded*, which is what later stages walk;
- ``MAX_DEPTH``: nesting depth (a recipe is 4-5 levels deep; baselines 6-7).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import yaml

from pytest_hwbench.errors import HwbenchInputError

MAX_YAML_BYTES = 1 << 20
MAX_JSON_BYTES = 256 << 20
MAX_NODES = 100_000
MAX_DEPTH = 64


def read_bounded(path: str | os.PathLike[str], limit: int, *, what: str, fix: str) -> bytes:
    """At most ``limit`` bytes of ``path``; a longer file (or an endless device) is an error."""
    source = os.fspath(path)
    with open(source, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise HwbenchInputError(f"{what} is larger than {limit // (1 << 20)} MiB (or never ends)", file=source,
                                fix=fix)
    return data


def check_yaml_graph(node: yaml.Node, source: str) -> None:
    """Walk a composed YAML node graph as construction will see it (aliases expanded), bounded.

    Raises on a cycle (a recursive alias such as ``&a [*a]``), on more than ``MAX_NODES`` expanded nodes
    (an alias bomb) and on nesting deeper than ``MAX_DEPTH``. Iterative, so deep input cannot overflow
    the Python stack here.
    """
    count = 0
    # (node, depth, leaving) — ``leaving`` pops the node off the current path, for cycle detection.
    stack: list[tuple[yaml.Node, int, bool]] = [(node, 1, False)]
    on_path: set[int] = set()
    while stack:
        current, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(current))
            continue
        count += 1
        if count > MAX_NODES:
            raise HwbenchInputError(
                f"the document expands to more than {MAX_NODES} values (an alias bomb: anchors referring "
                "to anchors)", file=source, fix="write the values out, or use fewer nested aliases (*name)")
        if depth > MAX_DEPTH:
            raise HwbenchInputError(f"nesting deeper than {MAX_DEPTH} levels", file=source,
                                    fix="flatten the document; a recipe is a few levels deep")
        if isinstance(current, yaml.ScalarNode):
            continue
        if id(current) in on_path:
            raise HwbenchInputError("a recursive alias: an anchor (&name) is used inside itself (*name)",
                                    file=source, fix="remove the *alias that refers to its own anchor")
        on_path.add(id(current))
        stack.append((current, depth, True))
        children: list[yaml.Node] = []
        if isinstance(current, yaml.SequenceNode):
            children = list(current.value)
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                children += [key, value]
        stack.extend((child, depth + 1, False) for child in reversed(children))


def compose_bounded(text: str, loader_cls: type[yaml.SafeLoader], source: str) -> Any:
    """Parse ``text`` with ``loader_cls`` (a SafeLoader subclass), checking the node graph before any
    Python object is built. YAML syntax errors propagate as ``yaml.YAMLError`` for the caller to word."""
    loader = loader_cls(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise HwbenchInputError(f"nesting deeper than {MAX_DEPTH} levels", file=source,
                                    fix="flatten the document; a recipe is a few levels deep") from None
        if node is None:
            return None
        check_yaml_graph(node, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _reject_constant(name: str) -> float:
    raise ValueError(name)


def loads_json_bounded(text: str, *, file: str, fix: str) -> Any:
    """``json.loads`` that rejects NaN/Infinity (not JSON; a corrupt measurement) and too-deep nesting
    with an :class:`HwbenchInputError`; malformed JSON still raises ``json.JSONDecodeError``."""
    if len(text) > MAX_JSON_BYTES:
        raise HwbenchInputError(f"larger than {MAX_JSON_BYTES // (1 << 20)} MiB", file=file, fix=fix)
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise HwbenchInputError(f"nesting deeper than {MAX_DEPTH} levels", file=file, fix=fix) from None
    except ValueError as err:
        if isinstance(err, json.JSONDecodeError):
            raise
        raise HwbenchInputError(f"holds {err} (not a number; NaN/Infinity are not valid JSON)", file=file,
                                fix=fix) from None
    if _depth_exceeds(data, MAX_DEPTH):
        raise HwbenchInputError(f"nesting deeper than {MAX_DEPTH} levels", file=file, fix=fix)
    return data


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return False


def finite(value: Any) -> bool:
    """True for an int or a finite float (not bool): what a measurement value must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["MAX_DEPTH", "MAX_NODES", "check_yaml_graph", "compose_bounded", "finite", "loads_json_bounded",
           "read_bounded"]

