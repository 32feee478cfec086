"""What every client script of the tests checks with: `check` prints what
differed and ends the process with status 1 at once, and so does an
uncaught exception. Client libraries leave threads running (the gRPC
clients' channels), which would keep an ordinary exit waiting forever.
"""

import os
import sys
import traceback


def fail(message):
    """Prints `FAIL: message` and ends the process with status 1."""
    print(f"FAIL: {message}", flush=True)
    sys.stderr.flush()
    os._exit(1)


def check(condition, message):
    """Fails with `message` unless `condition` holds."""
    if not condition:
        fail(message)


def _uncaught(kind, value, trace):
    traceback.print_exception(kind, value, trace)
    fail(f"uncaught {kind.__name__}: {value}")


sys.excepthook = _uncaught
