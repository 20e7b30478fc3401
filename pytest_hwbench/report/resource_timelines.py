"""The "Resources" block of each test in ``report.md`` / ``report.html``: the sampled timelines.

Why a timeline and not a distribution: a resource reading is a level over time (a thread pinned at 100 %, RSS
climbing, a disk that saturates halfway through), and the bottleneck attribution above it in the report is
read off exactly these curves. Panels: CPU (host, the service, the busiest service and load-generator
threads), memory (service RSS, container), disk, GPU — each only when sampled. Trials are drawn one after
another (``resource.t_s`` counts from the test's first tick) with a dotted line between them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np

from pytest_hwbench.report.document import ExtraSection, register_test_section
from pytest_hwbench.report.plots import Plot

#: (panel title, unit, series) — the figures the bottleneck rules read.
PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("CPU", "%", ("host_cpu_util", "service_cpu_util", "service_hot_thread_pct", "loadgen_hot_thread_pct")),
    ("memory", "MB", ("service_rss_mb", "container_mem_mb")),
    ("disk", "%", ("disk_busy_pct",)),
    ("GPU", "%", ("gpu_util", "gpu_mem_util")),
)


@register_test_section
def resource_timelines(run: Any, t: Any) -> list[ExtraSection]:
    if int((t.result.resources or {}).get("ticks") or 0) < 2:  # nothing to draw: the samples are not read
        return []
    samples = run.samples(t.test_id)
    t_s = samples.get("resource.t_s")
    if t_s is None or t_s.size < 2:
        return []
    trial = samples.get("resource.trial")
    panels = [(title, unit, [s for s in series if _has(samples.get(f"resource.{s}"))])
              for title, unit, series in PANELS]
    panels = [p for p in panels if p[2]]
    if not panels:
        return []
    key = "res-" + hashlib.sha1(t.test_id.encode()).hexdigest()[:12]

    def draw() -> object:
        import matplotlib.pyplot as plt
        import numpy as np

        fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(7.5, 1.7 * len(panels) + 0.6),
                                 squeeze=False)
        for ax, (title, unit, series) in zip(axes[:, 0], panels, strict=True):
            for s in series:
                ax.plot(t_s, samples[f"resource.{s}"], label=s, linewidth=1.2)
            if trial is not None:
                for x in t_s[1:][np.diff(trial) != 0]:
                    ax.axvline(x, linestyle=":", linewidth=0.8, color="grey")
            ax.set_ylabel(f"{title} ({unit})")
            ax.legend(fontsize=7, loc="upper left", frameon=False)
        axes[-1, 0].set_xlabel("seconds since the first measured tick (dotted: next trial)")
        fig.suptitle(t.name, fontsize=9)
        fig.tight_layout()
        return fig

    caption = f"resource timelines of {t.name} ({t_s.size} ticks)"
    return [ExtraSection(title="Resources", plots=[Plot(key, caption, draw)])]


def _has(values: np.ndarray | None) -> bool:
    import numpy as np
    return values is not None and bool(np.isfinite(values).any())
