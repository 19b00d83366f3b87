"""Act on alarm events: subscribe to a streamad publisher and react when an alarm event ends.

    streamad serve examples/serve.toml            # terminal 1: three demo cameras, publishing
    python examples/subscribe_alarms.py           # terminal 2: one line per alarm event, every camera
    python examples/subscribe_alarms.py --camera line1 --heatmaps alarms/ --count 5

An alarm event is a run of anomalous frames of one camera (its start and end frame, the peak frame and
score). It is published once, when it ends, on the topic CAMERA/event (``streamad watch --publish``:
streamad/event), so a subscriber to events never has to read the frames. Here the reaction is a line
and, with --heatmaps, the peak frame's heatmap as a PNG; put yours (a mail, a relay, a PLC) in react().
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

from streamad.adapters.publisher import DEFAULT_ADDRESS
from streamad.adapters.subscriber import EventMessage, Subscriber, event_topic


def react(event: EventMessage, heatmaps: str | None) -> None:
    """What to do about one alarm event."""
    camera = event.camera or event.topic.split("/")[0]   # publishers before schema 3 name no camera
    score = "-" if event.peak_score is None else f"{event.peak_score:.3f}"
    print(f"{camera}: alarm {event.event}, frames {event.start}-{event.end} ({event.frames} anomalous), "
          f"peak frame {event.peak_index} score {score}", flush=True)
    if heatmaps and event.heatmap is not None:
        os.makedirs(heatmaps, exist_ok=True)
        peak = np.clip(event.heatmap / max(float(event.heatmap.max()), 1e-9) * 255, 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(heatmaps, f"{camera}-{event.event}.png"), peak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help=f"the publisher (default {DEFAULT_ADDRESS})")
    parser.add_argument("--camera", action="append", default=None,
                        help="only this camera's events (repeat for several; default: every camera)")
    parser.add_argument("--heatmaps", metavar="DIR", default=None, help="write each event's peak heatmap here")
    parser.add_argument("--count", type=int, default=None, help="stop after this many events (default: never)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="stop when no message arrives for S seconds (default: wait forever)")
    args = parser.parse_args(argv)
    # a topic is a prefix: "line1/event" takes line1's events only; "" takes everything (frames too)
    topics = [event_topic(camera) for camera in args.camera] if args.camera else ""
    seen = 0
    with Subscriber(args.address, topic=topics) as sub:
        while args.count is None or seen < args.count:
            msg = sub.receive(timeout=args.timeout)
            if msg is None:
                print(f"nothing for {args.timeout:g} s")
                break
            if isinstance(msg, EventMessage):
                react(msg, args.heatmaps)
                seen += 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
