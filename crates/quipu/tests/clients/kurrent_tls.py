"""The official Python client of KurrentDB over TLS against Quipu's
KurrentDB door serving the certificate the test made.

Usage: kurrent_tls.py HOST:PORT CERT.pem

Appends and reads back trusting that certificate; a plain-text client
is refused. Exits non-zero, naming what differed.
"""

import sys

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from verdict import check

address, certificate = sys.argv[1], open(sys.argv[2]).read()


# The client insists on credentials with TLS; the door does not check them.
client = KurrentDBClient(uri=f"kurrentdb://admin:changeit@{address}?Tls=true", root_certificates=certificate)
client.append_to_stream("secret-1", current_version=StreamState.NO_STREAM, events=NewEvent(type="Sealed", data=b"{}"))
check([e.type for e in client.get_stream("secret-1")] == ["Sealed"], "read back over TLS")
client.close()

plain = KurrentDBClient(uri=f"kurrentdb://{address}?Tls=false")
try:
    plain.get_stream("secret-1", timeout=5)
    check(False, "a plain-text client was served on the TLS port")
except Exception as error:  # UNAVAILABLE, or a deadline: the handshake never happens
    check("Sealed" not in str(error), f"refused: {error}")
plain.close()
print("ok")
