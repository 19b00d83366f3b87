"""The real ``streamad serve`` (the default backbone, EfficientNet-Lite0, ``fast`` preset) on demo cameras,
its JSON status and images, and its page in a real browser: headless Chromium loads it, the DOM holds
a tile per camera with its image, and the screenshot's images are not blank. Chromium comes from
Debian's packages (``apt-get install chromium``; ``.ci/run`` tries to install it); without it the
browser test is skipped and says so."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

CAMERAS = ("line1", "line2", "line3")
CONFIG = """
[serve]
batch_wait_ms = 5
[publisher]
address = "tcp://127.0.0.1:*"
[web]
address = "127.0.0.1:0"
""" + "".join(f"""
[[cameras]]
name = "{name}"
source = "demo"
preset = "fast"
window = 8
[cameras.overrides]
channels = {{ seeds = 2, min_span = 2 }}
""" for name in CAMERAS)


def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Iterator[str]:
    """A running ``streamad serve`` (subprocess, real backbone) with three demo cameras; its page's URL
    once every camera has scored a few frames."""
    tmp = tmp_path_factory.mktemp("serve_page")
    (tmp / "serve.toml").write_text(CONFIG)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "streamad", "serve", str(tmp / "serve.toml"), "--quiet"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        url, end, seen = None, time.monotonic() + 120, ""
        while url is None:
            assert proc.poll() is None and time.monotonic() < end, (seen, proc.communicate(timeout=10))
            line = proc.stderr.readline()
            seen += line
            m = re.search(r"live page on (http://\S+/)", line)
            url = m.group(1) if m else None
        while True:  # every camera ready (scores), so the overlays and charts have something to show
            doc = json.loads(get(url + "status.json"))
            if all(c["score"] is not None and c["frames"] >= 6 for c in doc["cameras"]):
                break
            assert proc.poll() is None and time.monotonic() < end, doc
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert all(f"{name}: frames " in out and "stopped: signal SIGTERM" in out for name in CAMERAS), out


def test_real_serve_status_and_images(page: str) -> None:
    doc = json.loads(get(page + "status.json"))
    assert [c["name"] for c in doc["cameras"]] == list(CAMERAS)
    for cam in doc["cameras"]:
        assert cam["state"] == "running" and cam["fps"] > 0 and cam["nominal_patches"] > 0
        assert cam["history"] and all(len(point) == 3 for point in cam["history"])
        image = cv2.imdecode(np.frombuffer(get(f"{page}frame/{cam['name']}.jpg"), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (384, 384, 3) and image.std() > 10
    text = json.dumps(doc)
    assert "demo" not in text and "/" not in text.replace("\\/", "")   # no sources, paths or addresses
    assert b"<title>streamad serve</title>" in get(page)


def test_browser_shows_a_tile_per_camera_with_its_image(page: str, tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("no Chromium: install Debian's package ('apt-get install -y chromium') to run the browser test")
    flags = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars", "--window-size=1200,760", "--virtual-time-budget=6000"]
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    tiles = re.findall(r'<div class="tile[^"]*" data-camera="([^"]+)"', dom)
    assert tiles == list(CAMERAS), dom[:2000]
    assert len(re.findall(r'<img [^>]*src="frame/line\d\.jpg', dom)) == 3
    shot = tmp_path / "serve_page.png"
    subprocess.run([*flags, f"--screenshot={shot}", page], capture_output=True, text=True, timeout=120)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (760, 1200)
    # three tiles side by side: in each column the image area holds a real picture, not a blank box
    for k in range(3):
        column = image[80:420, 30 + k * 390: 330 + k * 390]
        assert column.std() > 20, f"tile {k} looks blank (std {column.std():.1f})"
    if os.environ.get("STREAMAD_SCREENSHOT"):
        shutil.copy(shot, os.environ["STREAMAD_SCREENSHOT"])
