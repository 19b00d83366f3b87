"""Listen to a 'streamad watch --publish' stream and print one line per frame and per alarm event.

A frame line gives the frame index, score, threshold and p-value (or "warming up"), whether the frame
is anomalous and whether drift was detected. An event line (an alarm: consecutive anomalous frames,
sent when it ends) gives its first and last frame, how many frames were anomalous, and its peak
frame and score. --events subscribes to event messages only. Gaps in the publisher's message numbers
(messages dropped because this listener was slow or joined late) are reported on stderr.

examples:
  streamad listen                                  # tcp://127.0.0.1:5556
  streamad listen tcp://127.0.0.1:5560 --count 100 --timeout 10
  streamad listen --json > results.jsonl
  streamad listen --events                         # alarm events only, one line each
  streamad listen tcp://camera-pc:5556 --curve-server-public keys/server.key --curve-client-key keys/client.key_secret
"""

from __future__ import annotations

import argparse
import json
import sys

from streamad.errors import UserError

NAME = "listen"
HELP = "print the results a 'streamad watch --publish' sends"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamad.adapters.publisher import DEFAULT_ADDRESS

    p.add_argument("address", nargs="?", default=DEFAULT_ADDRESS, metavar="ADDR",
                   help=f"publisher address (default {DEFAULT_ADDRESS})")
    p.add_argument("--count", type=int, default=None, metavar="N", help="exit after N messages (frames or events)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="give up (exit status 1) after S seconds without a message (default: wait forever)")
    p.add_argument("--topic", default="", help="only messages whose topic starts with this (default: all)")
    p.add_argument("--events", action="store_true",
                   help="only alarm event messages (topic TOPIC/event; TOPIC is --topic, default streamad)")
    p.add_argument("--json", action="store_true", help="print each message's header fields as a JSON line")
    p.add_argument("--curve-server-public", metavar="FILE", default=None,
                   help="the CURVE publisher's public key file (server.key from 'streamad keys'); needs "
                        "--curve-client-key")
    p.add_argument("--curve-client-key", metavar="SECRETFILE", default=None,
                   help="this subscriber's secret key file (NAME.key_secret); its public key must be in the "
                        "publisher's --curve-clients folder")


def format_line(msg) -> str:  # type: ignore[no-untyped-def]
    """The one-line text of a :class:`~streamad.adapters.subscriber.FrameMessage` or ``EventMessage``."""
    if msg.type == "event":
        return format_event(msg)
    if msg.ready and msg.score is not None:
        thr = "-" if msg.threshold is None else f"{msg.threshold:.4f}"
        p = "" if msg.p_value is None else f"  p {msg.p_value:.4f}"
        scored = f"score {msg.score:.4f}  threshold {thr}{p}"
    else:
        scored = "warming up"
    return (f"frame {msg.index}  {scored}  anomalous {'yes' if msg.anomalous else 'no'}  "
            f"drift {'yes' if msg.drift else 'no'}")


def format_event(msg) -> str:  # type: ignore[no-untyped-def]
    """The one-line text of a :class:`~streamad.adapters.subscriber.EventMessage`."""
    span = "" if msg.start_time is None or msg.end_time is None else f", {msg.end_time - msg.start_time:.1f} s"
    peak = "-" if msg.peak_score is None else f"{msg.peak_score:.4f}"
    thr = "" if msg.peak_threshold is None else f"  threshold {msg.peak_threshold:.4f}"
    p = "" if msg.peak_p_value is None else f"  p {msg.peak_p_value:.4f}"
    return (f"event {msg.event}  frames {msg.start}-{msg.end} ({msg.frames} anomalous{span})  "
            f"peak frame {msg.peak_index}  score {peak}{thr}{p}")


def run(args: argparse.Namespace) -> int:
    from streamad.adapters.publisher import DEFAULT_TOPIC
    from streamad.adapters.subscriber import SchemaError, SeqGaps, Subscriber, event_topic

    if args.count is not None and args.count < 1:
        raise UserError(f"--count must be >= 1, got {args.count}")
    if args.timeout is not None and not args.timeout > 0:
        raise UserError(f"--timeout must be > 0 seconds, got {args.timeout}")
    topic = event_topic(args.topic or DEFAULT_TOPIC) if args.events else args.topic
    try:
        sub = Subscriber(args.address, topic=topic, curve_server_public_key=args.curve_server_public,
                         curve_client_key_file=args.curve_client_key)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    received, gaps = 0, {"frame": SeqGaps(), "event": SeqGaps()}  # each message type numbers its own
    with sub:
        while args.count is None or received < args.count:
            try:
                msg = sub.receive(timeout=args.timeout)
            except SchemaError as exc:
                raise UserError(f"bad message from {args.address}: {exc}") from exc
            if msg is None:
                why = (f"{sub.handshake_error}" if sub.handshake_error else
                       f"is 'streamad watch SOURCE --publish {args.address}' running?")
                print(f"streamad listen: no message from {args.address} within {args.timeout:g} s "
                      f"({received} received): {why}", file=sys.stderr)
                return 1
            missed = gaps[msg.type].see(msg.seq)
            if missed:
                what = f"frame {msg.index}" if msg.type == "frame" else f"event {msg.event}"
                print(f"streamad listen: missed {missed} {msg.type} message(s) before {what}", file=sys.stderr)
            received += 1
            print(json.dumps(msg.header()) if args.json else format_line(msg), flush=True)
    return 0
