"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``):
JSON messages, each ended by a NUL byte, written to the browser's fd 3 and read from its fd 4.
Enough of the protocol to open a page, wait on a promise it exposes, and take a screenshot."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HANG_S = 300.0  # only stops a hang: a page that never answers
_TRAMPOLINE = (
    "import os, sys\n"
    "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
    "os.dup2(r, 3)\n"
    "os.dup2(w, 4)\n"
    "[os.close(fd) for fd in (r, w) if fd not in (3, 4)]\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def find_chromium() -> str | None:
    env = os.environ.get("VQPRESS_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class ProtocolError(RuntimeError):
    pass


class Chromium:
    """One headless browser; ``call`` sends a command and returns its result, collecting events."""

    def __init__(self, binary: str, width: int, height: int) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="vqpress-chromium-")
        self._log = open(Path(self._profile.name) / "stderr.log", "wb")  # noqa: SIM115 - closed in close()
        to_browser_r, self._w = os.pipe()
        self._r, from_browser_w = os.pipe()
        args = [
            "--headless",
            "--no-sandbox",
            "--use-angle=swiftshader",  # WebGL on the CPU: SwiftShader, no GPU needed
            "--enable-unsafe-swiftshader",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--force-device-scale-factor=1",
            "--hide-scrollbars",
            f"--user-data-dir={self._profile.name}",
            f"--window-size={width},{height}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # The browser reads commands on fd 3 and writes answers on fd 4: a small trampoline puts our
        # pipe ends there and execs it (Debian's /usr/bin/chromium is a shell script; dash cannot
        # redirect fds above 9).
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(to_browser_r), str(from_browser_w), binary, *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], HANG_S)
            if not ready:
                raise ProtocolError(f"no answer from the browser in {HANG_S:.0f} s")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                err = (Path(self._profile.name) / "stderr.log").read_text(errors="replace")
                raise ProtocolError(f"the browser closed the pipe (exit {self.proc.poll()}): {err[-2000:]}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ProtocolError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = self._read_message()
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        res = self.call(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": await_promise, "returnByValue": True}
        )
        if "exceptionDetails" in res:
            details = res["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise ProtocolError(f"the page raised: {text}")
        return res["result"].get("value")

    def screenshot(self, x: float, y: float, width: float, height: float) -> bytes:  # PNG bytes
        clip = {"x": x, "y": y, "width": width, "height": height, "scale": 1}
        res = self.call("Page.captureScreenshot", {"format": "png", "clip": clip})
        return base64.b64decode(res["data"])

    def console(self) -> list[str]:
        return [
            " ".join(str(a.get("value", a.get("description", ""))) for a in ev["params"].get("args", []))
            for ev in self.events
            if ev.get("method") == "Runtime.consoleAPICalled"
        ]

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False)
        except (ProtocolError, OSError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)
        self._log.close()
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
