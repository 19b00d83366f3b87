"""CURVE encryption and authentication for the ZeroMQ stream (pyzmq's ``zmq.auth``).

With CURVE the publisher holds a server key pair and a folder of the public keys of the clients it
accepts; a subscriber holds the server's public key and its own key pair. Traffic is encrypted, and
a subscriber whose public key is not in the folder is refused during the handshake (a ZAP check by a
:class:`zmq.auth.thread.ThreadAuthenticator`). Keys are Z85 text files written by
``zmq.auth.create_certificates``: ``NAME.key`` (public) and ``NAME.key_secret`` (public and secret).

``streamad keys DIR`` (or :func:`create_keys`) writes::

    DIR/server.key          public: every subscriber gets a copy   (listen --curve-server-public)
    DIR/server.key_secret   secret: the publisher's, keep it there (watch  --curve-server-key)
    DIR/clients/NAME.key    public keys of the allowed clients      (watch  --curve-clients DIR/clients)
    DIR/NAME.key_secret     secret: subscriber NAME's              (listen --curve-client-key)

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     keys = create_keys(tmp, clients=["line3"])
    ...     public, secret = load_key_pair(keys["server"][1])
    ...     sorted(keys), len(public), len(secret), len(allowed_client_keys(f"{tmp}/clients"))
    (['line3', 'server'], 40, 40, 1)
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import zmq
import zmq.auth
import zmq.utils.z85

from streamad.errors import UserError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class CurveKeyError(UserError):
    """A CURVE key file or folder that is missing, malformed or of the wrong kind."""


def curve_available() -> bool:
    """Whether this libzmq was built with CURVE (libsodium or tweetnacl)."""
    return bool(zmq.has("curve"))


def _need_curve() -> None:
    if not curve_available():
        raise CurveKeyError("this libzmq has no CURVE support (built without libsodium): install pyzmq's wheels, "
                        "which include it")


def create_keys(directory: str | os.PathLike[str], clients: list[str] | tuple[str, ...] = ("client",),
                server: str = "server", overwrite: bool = False) -> dict[str, tuple[Path, Path]]:
    """Write a server key pair (unless one exists) and one key pair per client name into ``directory``,
    and copy the clients' public keys into ``directory/clients``. Returns name -> (public file, secret
    file). Secret files are made readable by their owner only. An existing client key is an error
    unless ``overwrite`` (a replaced key locks its old holder out)."""
    _need_curve()
    root = Path(directory)
    for name in (server, *clients):
        if not _NAME.match(name):
            raise CurveKeyError(f"key name {name!r} must be letters, digits, '_', '.' or '-' (it becomes a file name)")
    if server in clients:
        raise CurveKeyError(f"a client cannot be named like the server ({server!r})")
    root.mkdir(parents=True, exist_ok=True)
    allowed = root / "clients"
    allowed.mkdir(exist_ok=True)
    out: dict[str, tuple[Path, Path]] = {}
    for name in (server, *clients):
        public, secret = root / f"{name}.key", root / f"{name}.key_secret"
        if secret.exists() and (name == server or not overwrite):
            if name != server:
                raise CurveKeyError(f"{secret} exists: pick another client name, or pass --force to replace it "
                                "(its current holder is then refused)")
            out[name] = (public, secret)
            continue
        pub_s, sec_s = zmq.auth.create_certificates(root, name)
        os.chmod(sec_s, 0o600)
        out[name] = (Path(pub_s), Path(sec_s))
        if name != server:
            shutil.copyfile(pub_s, allowed / f"{name}.key")
    return out


def load_key_pair(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``.key_secret`` file; a clear error for anything else."""
    _need_curve()
    p = Path(path)
    if not p.is_file():
        raise CurveKeyError(f"secret key file {str(p)!r} does not exist: create keys with 'streamad keys DIR' and "
                        "pass DIR/NAME.key_secret")
    try:
        public, secret = zmq.auth.load_certificate(p)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise CurveKeyError(f"{p} is not a CURVE key file ({exc}): pass a .key_secret file written by "
                        "'streamad keys'") from None
    if not secret:
        raise CurveKeyError(f"{p} holds only a public key: pass the matching .key_secret file")
    return public, secret


def load_public_key(key: str | os.PathLike[str] | bytes) -> bytes:
    """A public key (Z85, 40 characters) from a ``.key`` or ``.key_secret`` file, or given directly."""
    _need_curve()
    if isinstance(key, bytes):
        text = key
    elif isinstance(key, str) and len(key) == 40 and not Path(key).exists():
        text = key.encode("ascii", errors="replace")
    else:
        p = Path(key)
        if not p.is_file():
            raise CurveKeyError(f"public key file {str(p)!r} does not exist: pass the server's .key file "
                            "(written by 'streamad keys DIR' as DIR/server.key)")
        try:
            return zmq.auth.load_certificate(p)[0]
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise CurveKeyError(f"{p} is not a CURVE key file ({exc})") from None
    try:
        if len(zmq.utils.z85.decode(text)) == 32:
            return text
    except (ValueError, KeyError, TypeError):
        pass
    raise CurveKeyError("a CURVE public key is 40 Z85 characters, or a .key file holding one")


def allowed_client_keys(directory: str | os.PathLike[str]) -> list[bytes]:
    """The public keys (``*.key`` files) in ``directory``; an error when it holds none."""
    _need_curve()
    d = Path(directory)
    if not d.is_dir():
        raise CurveKeyError(f"allowed-clients folder {str(d)!r} does not exist: 'streamad keys DIR' writes it as "
                        "DIR/clients")
    try:
        keys = list(zmq.auth.load_certificates(d).keys())
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise CurveKeyError(f"cannot read the client keys in {d}: {exc}") from None
    if not keys:
        raise CurveKeyError(f"{d} holds no client public keys (*.key): nobody could subscribe. Create some with "
                        "'streamad keys DIR --clients NAME'")
    return keys


def describe_handshake_event(event: int, value: int) -> str:
    """A user's reading of a failed ZeroMQ security handshake (a socket-monitor event)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (f"the publisher refused this subscriber's key (ZAP status {value}): its public key is not in "
                "the publisher's allowed-clients folder")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return ("security mismatch: the publisher uses CURVE and this subscriber does not, or the other way "
                    "round (pass --curve-server-public and --curve-client-key to match a CURVE publisher)")
        return f"security handshake protocol error {value:#x}: wrong server public key?"
    return "the security handshake failed: wrong server public key, or the publisher does not use CURVE?"
