"""The hardware tools' parsers against recorded real outputs (tests/data/hardware/, see its README): normal
runs, error outputs and other versions' layouts. The figures must equal what the tool printed."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from pytest_hwbench.workloads.hardware import fio, llama_bench, sevenzip, stream
from pytest_hwbench.workloads.hardware.runner import ToolFailed

DATA = Path(__file__).parent / "data" / "hardware"


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- 7-Zip

def test_7zip_ratings_are_the_avr_and_tot_rows() -> None:
    res = sevenzip.parse_sevenzip(read("7zz-26.02-b-md16-mmt1.txt"))
    assert res.version == "7-Zip (z) 26.02" and res.threads == 1
    assert (res.compress_kib_s, res.compress_usage_pct, res.compress_mips) == (2140, 31, 1907)
    assert (res.decompress_kib_s, res.decompress_mips) == (15199, 1206)
    assert (res.total_usage_pct, res.total_mips) == (30, 1556)


def test_7zip_p7zip_front_end_header() -> None:
    res = sevenzip.parse_sevenzip(read("p7zip-16.02-b-md16-mmt1.txt"))
    assert res.version == "7-Zip [64] 26.02" and res.threads == 1
    assert (res.compress_mips, res.decompress_mips, res.total_mips) == (2017, 1309, 1663)


def test_7zip_16_02_avr_row_without_speed_columns() -> None:
    # 7-Zip 16.02 printed "Avr:" without the Speed columns; the same recorded run in that layout.
    text = re.sub(r"^Avr:\s+\d+(\s+\d+\s+\d+\s+\d+\s+\|)\s+\d+", r"Avr:       \1      ",
                  read("7zz-26.02-b-md16-mmt1.txt"), flags=re.M)
    res = sevenzip.parse_sevenzip(text)
    assert (res.compress_mips, res.decompress_mips, res.total_mips) == (1907, 1206, 1556)
    assert math.isnan(res.compress_kib_s) and math.isnan(res.decompress_kib_s)


def test_7zip_error_output_is_a_tool_failure_with_its_message() -> None:
    with pytest.raises(ToolFailed, match="E_INVALIDARG : One or more arguments are invalid"):
        sevenzip.parse_sevenzip(read("7zz-26.02-error-bad-switch.txt"))
    with pytest.raises(ToolFailed, match="no 'Avr:'/'Tot:' rating rows"):
        sevenzip.parse_sevenzip("7-Zip (z) 26.02\n")


# ---------------------------------------------------------------------------------------------- fio

def test_fio_random_read_figures_are_fios_own() -> None:
    text = read("fio-3.33-randread-4k-libaio-direct.json")
    raw = json.loads(text)["jobs"][0]["read"]
    res = fio.parse_fio(text)
    assert res.version == "fio-3.33" and res.jobname == "randread" and res.write is None
    assert res.read is not None
    assert res.read.iops == raw["iops"] and res.read.bw_bytes_s == raw["bw_bytes"]
    pct = raw["clat_ns"]["percentile"]
    assert res.read.clat_us["p50"] == pct["50.000000"] / 1000
    assert res.read.clat_us["p99"] == pct["99.000000"] / 1000
    assert res.read.clat_us["p99.9"] == pct["99.900000"] / 1000


def test_fio_sequential_write() -> None:
    text = read("fio-3.33-seqwrite-1m-direct.json")
    res = fio.parse_fio(text)
    assert res.read is None and res.write is not None
    assert res.write.bw_bytes_s == json.loads(text)["jobs"][0]["write"]["bw_bytes"] > 0


def test_fio_2x_layout_latency_in_microseconds_and_bw_in_kib() -> None:
    # fio 2.x: "clat" in µs and "bw" in KiB/s, no "bw_bytes"; the recorded run rewritten in that layout.
    doc = json.loads(read("fio-3.33-randread-4k-libaio-direct.json"))
    rd = doc["jobs"][0]["read"]
    clat = rd.pop("clat_ns")
    rd["clat"] = {"mean": clat["mean"] / 1000,
                  "percentile": {k: v / 1000 for k, v in clat["percentile"].items()}}
    bw_bytes = rd.pop("bw_bytes")
    res = fio.parse_fio(json.dumps(doc))
    assert res.read is not None and res.read.clat_us["p99"] == pytest.approx(clat["percentile"]["99.000000"] / 1000)
    assert res.read.bw_bytes_s == rd["bw"] * 1024 == pytest.approx(bw_bytes, rel=1e-3)


def test_fio_errors_name_fios_message() -> None:
    with pytest.raises(ToolFailed, match=r"fio job 'seqwrite' failed with error 1 \(Operation not permitted\)"):
        fio.parse_fio(read("fio-3.33-error-job-unlink.json"))
    with pytest.raises(ToolFailed, match="fio printed no JSON"):
        fio.parse_fio(read("fio-3.33-error-bad-option.stdout"))


def test_fio_argv_is_reproducible() -> None:
    argv = fio.fio_argv("fio", job="randread", filename="/d/f", size_mib=64, runtime_s=2, direct=True,
                        ioengine="libaio", iodepth=16)
    assert argv[:7] == ["fio", "--name=randread", "--filename=/d/f", "--size=64M", "--rw=randread", "--bs=4k",
                        "--ioengine=libaio"]
    assert "--direct=1" in argv and "--output-format=json" in argv and "--time_based" in argv


# ---------------------------------------------------------------------------------------------- STREAM

def test_stream_table_of_the_hwbench_kernel() -> None:
    res = stream.parse_stream(read("hwbench-stream-omp2.txt"))
    assert res.threads == 2 and res.elements == 16777216 and res.ntimes == 5 and res.validated
    assert set(res.best_mb_s) == {"copy", "scale", "add", "triad"}
    line = next(line for line in read("hwbench-stream-omp2.txt").splitlines() if line.startswith("Triad:"))
    assert res.best_mb_s["triad"] == float(line.split()[1])


def test_stream_table_of_mccalpins_stream_c() -> None:
    res = stream.parse_stream(read("stream-c-5.10-omp1.txt"))
    assert res.elements == 4000000 and res.ntimes == 5 and res.validated
    assert res.best_mb_s == {"copy": 17381.2, "scale": 25499.7, "add": 22434.4, "triad": 24534.1}
    assert res.min_s["copy"] == 0.003682


def test_stream_errors() -> None:
    with pytest.raises(ToolFailed, match="need ARRAY_ELEMENTS >= 1000"):
        stream.parse_stream(read("hwbench-stream-error-args.txt"))
    bad = read("hwbench-stream-omp2.txt").replace("Solution Validates: avg error less than 1.000000e-13 on all "
                                                   "three arrays", "Failed Validation: AvgRelAbsErr a 1e-3")
    with pytest.raises(ToolFailed, match="failed validation"):
        stream.parse_stream(bad)


def test_likwid_bench_outputs() -> None:
    copy = stream.parse_likwid(read("likwid-bench-5.2.2-copy.txt"))
    triad = stream.parse_likwid(read("likwid-bench-5.2.2-stream.txt"))
    assert (copy.mb_s, copy.threads) == (8177.91, 2) and triad.mb_s == 6168.01
    with pytest.raises(ToolFailed, match="Unknown test case nosuch"):
        stream.parse_likwid(read("likwid-bench-5.2.2-error-unknown-test.txt"))


def test_likwid_working_set_matches_the_stream_arrays() -> None:
    argv = stream.likwid_argv("likwid-bench", kernel="triad", elements=1_000_000, threads=2, iterations=5)
    assert argv == ["likwid-bench", "-t", "stream", "-w", "N:24000kB:2", "-i", "5"]  # 3 arrays x 8 MB


# ---------------------------------------------------------------------------------------------- llama-bench

def test_llama_bench_cpu_build_on_the_tiny_model() -> None:
    text = read("llama-bench-0.3.36-tiny.json")
    raw = json.loads(text)
    pp, tg = llama_bench.parse_llama_bench(text)
    assert (pp.kind, pp.n_prompt, tg.kind, tg.n_gen) == ("pp", 32, "tg", 8)
    assert pp.samples_ts == raw[0]["samples_ts"] and tg.samples_ts == raw[1]["samples_ts"] and len(tg.samples_ts) == 3
    assert pp.backends == "CPU" and not llama_bench.has_gpu_backend([pp, tg]) and pp.build == "0c1e570 (1)"


def test_llama_bench_error_output() -> None:
    with pytest.raises(ToolFailed, match="does not parse"):
        llama_bench.parse_llama_bench(read("llama-bench-0.3.36-error-no-model.txt").split("llama_bench:")[0])
    with pytest.raises(ToolFailed, match="printed no JSON: llama_bench: error: failed to load model"):
        llama_bench.parse_llama_bench(read("llama-bench-0.3.36-error-no-model.txt").replace("[", ""))


def test_llama_bench_readme_example_with_a_cuda_backend() -> None:
    recs = llama_bench.parse_llama_bench(read("llama-bench-b5163-cuda-readme.json"))
    assert [r.kind for r in recs] == ["pp", "tg"]
    assert recs[1].samples_ts == [119.03, 120.178, 119.43, 118.307, 117.464]
    assert recs[0].n_prompt == 512 and recs[1].n_gen == 128 and recs[0].n_gpu_layers == -1
    assert llama_bench.has_gpu_backend(recs) and recs[0].build == "8cf427ff (5163)"


def test_llama_bench_old_layout_without_samples_ts() -> None:
    doc = json.loads(read("llama-bench-b5163-cuda-readme.json"))
    for rec in doc:
        del rec["samples_ts"]
    recs = llama_bench.parse_llama_bench(json.dumps(doc))
    assert recs[1].samples_ts[0] == pytest.approx(128 * 1e9 / doc[1]["samples_ns"][0])


def test_llama_bench_jsonl() -> None:
    lines = "\n".join(json.dumps(r) for r in json.loads(read("llama-bench-b5163-cuda-readme.json")))
    assert [r.kind for r in llama_bench.parse_llama_bench(lines)] == ["pp", "tg"]


def test_llama_bench_argv_flags() -> None:
    argv = llama_bench.llama_bench_argv("llama-bench", model="m.gguf", n_prompt=512, n_gen=128, repetitions=5,
                                        threads=8, n_gpu_layers=99, flash_attn=False)
    assert argv == ["llama-bench", "-m", "m.gguf", "-p", "512", "-n", "128", "-r", "5", "-o", "json", "-t", "8",
                    "-ngl", "99", "-fa", "0"]


# ---------------------------------------------------------------------------------------------- runner

def test_runner_records_a_reproducible_command_and_kills_on_timeout(tmp_path: Path) -> None:
    import sys
    import time

    from pytest_hwbench.workloads.hardware.runner import run_tool

    run = run_tool("py", [sys.executable, "-c", "print('a b')"], timeout=60, version="v1", env={"X": "1 2"})
    assert run.stdout.strip() == "a b" and run.returncode == 0
    assert run.command.startswith("X='1 2' ") and "'print('\"'\"'a b'\"'\"')'" in run.command
    assert run.record()["version"] == "v1" and "stdout" not in run.record()
    with pytest.raises(ToolFailed, match=r"py exited with status 3: .*\nboom"):
        run_tool("py", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], timeout=60)
    t0 = time.monotonic()
    with pytest.raises(ToolFailed, match="did not finish within 1s"):
        run_tool("py", [sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)
    assert time.monotonic() - t0 < 30


# ---------------------------------------------------------------------------------------------- GPU

def test_gpu_throttle_reasons_and_no_gpu_answers() -> None:
    from pytest_hwbench.workloads.hardware.gpu import gpu_skip_reason, gpu_telemetry, throttle_names

    assert throttle_names(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert throttle_names(0x1000) == ["0x1000"] and throttle_names(0) == []
    if gpu_skip_reason():  # this machine has no GPU: telemetry is empty, never an exception
        assert gpu_telemetry() == [] and gpu_skip_reason().startswith("no usable NVIDIA GPU: ")
    else:
        assert all("sm_clock_mhz" in g and "throttle_reasons" in g for g in gpu_telemetry())
