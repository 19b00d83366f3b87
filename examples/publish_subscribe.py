"""Publish every frame's verdict over ZeroMQ and read it back with the subscriber helper.

    python examples/publish_subscribe.py               # both ends in one process (demo stream)
    python examples/publish_subscribe.py pub 0         # terminal 1: publish camera 0
    python examples/publish_subscribe.py sub           # terminal 2: print what arrives

The publisher binds to 127.0.0.1 (loopback) and never waits for subscribers: a slow or absent one
only loses messages. Each message is [topic, JSON header, float32 heatmap, (JPEG overlay)].
"""

import argparse
import threading
import time

from streamad import StreamDetector
from streamad.adapters.publisher import DEFAULT_ADDRESS, Publisher
from streamad.adapters.sources import open_source
from streamad.adapters.subscriber import Subscriber


def publish(source_spec: str, frames: int, address: str, settle: float = 0.0) -> None:
    detector = StreamDetector()
    with open_source(source_spec) as source, Publisher(address) as pub:
        time.sleep(settle)  # let subscribers (re)connect: ZeroMQ keeps nothing for absent ones
        for n, frame in enumerate(source):
            result = detector.process(frame.image)
            pub.publish(result, frame.image, frame.source)  # returns at once, whatever the subscribers do
            if n + 1 >= frames:
                break


def subscribe(address: str, count: int) -> None:
    with Subscriber(address) as sub:
        for _ in range(count):
            msg = sub.receive(timeout=60.0)  # a FrameMessage: header fields + heatmap ndarray (or None)
            if msg is None:
                print("nothing received for 60 s")
                return
            score = "warming up" if msg.score is None else f"score {msg.score:.3f} (threshold {msg.threshold:.3f})"
            shape = None if msg.heatmap is None else msg.heatmap.shape
            print(f"frame {msg.index}: {score}, anomalous={msg.anomalous}, drift={msg.drift}, heatmap {shape}")


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("role", nargs="?", default="both", choices=("both", "pub", "sub"))
parser.add_argument("source", nargs="?", default="demo", help="what the publisher watches (default demo)")
parser.add_argument("--frames", type=int, default=60)
parser.add_argument("--address", default=DEFAULT_ADDRESS)
args = parser.parse_args()

if args.role == "pub":
    publish(args.source, args.frames, args.address)
elif args.role == "sub":
    subscribe(args.address, args.frames)
else:
    # Subscribe first: ZeroMQ does not keep messages for subscribers that are not connected yet.
    listener = threading.Thread(target=subscribe, args=(args.address, args.frames))
    listener.start()
    publish(args.source, args.frames + 20, args.address, settle=0.5)  # a few extra in case some are missed
    listener.join()
