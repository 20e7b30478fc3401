"""``generic``: any binary or image not in the catalog; the recipe gives the command and the health check.

Why: a team benchmarking an in-house server should not have to write a kind file first. Command-line
placeholders ``{port}``, ``{host}`` and ``{work_dir}`` are filled in; ``container_port`` says where the
server listens inside a container.
"""

from __future__ import annotations

from typing import ClassVar

from pytest_hwbench.services.base import StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import Probe, TcpProbe


@register
class Generic(ServiceKind):
    name = "generic"
    summary = "any server: give binary/image, args with {host} {port} {work_dir}, and health"
    port = 8000
    startup_timeout = 60.0
    required: ClassVar[dict[str, tuple[str, ...]]] = {"process": ("binary",), "docker": ("image",)}

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return []

    def probe(self, ctx: StartContext) -> Probe:
        return TcpProbe()
