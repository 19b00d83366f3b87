"""Serve several cameras from Python: what ``streamad serve FILE`` does, in a few lines.

    python examples/serve_cameras.py                          # examples/serve.toml: three demo cameras
    python examples/serve_cameras.py cameras.toml --max-frames 300

One backbone runs every camera's frames in batches; each camera has its own detector (window, index,
threshold, state); results go out on one ZeroMQ publisher (topic: the camera's name) and on the web
page. Ctrl-C or SIGTERM stops every camera after its current frame, saves each state, and the summary
is printed.
"""

from __future__ import annotations

import argparse
import os

from streamad.runtime.serve.config import load_config
from streamad.runtime.serve.session import ServeSession

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=os.path.join(HERE, "serve.toml"), help="the cameras (TOML)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop each camera after N frames")
    args = parser.parse_args(argv)
    config = load_config(args.config)         # every unknown key and bad value is refused, with its line
    with ServeSession.from_config(config, on_event=print, max_frames=args.max_frames) as session:
        summary = session.run()
    print(summary)                            # per camera: frames, fps, alarm events, restarts
    return 0


if __name__ == "__main__":  # with [serve] workers the worker processes import this file again: run only here
    raise SystemExit(main())
