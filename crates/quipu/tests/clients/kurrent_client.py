"""The official Python client of KurrentDB (kurrentdbclient) against
Quipu's KurrentDB door.

Usage: kurrent_client.py HOST:PORT

Appends one event (Streams.Append) and a list (Streams.BatchAppend) with
expected versions, gets the client's own WrongCurrentVersionError on a
stale one, reads the stream both ways and $all (with the client's default
filter, a regular expression with a lookahead), follows catch-up
subscriptions of a stream and of filtered $all from history into live
events, retries an append idempotently, deletes one stream and
tombstones another. Exits non-zero, naming what went
wrong, when anything differs.
"""

import sys

from kurrentdbclient import KurrentDBClient, NewEvent, NewEvents, StreamState
from kurrentdbclient.exceptions import (
    FailedPreconditionError,
    NotFoundError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)
from verdict import check

client = KurrentDBClient(uri=f"kurrentdb://{sys.argv[1]}?Tls=false")


placed = NewEvent(type="OrderPlaced", data=b'{"n":1}')
first = client.append_to_stream("order-1", current_version=StreamState.NO_STREAM, events=placed)
check(first == 1, f"the first event's commit position is {first}, not 1")
paid = NewEvent(type="OrderPaid", data=b'{"n":2}', metadata=b'{"by":"py"}')
shipped = NewEvent(type="OrderShipped", data=b"not json", content_type="application/octet-stream")
last = client.append_to_stream("order-1", current_version=0, events=[paid, shipped])
check(last == 3, f"the batch's commit position is {last}, not 3")
try:
    client.append_to_stream("order-1", current_version=0, events=[NewEvent(type="Late", data=b"{}")])
    check(False, "a stale expected version was accepted")
except WrongCurrentVersionError:
    pass
try:
    client.append_to_stream("order-1", current_version=StreamState.NO_STREAM, events=[NewEvent(type="Late", data=b"{}")])
    check(False, "NO_STREAM was accepted for an existing stream")
except WrongCurrentVersionError:
    pass

events = client.get_stream("order-1")
check([e.type for e in events] == ["OrderPlaced", "OrderPaid", "OrderShipped"], f"types {events}")
check([e.stream_position for e in events] == [0, 1, 2], "revisions")
check([e.commit_position for e in events] == [1, 2, 3], "commit positions")
check(events[0].id == placed.id and events[1].id == paid.id, "event ids")
check(events[1].metadata == b'{"by":"py"}' and events[2].data == b"not json", "metadata and data")
check(events[0].content_type == "application/json", f"content type {events[0].content_type}")
check(events[2].content_type == "application/octet-stream", f"content type {events[2].content_type}")
check([e.stream_position for e in client.get_stream("order-1", backwards=True)] == [2, 1, 0], "backwards")
check([e.stream_position for e in client.get_stream("order-1", stream_position=1)] == [1, 2], "from revision 1")
check(client.get_current_version("order-1") == 2, "current version")
try:
    client.get_stream("missing-1")
    check(False, "a missing stream was found")
except NotFoundError:
    pass

client.append_to_stream("invoice-1", current_version=StreamState.ANY, events=NewEvent(type="InvoiceSent", data=b"{}"))
everything = [(e.stream_name, e.type) for e in client.read_all()]
check(everything[:3] == [("order-1", "OrderPlaced"), ("order-1", "OrderPaid"), ("order-1", "OrderShipped")], f"$all {everything}")
check(("invoice-1", "InvoiceSent") in everything, "$all has the invoice")
from_two = [e.commit_position for e in client.read_all(commit_position=2, limit=2)]
check(from_two == [2, 3], f"$all from commit position 2 (inclusive): {from_two}")
backwards = [e.commit_position for e in client.read_all(backwards=True, limit=2)]
check(backwards == [4, 3], f"$all backwards: {backwards}")
shipped_only = [e.type for e in client.read_all(filter_include=["OrderShipped"])]
check(shipped_only == ["OrderShipped"], f"filtered $all: {shipped_only}")
check(client.get_commit_position() == 4, "the last commit position")

# Catch-up subscriptions: history, the switch to live, then live events.
subscription = client.subscribe_to_stream("order-1", include_caught_up=True, timeout=10)
seen = []
for item in subscription:
    if getattr(item, "type", None) is None or item.__class__.__name__ == "CaughtUp":
        break
    seen.append(item.stream_position)
check(seen == [0, 1, 2], f"stream subscription history {seen}")
client.append_to_stream("order-1", current_version=2, events=NewEvent(type="OrderClosed", data=b"{}"))
live = next(subscription)
check((live.type, live.stream_position) == ("OrderClosed", 3), f"live event {live}")
subscription.stop()
after = client.subscribe_to_stream("order-1", stream_position=1, timeout=10)
check(next(after).stream_position == 2, "a stream subscription starts after the revision given")
after.stop()
everything = client.subscribe_to_all(filter_include=["Order.*"], timeout=10)
types = [next(everything).type for _ in range(4)]
check(types == ["OrderPlaced", "OrderPaid", "OrderShipped", "OrderClosed"], f"filtered $all subscription {types}")
client.append_to_stream("order-9", current_version=StreamState.NO_STREAM, events=NewEvent(type="OrderPlaced", data=b"{}"))
check(next(everything).stream_name == "order-9", "a live event on $all")
everything.stop()
from_two = client.subscribe_to_all(commit_position=2, timeout=10)
check(next(from_two).commit_position == 3, "a $all subscription starts after the position given")
from_two.stop()

