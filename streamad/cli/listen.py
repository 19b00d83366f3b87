"""Listen to 'streamad watch --publish' or 'streamad serve' streams (one or several publishers) and print
one line per frame and per alarm event.

A frame line gives the frame index, score, threshold and p-value (or "warming up"), whether the frame
is anomalous and whether drift was detected. An event line (an alarm: consecutive anomalous frames,
sent when it ends) gives its first and last frame, how many frames were anomalous, and its peak
frame and score. --events subscribes to event messages only. Gaps in the publisher's message numbers
(messages dropped because this listener was slow or joined late) are reported on stderr, per
publisher, camera and message type.

Several addresses fan in: one subscription per publisher, so a message is known by where it came
from. --topic filters by prefix (a camera's name for 'streamad serve'; repeat it for several).
Status messages ('streamad serve', once a second per camera) are printed with --status only. A
malformed message (another program on the port, another schema version) is counted, named once per
publisher and skipped: it never ends the listener.

examples:
  streamad listen                                  # tcp://127.0.0.1:5556
  streamad listen tcp://127.0.0.1:5560 --count 100 --timeout 10
  streamad listen tcp://127.0.0.1:5556 tcp://10.0.0.7:5556 --topic line3 --topic line4   # two boxes, two cameras
  streamad listen --status --topic _status        # 'streamad serve' status lines only
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
HELP = "print the results 'streamad watch --publish' or 'streamad serve' send, from one or several publishers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamad.adapters.publisher import DEFAULT_ADDRESS

    p.add_argument("address", nargs="*", default=[DEFAULT_ADDRESS], metavar="ADDR",
                   help=f"publisher address(es) (default {DEFAULT_ADDRESS}); several fan in")
    p.add_argument("--count", type=int, default=None, metavar="N", help="exit after N messages (frames or events)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="give up (exit status 1) after S seconds without a message (default: wait forever)")
    p.add_argument("--topic", action="append", default=None,
                   help="only messages whose topic starts with this (a camera's name; repeat for several; "
                        "default: all)")
    p.add_argument("--events", action="store_true",
                   help="only alarm event messages (topic TOPIC/event; TOPIC is --topic, default streamad)")
    p.add_argument("--status", action="store_true",
                   help="also print the status messages of 'streamad serve' (one per camera per second)")
    p.add_argument("--json", action="store_true", help="print each message's header fields as a JSON line")
    p.add_argument("--curve-server-public", metavar="FILE", default=None,
                   help="the CURVE publisher's public key file (server.key from 'streamad keys'); needs "
                        "--curve-client-key")
    p.add_argument("--curve-client-key", metavar="SECRETFILE", default=None,
                   help="this subscriber's secret key file (NAME.key_secret); its public key must be in the "
                        "publisher's --curve-clients folder")


def format_line(msg) -> str:  # type: ignore[no-untyped-def]
    """The one-line text of a :class:`~streamad.adapters.subscriber.FrameMessage`, ``EventMessage`` or
    ``StatusMessage``; a camera other than the default topic is named first."""
    from streamad.adapters.publisher import DEFAULT_TOPIC

    camera = getattr(msg, "camera", None)
    prefix = f"{camera}  " if camera is not None and camera != DEFAULT_TOPIC else ""
    if msg.type == "status":
        return prefix + format_status(msg)
    if msg.type == "event":
        return prefix + format_event(msg)
    if msg.ready and msg.score is not None:
        thr = "-" if msg.threshold is None else f"{msg.threshold:.4f}"
        p = "" if msg.p_value is None else f"  p {msg.p_value:.4f}"
        scored = f"score {msg.score:.4f}  threshold {thr}{p}"
    else:
        scored = "warming up"
    return (f"{prefix}frame {msg.index}  {scored}  anomalous {'yes' if msg.anomalous else 'no'}  "
            f"drift {'yes' if msg.drift else 'no'}")


def format_status(msg) -> str:  # type: ignore[no-untyped-def]
    """The one-line text of a :class:`~streamad.adapters.subscriber.StatusMessage`."""
    f = msg.fields

    def num(key: str, fmt: str) -> str:
        return "-" if f.get(key) is None else format(f[key], fmt)

    return (f"status {f['state']}  frames {f['frames']}  {num('fps', '.1f')} fps  lag {num('lag_s', '.2f')} s  "
            f"dropped {f['dropped']}  admissions/s {num('admissions_per_s', '.2f')}  nominal "
            f"{num('nominal_patches', 'd')}  threshold {num('threshold', '.4f')}  alarms {f['alarms']}")


def format_event(msg) -> str:  # type: ignore[no-untyped-def]
    """The one-line text of a :class:`~streamad.adapters.subscriber.EventMessage`."""
    span = "" if msg.start_time is None or msg.end_time is None else f", {msg.end_time - msg.start_time:.1f} s"
    peak = "-" if msg.peak_score is None else f"{msg.peak_score:.4f}"
    thr = "" if msg.peak_threshold is None else f"  threshold {msg.peak_threshold:.4f}"
    p = "" if msg.peak_p_value is None else f"  p {msg.peak_p_value:.4f}"
    return (f"event {msg.event}  frames {msg.start}-{msg.end} ({msg.frames} anomalous{span})  "
            f"peak frame {msg.peak_index}  score {peak}{thr}{p}")


class Malformed:
    """Malformed messages, counted per publisher; each publisher is named once, with the first reason."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def see(self, address: str, error: Exception) -> None:
        first = address not in self.counts
        self.counts[address] = self.counts.get(address, 0) + 1
        if first:
            print(f"streamad listen: skipping malformed messages from {address} (counted, the others go on): "
                  f"{error}", file=sys.stderr, flush=True)

    def report(self) -> None:
        for address, n in self.counts.items():
            print(f"streamad listen: skipped {n} malformed message(s) from {address}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from streamad.adapters.publisher import DEFAULT_TOPIC
    from streamad.adapters.subscriber import SchemaError, SeqGaps, Subscriber, event_topic

    if args.count is not None and args.count < 1:
        raise UserError(f"--count must be >= 1, got {args.count}")
    if args.timeout is not None and not args.timeout > 0:
        raise UserError(f"--timeout must be > 0 seconds, got {args.timeout}")
    addresses = list(dict.fromkeys(args.address or []))
    topics = args.topic or [""]
    if args.events:
        topics = [event_topic(t or DEFAULT_TOPIC) for t in topics]
    try:
        sub = Subscriber(addresses, topic=topics, curve_server_public_key=args.curve_server_public,
                         curve_client_key_file=args.curve_client_key)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    received, malformed = 0, Malformed()
    gaps: dict[tuple[str, str, str], SeqGaps] = {}  # (publisher, message type, camera or topic): each numbers its own
    where = addresses[0] if len(addresses) == 1 else f"{len(addresses)} publishers"
    try:
        with sub:
            while args.count is None or received < args.count:
                try:
                    got = sub.receive_from(timeout=args.timeout)
                except SchemaError as exc:
                    malformed.see(getattr(exc, "address", where), exc)
                    continue
                if got is None:
                    why = (f"{sub.handshake_error}" if sub.handshake_error else
                           f"is 'streamad watch SOURCE --publish {addresses[0]}' (or 'streamad serve') running?")
                    print(f"streamad listen: no message from {where} within {args.timeout:g} s "
                          f"({received} received): {why}", file=sys.stderr)
                    return 1
                address, msg = got
                if msg.type == "status" and not args.status:
                    continue
                stream = getattr(msg, "camera", None) or msg.topic
                missed = gaps.setdefault((address, msg.type, stream), SeqGaps()).see(msg.seq)
                if missed:
                    what = {"frame": lambda: f"frame {msg.index}", "event": lambda: f"event {msg.event}"}.get(
                        msg.type, lambda: "this one")()
                    source = "" if len(addresses) == 1 else f" from {address}"
                    cam = "" if stream == DEFAULT_TOPIC else f" of {stream}"
                    print(f"streamad listen: missed {missed} {msg.type} message(s){cam}{source} before {what}",
                          file=sys.stderr)
                received += 1
                print(json.dumps(dict(msg.header(), publisher=address) if len(addresses) > 1 else msg.header())
                      if args.json else format_line(msg), flush=True)
    finally:
        malformed.report()
    return 0
