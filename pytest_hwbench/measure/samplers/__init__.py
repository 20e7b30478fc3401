"""Resource sampling during the measured window of each trial (host, services, containers, GPUs, the load
generator), feeding resource metrics and the bottleneck attribution (``verdict.bottleneck``).

Modules: ``base`` (source protocol, timeline), ``host``, ``proc`` (process trees, per-thread CPU demand),
``container`` (cgroup files), ``nvml`` (GPUs), ``monitor`` (the sampling thread and the per-test monitor),
``metrics`` (metric definitions, summaries, what goes into results and raw samples).
"""

from pytest_hwbench.measure.samplers.base import Timeline
from pytest_hwbench.measure.samplers.metrics import RESOURCE_METRICS, is_resource_metric
from pytest_hwbench.measure.samplers.monitor import ResourceMonitor, Target

__all__ = ["RESOURCE_METRICS", "ResourceMonitor", "Target", "Timeline", "is_resource_metric"]