# StreamState.EXISTS: refused for a missing stream, taken for an existing one.
try:
    client.append_to_stream("order-2", current_version=StreamState.EXISTS, events=[NewEvent(type="Late", data=b"{}")])
    check(False, "EXISTS was accepted for a missing stream")
except WrongCurrentVersionError:
    pass
client.append_to_stream("order-2", current_version=StreamState.ANY, events=NewEvent(type="Opened", data=b"{}"))
client.append_to_stream("order-2", current_version=StreamState.EXISTS, events=NewEvent(type="Confirmed", data=b"{}"))
check([e.type for e in client.get_stream("order-2")] == ["Opened", "Confirmed"], "ANY then EXISTS")

# Several streams in one atomic append (the v2 AppendSession).
position = client.multi_append_to_stream([
    NewEvents("transfer-1", [NewEvent(type="Debited", data=b'{"n":1}', metadata=b'{"by":"py"}')], StreamState.NO_STREAM),
    NewEvents("transfer-2", [NewEvent(type="Credited", data=b'{"n":1}')], StreamState.ANY),
])
debited, credited = client.get_stream("transfer-1")[0], client.get_stream("transfer-2")[0]
check(position == credited.commit_position, f"the session's position is its last event's: {position}")
check((debited.type, debited.metadata) == ("Debited", b'{"by":"py"}'), f"properties kept as metadata: {debited}")
try:
    client.multi_append_to_stream([
        NewEvents("transfer-3", [NewEvent(type="Debited", data=b"{}")], StreamState.NO_STREAM),
        NewEvents("transfer-1", [NewEvent(type="Debited", data=b"{}")], StreamState.NO_STREAM),
    ])
    check(False, "a session with a stale expected version was accepted")
except WrongCurrentVersionError:
    pass
try:
    client.get_stream("transfer-3")
    check(False, "a refused session wrote part of itself")
except NotFoundError:
    pass

# Stream metadata through $$order-5: max count hides older events.
for n in range(4):
    client.append_to_stream("order-5", current_version=StreamState.ANY, events=NewEvent(type="Noted", data=b"{}"))
metadata, version = client.get_stream_metadata("order-5")
check(metadata == {}, f"no metadata yet: {metadata}")
client.set_stream_metadata("order-5", metadata={"$maxCount": 2, "owner": "ops"})
metadata, version = client.get_stream_metadata("order-5")
check(metadata == {"$maxCount": 2, "owner": "ops"}, f"metadata read back: {metadata}")
check([e.stream_position for e in client.get_stream("order-5")] == [2, 3], "$maxCount hides older events")
client.set_stream_metadata("order-5", metadata={"$maxCount": 3}, current_version=version)
check([e.stream_position for e in client.get_stream("order-5")] == [1, 2, 3], "metadata replaced")
try:
    client.set_stream_metadata("order-5", metadata={"$maxCount": 1}, current_version=version)
    check(False, "a metadata write expecting a replaced version was accepted")
except WrongCurrentVersionError:
    pass
metadata, latest = client.get_stream_metadata("order-5")
check((metadata, latest) == ({"$maxCount": 3}, version + 1), f"the refused write changed nothing: {metadata} {latest}")

again = client.append_to_stream("order-1", current_version=StreamState.ANY, events=placed)
check(again == 1 and client.get_current_version("order-1") == 3, "a retried append writes nothing")

# One node, the leader, found by discovery.
members = client.read_gossip()
check(len(members) == 1 and members[0].state == "NODE_STATE_LEADER", f"gossip {members}")
discovered = KurrentDBClient(uri=f"kurrentdb+discover://{sys.argv[1]}?Tls=false")
check(discovered.get_current_version("order-1") == 3, "a client that discovered the node reads")

client.delete_stream("order-1", current_version=3)
try:
    client.get_stream("order-1")
    check(False, "a deleted stream was read")
except NotFoundError:
    pass
try:
    client.tombstone_stream("order-2", current_version=0)
    check(False, "a tombstone with a stale expected version was accepted")
except WrongCurrentVersionError:
    pass
client.tombstone_stream("order-2", current_version=1)
for name, call in (
    ("read", lambda: client.get_stream("order-2")),
    ("append", lambda: client.append_to_stream("order-2", current_version=StreamState.ANY, events=[NewEvent(type="Again", data=b"{}")])),
):
    try:
        call()
        check(False, f"a tombstoned stream was used: {name}")
    except StreamIsDeletedError:
        pass
# A single event goes through Append, whose refusal the client reports
# as a plain FailedPreconditionError, as it does against KurrentDB.
try:
    client.append_to_stream("order-2", current_version=StreamState.ANY, events=NewEvent(type="Again", data=b"{}"))
    check(False, "a tombstoned stream took an append")
except FailedPreconditionError as error:
    check("is deleted" in str(error), f"append to a tombstoned stream: {error}")
discovered.close()
client.close()
print("ok")
