"""Headless Chromium (Debian's chromium + chromium-driver) driven by Selenium, and the dashboard as a process.

Chromium runs with a fresh ``--user-data-dir`` and the flags that keep it off the network and off the GPU; the
driver is the Debian one, given by path, so Selenium never tries to download a browser or a driver.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import unavailable

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1000")


def screenshot_dir() -> Path:
    """Where screenshots go: $HWBENCH_SCREENSHOT_DIR, else reports/screenshots/ of the repository (CI keeps it)."""
    d = Path(os.environ.get("HWBENCH_SCREENSHOT_DIR") or REPO / "reports" / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextmanager
def chromium(network_log: bool = False) -> Iterator[Any]:
    """A Selenium driver; ``network_log`` records the DevTools events (``driver.get_log("performance")``) so
    a test can list every request a page made."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install selenium; in the 'test' extra)")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not browser or not driver_bin:
        unavailable("Chromium is not installed (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="hwbench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if network_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_bin))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def dashboard_process(uri: str, experiment: str, port: int, env: dict[str, str] | None = None,
                      timeout_s: float = 120.0) -> Iterator[str]:
    """``hwbench dashboard`` as its own process group; yields its URL once it answers."""
    cmd = [sys.executable, "-m", "pytest_hwbench.cli", "dashboard", "--mlflow", uri, "--experiment", experiment,
           "--port", str(port)]
    log = tempfile.NamedTemporaryFile(prefix="hwbench-dashboard-", suffix=".log", delete=False)  # noqa: SIM115
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"hwbench dashboard exited with {proc.returncode}:\n"
                                     f"{Path(log.name).read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > timeout_s:
                raise AssertionError(f"hwbench dashboard not answering after {timeout_s:.0f} s")
            time.sleep(0.3)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        log.close()
        os.unlink(log.name)


def requested_urls(driver: Any) -> list[str]:
    """URLs of every request the page made since the last call (needs ``chromium(network_log=True)``)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def full_page_screenshot(driver: Any, path: Path) -> Path:
    """A PNG of the whole page, not only the window."""
    import base64

    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def wait_for_figures(driver: Any, count: int, heading: str, timeout_s: float = 90.0) -> list[Any]:
    """Wait until the page heading says ``heading`` and ``count`` Plotly figures have drawn their SVG."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d: Any) -> list[Any] | bool:
        heads = d.find_elements(By.CSS_SELECTOR, "#page h2")
        figs = d.find_elements(By.CSS_SELECTOR, "#page .js-plotly-plot")
        drawn = [f for f in figs if f.find_elements(By.CSS_SELECTOR, ".main-svg")]
        if heads and heading in heads[0].text and len(drawn) >= count:
            return drawn
        return False

    return WebDriverWait(driver, timeout_s, poll_frequency=0.5).until(ready)
