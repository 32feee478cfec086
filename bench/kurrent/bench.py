"""The KurrentDB door through KurrentDB's Python client: appends,
reads, a catch-up and a persistent subscription; events/s and latency. One client, one thread: the numbers include
the client's own cost, as an application using it would see.

Usage: bench.py HOST:PORT [SCALE]
"""

import statistics
import sys
import time
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

address = sys.argv[1]
scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
client = KurrentDBClient(uri=f"kurrentdb://{address}?Tls=false")
DATA = b'{"amount": 100, "currency": "EUR", "note": "benchmark payload of about one hundred bytes ....."}'


def report(name, count, seconds, latencies=None):
    line = f"{name:<32} {count / seconds:>10,.0f} events/s  ({count:,} in {seconds:.2f} s)"
    if latencies:
        ordered = sorted(latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        line += f"  p50 {p50:.2f} ms  p99 {p99:.2f} ms"
    print(line, flush=True)


def timed(calls, call):
    latencies = []
    started = time.perf_counter()
    for n in range(calls):
        began = time.perf_counter()
        call(n)
        latencies.append(time.perf_counter() - began)
    return time.perf_counter() - started, latencies


# Single-event appends with an exact expected version (Streams.Append).
singles = max(100, int(5_000 * scale))
streams = 100
seconds, latencies = timed(
    singles,
    lambda n: client.append_to_stream(
        f"account-{n % streams}",
        current_version=StreamState.NO_STREAM if n < streams else n // streams - 1,
        events=NewEvent(type="Deposited", data=DATA),
    ),
)
report("append 1 event (Append)", singles, seconds, latencies)

# 100-event appends (Streams.BatchAppend).
batches = max(10, int(500 * scale))
seconds, latencies = timed(
    batches,
    lambda n: client.append_to_stream(
        f"ledger-{n}", current_version=StreamState.NO_STREAM, events=[NewEvent(type="Posted", data=DATA) for _ in range(100)]
    ),
)
report("append 100 events (BatchAppend)", batches * 100, seconds, latencies)

# Loading one stream of the appends above (Streams.Read).
loads = max(100, int(2_000 * scale))
per_stream = singles // streams
seconds, latencies = timed(loads, lambda n: client.get_stream(f"account-{n % streams}"))
report(f"load a {per_stream}-event stream", loads * per_stream, seconds, latencies)

# Reading $all from the start (Streams.Read, filtered as the client does).
started = time.perf_counter()
count = sum(1 for _ in client.read_all())
report("read $all", count, time.perf_counter() - started)

# A catch-up subscription to $all, to the last event written.
last = client.get_commit_position()
started = time.perf_counter()
subscription = client.subscribe_to_all()
seen = 0
for event in subscription:
    seen += 1
    if event.commit_position >= last:
        break
subscription.stop()
report("catch-up subscription of $all", seen, time.perf_counter() - started)

# A persistent subscription to $all (a Quipu consumer group): every
# event delivered and acknowledged, as a worker would.
client.create_subscription_to_all("bench")
started = time.perf_counter()
reader = client.read_subscription_to_all("bench")
handled = 0
for event in reader:
    reader.ack(event)
    handled += 1
    if event.commit_position >= last:
        break
reader.stop()
report("persistent subscription, acked", handled, time.perf_counter() - started)
# The client's threads keep the interpreter alive until it is closed.
client.close()
