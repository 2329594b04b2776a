# -*- coding: utf-8 -*-
"""Loopback-only WebSocket echo server built from Autobahn|Testsuite's own
server factories, for the wsgate transparency check.

Runs under the Python 2.7 venv created by install.sh:

    ~/.cache/wsgate/autobahn-venv/bin/python tests/autobahn/echoserver.py \
        --port 9001 [--host 127.0.0.1] [--flavor testee|echo] [--check-host-port]

Flavors (default: testee):
  echo    autobahntestsuite.echo.EchoServerFactory -- exactly what
          `wstest -m echoserver` serves (no permessage-deflate, so 12.*/13.*
          report UNIMPLEMENTED).
  testee  autobahntestsuite.testee.TesteeServerFactory -- what
          `wstest -m testeeserver` serves: spec-conformant close handling
          (failByDrop=False) and permessage-deflate accepted, so 12.*/13.*
          are actually exercised.

Differences from `wstest -m echoserver` / `-m testeeserver`:
  * binds --host only (default 127.0.0.1), not 0.0.0.0;
  * the HTTP Host header port check is disabled: Autobahn's server fails the
    opening handshake with "400 - port N in HTTP Host header ... does not
    match server listening port M" whenever the Host port differs from its
    own listening port -- which is exactly what happens behind a reverse
    proxy that preserves Host. Pass --check-host-port to keep that check.
Prints "READY ws://HOST:PORT flavor=..." once listening.
"""
from __future__ import print_function

import argparse
import sys
import warnings

warnings.filterwarnings("ignore")  # cryptography's "Python 2 is deprecated" noise

# Install the epoll reactor exactly like wstest does (must precede any import
# of twisted.internet.reactor).
import autobahntestsuite.choosereactor  # noqa: F401,E402
from twisted.internet import reactor  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--flavor", choices=("echo", "testee"), default="testee")
    ap.add_argument("--check-host-port", action="store_true",
                    help="keep Autobahn's Host-header port == listening port check")
    args = ap.parse_args()

    url = "ws://%s:%d" % (args.host, args.port)
    if args.flavor == "echo":
        from autobahntestsuite.echo import EchoServerFactory
        factory = EchoServerFactory(url)
    else:
        from autobahntestsuite.testee import TesteeServerFactory
        factory = TesteeServerFactory(url)

    if not args.check_host_port:
        # Port checking of the Host header is only done when externalPort is
        # set (it is derived from the URL); see autobahn/websocket/protocol.py.
        factory.externalPort = None

    # Same as autobahn.twisted.websocket.listenWS but with an explicit
    # interface instead of '' (all interfaces).
    reactor.listenTCP(args.port, factory, 50, args.host)
    print("READY %s flavor=%s" % (url, args.flavor))
    sys.stdout.flush()
    reactor.run()


if __name__ == "__main__":
    main()
