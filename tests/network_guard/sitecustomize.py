"""A guard that ends the process on any attempt to reach the network (tests/test_network.py, tests/test_demo.py).

Put this folder on ``PYTHONPATH``: Python imports ``sitecustomize`` at start-up, in the process and in every
process it starts with the same environment (DataLoader workers, the stage scripts of the demo). An audit hook
(PEP 578) sees each socket operation: an ``AF_INET``/``AF_INET6`` connect or send, or a host-name lookup (which
any connection by name starts with), writes one line ``network guard: <event> <address>`` to stderr and ends the
process at once with status 86 (``os._exit``: an exception in a library's background sender thread would be
swallowed). Senders often run in a child process whose status nobody reads (OpenVINO's telemetry does), so the
line is also appended to the file ``$NETWORK_GUARD_LOG`` names: a test asserts that file never appears. Local
sockets (``AF_UNIX``: DataLoader workers, multiprocessing) pass.
"""

import os
import socket
import sys

EXIT_STATUS = 86
_INET = (socket.AF_INET, socket.AF_INET6)
_SENDS = ("socket.connect", "socket.sendto", "socket.sendmsg")
_LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")


def _deny(event, address):
    line = f"network guard: {event} {address!r} (pid {os.getpid()})\n"
    try:
        os.write(2, line.encode())
        if os.environ.get("NETWORK_GUARD_LOG"):
            with open(os.environ["NETWORK_GUARD_LOG"], "a") as log:
                log.write(line)
    finally:
        os._exit(EXIT_STATUS)


def _audit(event, args):
    if event in _SENDS and getattr(args[0], "family", None) in _INET:
        _deny(event, args[1])
    elif event in _LOOKUPS:
        _deny(event, args[0])


sys.addaudithook(_audit)
