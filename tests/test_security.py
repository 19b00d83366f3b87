"""Security: CURVE on real sockets on 127.0.0.1 (encrypted on the wire, only authorised subscribers
read the stream), the key tool and CLI flags, and a scan of the package for anything that would
unpickle or evaluate data from the network or disk."""

from __future__ import annotations

import ast
import importlib
import os
import socket
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from streamad import cli
from streamad.adapters.publisher import PublishError, Publisher
from streamad.adapters.security import CurveKeyError, create_keys, load_key_pair, load_public_key
from streamad.adapters.subscriber import Subscriber
from streamad.results import FrameResult
from streamad.testing.standin import StandInDetector

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")  # pyzmq wheels have it


def result(i: int) -> FrameResult:
    return FrameResult(i, True, 1.25, 2.0, False, np.full((4, 4), 0.5, np.float32), None, False, False, float(i))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    create_keys(root, clients=["good"])
    create_keys(root / "other", clients=["intruder"])  # a well-formed pair the publisher does not list
    return root


def curve_publisher(keys: Path, address: str = "tcp://127.0.0.1:*", **kw) -> Publisher:
    return Publisher(address, hwm=100, curve_secret_key_file=keys / "server.key_secret",
                     allowed_clients_dir=keys / "clients", **kw)


class Pump:
    """Publish a message every 10 ms on a thread (``source`` = "secret-line-3") until stopped."""

    def __init__(self, pub: Publisher) -> None:
        self.pub, self.stop = pub, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.max_publish_s = 0.0

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            t = time.perf_counter()
            self.pub.publish(result(i), source="secret-line-3")
            self.max_publish_s = max(self.max_publish_s, time.perf_counter() - t)
            i += 1
            time.sleep(0.01)

    def __enter__(self) -> Pump:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


def collect(sub: Subscriber, seconds: float) -> list:
    got, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        m = sub.receive(timeout=0.05)
        if m is not None:
            got.append(m)
    return got


def test_curve_stream_is_readable_only_with_an_authorised_key(keys: Path) -> None:
    with curve_publisher(keys) as pub, Pump(pub) as pump:
        assert pub.curve and pub.allowed_clients == 1
        good = Subscriber(pub.address, curve_server_public_key=keys / "server.key",
                          curve_client_key_file=keys / "good.key_secret")
        plain = Subscriber(pub.address)
        intruder = Subscriber(pub.address, curve_server_public_key=keys / "server.key",
                              curve_client_key_file=keys / "other" / "intruder.key_secret")
        wrong_server = Subscriber(pub.address, curve_server_public_key=keys / "other" / "server.key",
                                  curve_client_key_file=keys / "good.key_secret")
        try:
            got = {name: collect(sub, 1.5) for name, sub in
                   (("good", good), ("plain", plain), ("intruder", intruder), ("wrong_server", wrong_server))}
            errors = {name: sub.handshake_error for name, sub in
                      (("good", good), ("plain", plain), ("intruder", intruder), ("wrong_server", wrong_server))}
        finally:
            for sub in (good, plain, intruder, wrong_server):
                sub.close()
    assert len(got["good"]) >= 20 and got["good"][0].source == "secret-line-3" and got["good"][0].score == 1.25
    assert got["plain"] == [] and got["intruder"] == [] and got["wrong_server"] == []
    assert errors["good"] is None
    assert "security mismatch" in errors["plain"]
    assert "refused this subscriber's key" in errors["intruder"]
    assert "handshake failed" in errors["wrong_server"]
    assert pump.max_publish_s < 0.05   # refused subscribers never slow the publisher down


