"""A headless Chromium driven over the DevTools protocol: open a page, watch every request it makes, evaluate
JavaScript in it, take screenshots. For the report's browser check (Debian's ``chromium``, installed by
``.ci/install-services.sh``); the protocol is spoken with aiohttp's WebSocket client, already a dependency."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

#: Flags for a headless Chromium that touches nothing outside the page (BRIEF / CI).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio")


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """One page target: ``send`` a protocol command, collect ``requests`` seen by the Network domain."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._id = 0
        self.requests: list[str] = []
        self.events: list[dict[str, Any]] = []

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        self._id += 1
        my_id = self._id
        await self.ws.send_str(json.dumps({"id": my_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"DevTools connection closed while waiting for {method}")
            data = json.loads(msg.data)
            if data.get("id") == my_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
            self._event(data)

    async def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
            data = json.loads(msg.data)
            self._event(data)
            if data.get("method") == method:
                return data

    def _event(self, data: dict[str, Any]) -> None:
        if "method" in data:
            self.events.append(data)
            if data["method"] == "Network.requestWillBeSent":
                self.requests.append(data["params"]["request"]["url"])

    async def evaluate(self, expression: str) -> Any:
        res = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return res["result"].get("value")

    async def screenshot(self, path: Path) -> Path:
        res = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, 60)
        path.write_bytes(base64.b64decode(res["data"]))
        return path


class Chromium:
    """``async with Chromium() as browser: page = await browser.open(url)``; a fresh profile every time."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900) -> None:
        self.binary, self.width, self.height = binary, width, height
        self.proc: subprocess.Popen[bytes] | None = None
        self.profile = tempfile.mkdtemp(prefix="hwbench-chromium-")
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Chromium:
        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        port_file = Path(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {self.proc.poll()})")
            await asyncio.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])
        self.session = aiohttp.ClientSession()
        return self

    async def open(self, url: str, *, dark: bool = False) -> Page:
        assert self.session is not None
        async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        target = next(t for t in targets if t.get("type") == "page")
        ws = await self.session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.send("Network.enable")
        await page.send("Page.enable")
        await page.send("Emulation.setDeviceMetricsOverride",
                        {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        await page.send("Emulation.setEmulatedMedia",
                        {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
        page.events.clear()
        await page.send("Page.navigate", {"url": url})
        await page.wait_event("Page.loadEventFired", 60)
        return page

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)
