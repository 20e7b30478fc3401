"""Run conditions: what differs between the stored sessions and this run, in words the verdict prints."""

from __future__ import annotations

from pytest_hwbench.measure.fingerprint import LoadMeter, conditions_differ, run_conditions

QUIET = {"xdist_workers": 1, "blas_threads": "default", "cpu_governor": "performance", "load_at_start": 0.1,
         "load_other": 0.1}


def test_alike_conditions_say_nothing() -> None:
    assert conditions_differ([QUIET, {**QUIET, "load_at_start": 0.3}], {**QUIET, "load_at_start": 0.4}) == []
    assert conditions_differ([], QUIET) == []


def test_worker_count_threads_and_governor_are_named() -> None:
    now = {**QUIET, "xdist_workers": 2, "blas_threads": {"OMP_NUM_THREADS": "1"}, "cpu_governor": "powersave"}
    lines = conditions_differ([QUIET], now)
    assert any(line.startswith("xdist workers 1 at baseline, 2 now") for line in lines)
    assert any("BLAS threads" in line for line in lines) and any("CPU governor" in line for line in lines)


def test_load_outside_the_stored_range_and_a_contended_machine() -> None:
    lines = conditions_differ([QUIET], {**QUIET, "load_at_start": 0.9})
    assert lines == ["machine load at test start: 10% of all CPUs at baseline, 90% now"]
    busy = conditions_differ([QUIET], {**QUIET, "load_other": 0.7})
    assert any("contended: other processes used 70% of all CPUs" in line for line in busy)
    assert any("baseline was measured on a contended machine" in line
               for line in conditions_differ([{**QUIET, "load_other": 0.8}], {**QUIET, "load_other": 0.45}))


def test_run_conditions_and_load_meter_measure_this_machine() -> None:
    cond = run_conditions(load_window_s=0.05)
    assert cond["xdist_workers"] >= 1 and 0.0 <= (cond["load_at_start"] or 0.0) <= 1.0
    meter = LoadMeter()
    sum(i * i for i in range(200_000))  # our own work is not "other"
    value = meter.external_fraction()
    assert value is None or 0.0 <= value <= 1.0


def test_the_contention_threshold_is_the_recipes_baseline_contended_cpu_share() -> None:
    """``baseline.contended_cpu_share`` (declared once, default 0.6) is the share the verdict demotes at;
    null or 1 never demotes; ``${ENV}`` text is coerced; out-of-range values are rejected with the field."""
    import pytest

    from pytest_hwbench.errors import HwbenchInputError
    from pytest_hwbench.measure.fingerprint import CONTENDED
    from pytest_hwbench.recipe.loader import load_recipe_text

    def share(text: str, env: dict[str, str] | None = None) -> float | None:
        return load_recipe_text(f"version: 1\nbaseline:\n  contended_cpu_share: {text}\n", "r.yaml",
                                env=env or {}).baseline.contended_cpu_share

    assert load_recipe_text("version: 1\n", "r.yaml", env={}).baseline.contended_cpu_share == CONTENDED == 0.6
    busy = {**QUIET, "load_other": 0.7}
    contended = [line for line in conditions_differ([QUIET], busy, contended=share("0.9")) if "contended" in line]
    assert contended == []
    assert any("contended" in line for line in conditions_differ([QUIET], busy, contended=share("${S:-0.5}")))
    for never in ("null", "1", "${UNSET:-}"):
        lines = conditions_differ([{**QUIET, "load_other": 1.0}], {**QUIET, "load_other": 1.0},
                                  contended=share(never))
        assert not any("contended" in line for line in lines), never
    for bad in ("0", "1.5", "lots"):
        with pytest.raises(HwbenchInputError, match=r"baseline\.contended_cpu_share: .* is not a number > 0 and "
                                                    r"<= 1 or null"):
            share(bad)
