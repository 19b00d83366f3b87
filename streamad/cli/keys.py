"""Create CURVE key pairs for an encrypted, authenticated 'streamad watch --publish' stream.

Writes, in DIR (existing server keys are kept; an existing client name is an error without --force):

  DIR/server.key          public: copy it to every subscriber      (listen --curve-server-public)
  DIR/server.key_secret   secret: stays with the publisher          (watch --curve-server-key)
  DIR/clients/NAME.key    public keys of the allowed subscribers    (watch --curve-clients DIR/clients)
  DIR/NAME.key_secret     secret: subscriber NAME's                 (listen --curve-client-key)

To admit a new subscriber later, run 'streamad keys DIR --clients NEWNAME' and restart the publisher
(it reads the folder when it starts). To lock one out, delete DIR/clients/NAME.key and restart.

examples:
  streamad keys keys/
  streamad watch 0 --publish tcp://0.0.0.0:5556 --curve-server-key keys/server.key_secret --curve-clients keys/clients
  streamad listen tcp://camera-pc:5556 --curve-server-public keys/server.key --curve-client-key keys/client.key_secret
"""

from __future__ import annotations

import argparse

NAME = "keys"
HELP = "create CURVE key pairs to encrypt the published stream and admit only known subscribers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", metavar="DIR", help="where to write the keys (created if missing)")
    p.add_argument("--clients", nargs="+", default=["client"], metavar="NAME",
                   help="one key pair per subscriber name (default: client)")
    p.add_argument("--force", action="store_true", help="replace existing client keys of these names")


def run(args: argparse.Namespace) -> int:
    from streamad.adapters.security import create_keys

    keys = create_keys(args.directory, clients=args.clients, overwrite=args.force)
    server_public, server_secret = keys["server"]
    print(f"server public key:  {server_public}   (give to every subscriber)")
    print(f"server secret key:  {server_secret}   (publisher only: --curve-server-key)")
    for name in args.clients:
        print(f"client {name!r}: secret {keys[name][1]} (subscriber only: --curve-client-key), "
              f"public copied to {server_public.parent / 'clients' / (name + '.key')}")
    print(f"publisher: --curve-server-key {server_secret} --curve-clients {server_public.parent / 'clients'}")
    return 0
