"""The report in a real headless browser (Debian ``chromium``, driven over the DevTools protocol
with ``websocket-client``): the page loads, every image decodes (``naturalWidth > 0``), the console
stays free of errors, and a full-page screenshot is written as a test artifact (its path is
printed; set ``LAYERWISE_TEST_ARTIFACTS=DIR`` to keep a copy).

Skips, saying why, where chromium or websocket-client is absent.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from layerwise.report import build_report
from layerwise.results import Results, Variant, env_info, write_results

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium): "
                                                           "the report's browser test cannot run")


class Browser:
    """One headless chromium and one page, spoken to over the DevTools protocol."""

    def __init__(self, profile: Path, timeout: float = 60.0):
        websocket = pytest.importorskip("websocket", reason="websocket-client is not installed "
                                                            "(pip install -e '.[test]'): no DevTools client")
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,1600", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.poll() is not None else ""
                self.close()
                pytest.fail(f"chromium did not open its DevTools port within {timeout:.0f} s: {err}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        while True:
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout))
            pages = [p for p in pages if p.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert pages, "chromium opened no page"
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=timeout,
                                              suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if e.get("method") == event:
                    self.events.remove(e)
                    return e
            self.events.append(json.loads(self.ws.recv()))
        raise AssertionError(f"no {event} within {self.timeout:.0f} s")

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (failed loads) seen so far."""
        self.call("Runtime.evaluate", expression="1")  # drain what arrived before now
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console." + p["type"] + ": " + " ".join(str(a.get("value")) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def screenshot(self, path: Path, max_height: int = 12000) -> Path:
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


IMAGES_JS = ("JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
             "w: i.naturalWidth, h: i.naturalHeight})))")


def _variant(name, acc, **kw):
    base = dict(macs=1000, macs_executed=1000, params=100, size_bytes=4000, latency_ms=None, peak_mem_bytes=None,
                energy_j=None, extra={"latency_ms": "not timed", "peak_mem_bytes": "not measured",
                                      "energy_j": "not measured"})
    base.update(kw)
    return Variant(name=name, accuracy=acc, **base)


def _results_dirs(root: Path) -> list[Path]:
    """Three results directories with real figures from layerwise.viz: a UnIT run (sweep in extra,
    a wide latency spread), a quick AdaLayerNet run (plan in extra) and an LWAC run whose
    latency-over-time figure is listed but absent (the page must say so, not show a broken image)."""
    from layerwise.viz import adalayer as va
    from layerwise.viz import unit as vu

    unit_dir, ada_dir, lwac_dir = root / "unit", root / "compress", root / "lwac"
    for d in (unit_dir, ada_dir, lwac_dir):
        d.mkdir()
    sweep = [{"percentile": p, "val_accuracy": 0.97 - p / 1000, "accuracy": 0.98 - p / 1000, "remaining": 1 - p / 100}
             for p in (0, 10, 30, 50)]
    vu.accuracy_vs_macs({"unit": [(s["remaining"], s["accuracy"]) for s in sweep]}, 0.98,
                        unit_dir / "accuracy_vs_macs.png", chosen={"unit": (0.7, 0.95)})
    lat = {"median": 0.72, "iqr": 8.807, "n": 20, "batch": 1}
    write_results(unit_dir, Results("unit", "tiny-cnn", "digits", env_info("cpu", 1, 0), [
        _variant("dense", 0.98, latency_ms=lat, extra={"peak_mem_bytes": "-", "energy_j": "-"}),
        _variant("unit", 0.95, macs_executed=700, extra={"latency_ms": "-", "peak_mem_bytes": "-", "energy_j": "-",
                                                         "sweep": sweep, "percentile": 30})],
        ["accuracy_vs_macs.png"]))
    rows = [{"name": f"layer{i}.conv", "kind": "conv2d", "params": 100 * (i + 1), "macs": 1000 * (i + 1),
             "prune_ratio": 0.1 * i, "bits": 4 + i, "accuracy_contribution": 1 / (i + 1), "importance": 0.5,
             "params_after": 90 * (i + 1)} for i in range(4)]
    va.layer_fingerprint(rows, ada_dir / "layer_fingerprint.png")
    va.architecture_ribbon(rows, ada_dir / "architecture_ribbon.png")
    write_results(ada_dir, Results("adalayer", "resnet20", "digits", env_info("cpu", 1, 0), [
        _variant("dense", 0.0938), _variant("adalayer", 0.0938, size_bytes=600,
                                             extra={"layers": rows, "latency_ms": "-", "peak_mem_bytes": "-",
                                                    "energy_j": "-"})],
        ["layer_fingerprint.png", "architecture_ribbon.png"], quick=True))
    write_results(lwac_dir, Results("lwac", "resnet20", "digits", env_info("cpu", 1, 0), [
        _variant("dense", 0.99), _variant("lwac", 0.985)], ["fig7_latency_over_time.png"]))
    return [unit_dir, ada_dir, lwac_dir]


def test_report_loads_in_chromium_every_image_renders_no_console_error(browser, tmp_path, record_property):
    page = build_report(_results_dirs(tmp_path), tmp_path / "report.html")
    browser.open(page)
    images = json.loads(browser.js(IMAGES_JS))
    assert [i["alt"] for i in images] == ["accuracy_vs_macs.png", "layer_fingerprint.png", "architecture_ribbon.png"]
    broken = [i for i in images if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not broken, f"images that did not render: {broken}"
    assert browser.errors() == []
    text = browser.js("document.body.innerText")
    assert "QUICK / SMOKE RUN" in text                                     # the quick AdaLayerNet run
    assert "\u26a0 0.720 ± 8.807" in text and "wide spread" in text       # 0.720 ± 8.807 flagged
    assert "figure fig7_latency_over_time.png not found next to results.json" in text  # listed, absent
    # the quick section is drawn with its red bar, visibly apart from the others
    assert browser.js("document.querySelectorAll('section.quick-run').length") == 1
    shot = browser.screenshot(tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    keep = os.environ.get("LAYERWISE_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shot = Path(shutil.copy(shot, Path(keep) / "report-screenshot.png"))
    record_property("screenshot", str(shot))
    print(f"report screenshot: {shot}")


def test_the_browser_check_catches_a_broken_image_and_a_console_error(browser, tmp_path):
    """The checks above can fail: a damaged image and a script error are both seen."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><html><body><img alt=x src="data:image/png;base64,iVBORw0KGgoAAAA">'
                   "<script>console.error('boom'); undefinedFunction();</script></body></html>")
    browser.open(bad)
    images = json.loads(browser.js(IMAGES_JS))
    assert images[0]["w"] == 0
    errors = browser.errors()
    assert any("boom" in e for e in errors) and any("undefinedFunction" in e or "exception" in e for e in errors)