class Tap:
    """A TCP relay on 127.0.0.1 that records what the publisher sends through it."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.seen = bytearray()
        self.done = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self.server.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
        self._pipe(upstream, client, True)

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while not self.done.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if record:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.done.set()
        self.server.close()


@pytest.mark.parametrize("curve", [False, True], ids=["plain", "curve"])
def test_on_the_wire_the_curve_stream_is_encrypted(keys: Path, curve: bool) -> None:
    pub = curve_publisher(keys) if curve else Publisher("tcp://127.0.0.1:*", hwm=100)
    port = int(pub.address.rsplit(":", 1)[1])
    tap = Tap(port)
    kw = dict(curve_server_public_key=keys / "server.key", curve_client_key_file=keys / "good.key_secret") if curve \
        else {}
    try:
        with Pump(pub), Subscriber(f"tcp://127.0.0.1:{tap.port}", **kw) as sub:
            got = collect(sub, 1.0)
    finally:
        tap.close()
        pub.close()
    assert len(got) >= 10 and got[0].source == "secret-line-3"   # the subscriber read it through the relay
    plaintext = b"secret-line-3" in tap.seen and b'"schema":4' in tap.seen
    assert plaintext is (not curve), f"{len(tap.seen)} bytes seen"


def test_curve_allows_a_non_loopback_bind_without_bind_any(keys: Path) -> None:
    with pytest.raises(PublishError, match="--bind-any.*or protect it with CURVE"):
        Publisher("tcp://0.0.0.0:*")
    with curve_publisher(keys, "tcp://0.0.0.0:*") as pub:
        port = pub.address.rsplit(":", 1)[1]
        with Pump(pub), Subscriber(f"tcp://127.0.0.1:{port}", curve_server_public_key=keys / "server.key",
                                   curve_client_key_file=keys / "good.key_secret") as sub:
            assert collect(sub, 0.8)


def test_half_or_wrong_curve_settings_are_clear_errors(keys: Path, tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="needs both"):
        Publisher("tcp://127.0.0.1:*", curve_secret_key_file=keys / "server.key_secret")
    with pytest.raises(CurveKeyError, match="holds only a public key"):
        Publisher("tcp://127.0.0.1:*", curve_secret_key_file=keys / "server.key", allowed_clients_dir=keys / "clients")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CurveKeyError, match="holds no client public keys"):
        Publisher("tcp://127.0.0.1:*", curve_secret_key_file=keys / "server.key_secret",
                  allowed_clients_dir=tmp_path / "empty")
    with pytest.raises(CurveKeyError, match="does not exist"):
        Publisher("tcp://127.0.0.1:*", curve_secret_key_file=tmp_path / "nope", allowed_clients_dir=keys / "clients")
    (tmp_path / "junk.key_secret").write_text("not a key\n")
    with pytest.raises(CurveKeyError, match="not a CURVE key file|holds only a public key"):
        load_key_pair(tmp_path / "junk.key_secret")
    with pytest.raises(ValueError, match="needs both"):
        Subscriber("tcp://127.0.0.1:1", curve_server_public_key=keys / "server.key")
    with pytest.raises(CurveKeyError, match="40 Z85 characters"):
        load_public_key(b"too short")
    assert load_public_key(load_key_pair(keys / "server.key_secret")[0].decode()) == load_public_key(
        keys / "server.key")


def test_keys_command_writes_pairs_protects_secrets_and_keeps_the_server_key(tmp_path: Path, capsys) -> None:
    root = tmp_path / "k"
    assert cli.main(["keys", str(root), "--clients", "a", "b"]) == 0
    out = capsys.readouterr().out
    assert "--curve-server-key" in out and str(root / "clients") in out
    names = sorted(p.name for p in root.iterdir())
    assert names == ["a.key", "a.key_secret", "b.key", "b.key_secret", "clients", "server.key", "server.key_secret"]
    assert sorted(p.name for p in (root / "clients").iterdir()) == ["a.key", "b.key"]
    for secret in root.glob("*.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    server = (root / "server.key_secret").read_bytes()
    assert cli.main(["keys", str(root), "--clients", "c"]) == 0          # adds a client, keeps the server pair
    assert (root / "server.key_secret").read_bytes() == server and (root / "clients" / "c.key").exists()
    assert cli.main(["keys", str(root), "--clients", "a"]) == 2          # would replace a's key
    assert "exists" in capsys.readouterr().err
    old = (root / "a.key").read_bytes()
    assert cli.main(["keys", str(root), "--clients", "a", "--force"]) == 0
    assert (root / "a.key").read_bytes() != old
    assert cli.main(["keys", str(root), "--clients", "../evil"]) == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_watch_and_listen_cli_flags_carry_the_keys(keys: Path, monkeypatch, capsys) -> None:
    watch_cmd = importlib.import_module("streamad.cli.watch")

    class Quick(StandInDetector):
        n = 0

        def process(self, frame, timestamp=None):
            time.sleep(0.005)
            Quick.n += 1
            return result(Quick.n)

    monkeypatch.setattr(watch_cmd, "build_config", lambda args: None)
    monkeypatch.setattr(watch_cmd, "make_detector", lambda config: Quick())
    address = f"tcp://127.0.0.1:{free_port()}"
    codes: list[int] = []
    watch = threading.Thread(target=lambda: codes.append(cli.main(
        ["watch", "demo", "--max-frames", "400", "--quiet", "--publish", address,
         "--curve-server-key", str(keys / "server.key_secret"), "--curve-clients", str(keys / "clients")])))
    watch.start()
    try:
        listen = cli.main(["listen", address, "--count", "3", "--timeout", "10",
                           "--curve-server-public", str(keys / "server.key"),
                           "--curve-client-key", str(keys / "good.key_secret")])
        plain = cli.main(["listen", address, "--count", "1", "--timeout", "1"])
    finally:
        watch.join(60)
    captured = capsys.readouterr()
    assert codes == [0] and listen == 0 and plain == 1, captured.err
    assert len([line for line in captured.out.splitlines() if line.startswith("frame ")]) == 3
    assert "CURVE: 1 allowed client key(s)" in captured.err
    # the plain listener got nothing and said why (which handshake event libzmq reports varies with timing)
    assert "security mismatch" in captured.err or "security handshake failed" in captured.err
    assert cli.main(["watch", "demo", "--curve-clients", str(keys / "clients")]) == 2
    assert "use them with --publish" in capsys.readouterr().err


# -- nothing from the network or disk is unpickled or evaluated ---------------------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def unsafe_calls(source: str, filename: str = "<string>") -> list[str]:
    """Lines of ``source`` that could run code from data: pickle-like modules, eval/exec, pyzmq's
    recv_pyobj / recv_serialized, ``np.load`` without an explicit ``allow_pickle=False``, ``torch.load``
    without ``weights_only=True``, ``yaml.load`` and ``pandas.read_pickle``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"{where} from {node.module} import")
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            kw = {k.arg: k.value for k in node.keywords}

            def const(key: str) -> object:
                v = kw.get(key)
                return v.value if isinstance(v, ast.Constant) else "<not a constant>"

            if isinstance(f, ast.Name) and name in ("eval", "exec", "__import__"):
                found.append(f"{where} {name}()")
            elif name in ("recv_pyobj", "recv_serialized", "read_pickle", "loads_pickle"):
                found.append(f"{where} .{name}()")
            elif name == "load" and owner in ("np", "numpy") and const("allow_pickle") is not False:
                found.append(f"{where} np.load without allow_pickle=False")
            elif name == "load" and owner == "torch" and const("weights_only") is not True:
                found.append(f"{where} torch.load without weights_only=True")
            elif name in ("load", "load_all", "unsafe_load") and owner == "yaml":
                found.append(f"{where} yaml.{name}")
    return found


def test_the_scanner_catches_each_unsafe_pattern() -> None:
    bad = """
import pickle
from dill import loads
import numpy as np, torch, yaml
x = np.load(path)
y = np.load(path, allow_pickle=True)
z = torch.load(path)
eval("1 + 1")
exec("pass")
sock.recv_pyobj()
yaml.load(text)
"""
    assert len(unsafe_calls(bad)) == 9, unsafe_calls(bad)
    ok = """
import numpy as np, torch, json
a = np.load(path, allow_pickle=False, mmap_mode="r")
b = torch.load(path, map_location="cpu", weights_only=True)
model.eval()
c = json.loads(sock.recv())
"""
    assert unsafe_calls(ok) == []


def test_no_module_unpickles_or_evaluates_data() -> None:
    files = [f for part in ("streamad", "adapters", "examples") for f in sorted((REPO / part).rglob("*.py"))]
    assert len(files) > 30
    problems = [p for f in files for p in unsafe_calls(f.read_text(encoding="utf-8"), str(f.relative_to(REPO)))]
    assert problems == [], "\n".join(problems)
    assert os.path.basename(__file__) == "test_security.py"
