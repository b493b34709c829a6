"""The web page in a real browser (Debian's Chromium driven by Playwright): upload an X-ray, read the result."""

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import FULLRES
from cxr.testing import free_port

pytestmark = pytest.mark.integration
CHROMIUM = os.environ.get("CXR_CHROMIUM", "/usr/bin/chromium")
XRAY = FULLRES / "NORMAL" / "NORMAL2-IM-1136-0001.jpeg"


@pytest.fixture(scope="module")
def server(trained_run):
    uvicorn = pytest.importorskip("uvicorn")
    from cxr.serve.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(trained_run), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_upload_in_the_browser_shows_the_api_probability(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser test skipped: no Chromium at {CHROMIUM}; enable it with `apt-get install chromium` "
                    "or CXR_CHROMIUM=/path/to/chromium")
    with open(XRAY, "rb") as f:
        api = httpx.post(f"{server}/api/predict?explain=true", files={"file": ("x.jpeg", f)}, timeout=60).json()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(server)
        assert "Not a diagnosis" in page.inner_text(".notice")
        page.set_input_files("#file", str(XRAY))
        page.wait_for_selector("#result:not(.hidden)", timeout=60_000)
        shown = float(page.get_attribute("#probability", "data-value"))
        assert shown == pytest.approx(api["probability"], abs=1e-6)
        assert page.inner_text("#probability") == f"{100 * api['probability']:.1f}%"
        assert page.inner_text("#label") == api["label"]
        caption = page.inner_text("#caption")
        assert caption.startswith(api["heatmap_caption"]) and api["explanation"]["layer"] in caption
        assert page.is_visible("#heatmap") != api["heatmap_blank"]
        page.click("#toggle")
        assert not page.is_visible("#heatmap")
        page.click("#toggle")
        screenshot = tmp_path / "page.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert screenshot.stat().st_size > 20_000
    if os.environ.get("CXR_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["CXR_SCREENSHOT"])
