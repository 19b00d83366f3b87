"""The README's picture of the ``streamad serve`` page: three demo cameras (seeds 0, 1, 2), the real
backbone, run until every camera has a threshold (and, with luck, an alarm), then a screenshot in
headless Chromium (Debian's ``chromium`` package).

    python -m streamad.bench.scripts.serve_screenshot docs/serve_page.png --seconds 90
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CONFIG = """
[publisher]
enabled = false
[web]
address = "127.0.0.1:0"
""" + "".join(f"""
[[cameras]]
name = "line{i + 1}"
source = "demo:{i}"
preset = "fast"
window = 16
""" for i in range(3))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="the PNG to write")
    ap.add_argument("--seconds", type=float, default=120.0, help="the longest time to wait for thresholds")
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("no Chromium: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "serve.toml"
        cfg.write_text(CONFIG)
        proc = subprocess.Popen([sys.executable, "-m", "streamad", "serve", str(cfg), "--quiet"],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        try:
            url = None
            while url is None:
                m = re.search(r"live page on (http://\S+/)", proc.stderr.readline())
                url = m.group(1) if m else None
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                with urllib.request.urlopen(url + "status.json", timeout=10) as resp:
                    cams = json.loads(resp.read())["cameras"]
                if all(c["threshold"] is not None for c in cams) and any(c["alarms"] for c in cams):
                    break
                time.sleep(1.0)
            subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--window-size=1200,640", "--virtual-time-budget=4000", f"--screenshot={args.out}", url],
                           check=True, capture_output=True, timeout=120)
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
