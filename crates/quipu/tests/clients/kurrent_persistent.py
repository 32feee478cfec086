"""Persistent subscriptions of the official Python client of KurrentDB
(kurrentdbclient) against Quipu's KurrentDB door.

Usage: kurrent_persistent.py HOST:PORT

A group on a stream from a revision: events with their retry counts,
acknowledged, retried, skipped and parked, parked events replayed, live
events after history, and a reader that comes back after acknowledging
finds nothing old. A group on $all with the client's default filter (a
regular expression with a lookahead) plus a type filter. Creating a group
twice, the subscriber limit, info, listing, update, delete, and the
errors of a missing group. Exits non-zero, naming what differed.
"""

import sys
import time

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import AlreadyExistsError, MaximumSubscriptionsReachedError, NotFoundError
from verdict import check

client = KurrentDBClient(uri=f"kurrentdb://{sys.argv[1]}?Tls=false")


def settle(group, stream=None):
    """Waits (at most 20 s) until the group holds no event out: every
    answer sent was applied."""
    for _ in range(200):
        info = client.get_subscription_info(group, stream)
        if info.total_in_flight_messages == 0:
            return info
        time.sleep(0.1)
    check(False, f"{group} still has events out")


def append(stream, *types):
    client.append_to_stream(stream, current_version=StreamState.ANY, events=[NewEvent(type=t, data=b"{}") for t in types])


append("account-1", "Opened", "Deposited", "Deposited", "Withdrawn", "Deposited", "Frozen")
append("other-1", "Opened")

# A group on one stream, from revision 1 (inclusive).
client.create_subscription_to_stream("auditors", "account-1", stream_position=1, max_retry_count=5)
try:
    client.create_subscription_to_stream("auditors", "account-1")
    check(False, "a group was created twice")
except AlreadyExistsError:
    pass
reader = client.read_subscription_to_stream("auditors", "account-1", timeout=10)
first = [next(reader) for _ in range(5)]
check([e.stream_position for e in first] == [1, 2, 3, 4, 5], f"history from revision 1: {[e.stream_position for e in first]}")
check({e.stream_name for e in first} == {"account-1"} and first[0].type == "Deposited", "stream and type")
check(all(e.retry_count == 0 for e in first), "first deliveries have no retries")
reader.ack(first[0])
reader.ack(first[1])
reader.nack(first[2], action="retry")
again = next(reader)
check((again.id, again.retry_count) == (first[2].id, 1), f"a retried event comes back once tried: {again}")
reader.ack(again)
reader.nack(first[3], action="skip")
reader.nack(first[4], action="park")
info = settle("auditors", "account-1")
check(info.parked_message_count == 1, f"one event parked: {info.parked_message_count}")
client.replay_parked_events("auditors", "account-1")
replayed = next(reader)
check(replayed.id == first[4].id, f"the parked event is replayed: {replayed.stream_position}")
reader.ack(replayed)
append("account-1", "Closed")
live = next(reader)
check((live.stream_position, live.type) == (6, "Closed"), f"a live event: {live.stream_position} {live.type}")
reader.ack(live)
settle("auditors", "account-1")
reader.stop()

# Everything acknowledged stays done: a new reader gets only what is new.
append("account-1", "Reopened")
reader = client.read_subscription_to_stream("auditors", "account-1", timeout=10)
event = next(reader)
check((event.stream_position, event.type) == (7, "Reopened"), f"a new reader starts after what was done: {event.stream_position}")
reader.ack(event)
settle("auditors", "account-1")
reader.stop()

# A group on $all, the client's default filter plus only Deposited.
client.create_subscription_to_all("tellers", filter_include=["Deposited"], max_subscriber_count=1)
reader = client.read_subscription_to_all("tellers", timeout=10)
deposits = [next(reader) for _ in range(3)]
check([(e.stream_name, e.type) for e in deposits] == [("account-1", "Deposited")] * 3, "filtered $all group")
check(all(e.commit_position for e in deposits), "events on $all carry their commit position")
try:
    second = client.read_subscription_to_all("tellers", timeout=10)
    next(second)
    check(False, "a second reader passed the subscriber limit of 1")
except MaximumSubscriptionsReachedError:
    pass
for event in deposits:
    reader.ack(event)
append("account-2", "Deposited", "Withdrawn")
live = next(reader)
check((live.stream_name, live.type) == ("account-2", "Deposited"), f"a live event on $all: {live.stream_name}")
reader.ack(live)
settle("tellers")
reader.stop()

# Bad settings are refused, saying what is wrong, and create nothing (the
# listing below has only the two groups).
try:
    client.create_subscription_to_stream("bad", "account-1", consumer_strategy="Fastest")
    check(False, "an unknown consumer strategy was accepted")
except Exception as error:  # the client's generic error for INVALID_ARGUMENT
    check("unknown consumer strategy" in str(error), f"refused: {error}")

# Info, listing, update, delete.
info = client.get_subscription_info("auditors", "account-1")
check((info.event_source, info.group_name, info.start_from) == ("account-1", "auditors", "1"), f"info {info}")
check(info.max_retry_count == 5 and info.consumer_strategy == "DispatchToSingle", f"settings {info}")
check(client.get_subscription_info("tellers").start_from == "C:0/P:0", "an $all group's start")
names = sorted((i.event_source, i.group_name) for i in client.list_subscriptions())
check(names == [("$all", "tellers"), ("account-1", "auditors")], f"list {names}")
check([i.group_name for i in client.list_subscriptions_to_stream("account-1")] == ["auditors"], "list for a stream")
client.update_subscription_to_stream("auditors", "account-1", consumer_strategy="RoundRobin", max_retry_count=2)
info = client.get_subscription_info("auditors", "account-1")
check((info.consumer_strategy, info.max_retry_count) == ("RoundRobin", 2), f"updated {info}")
append("account-1", "Audited")
reader = client.read_subscription_to_stream("auditors", "account-1", timeout=10)
event = next(reader)
check(event.type == "Audited", f"after an update the group goes on from its checkpoint: {event.type}")
reader.ack(event)
settle("auditors", "account-1")
reader.stop()
client.delete_subscription("auditors", "account-1")
for call in (
    lambda: client.get_subscription_info("auditors", "account-1"),
    lambda: client.delete_subscription("auditors", "account-1"),
    lambda: next(client.read_subscription_to_stream("auditors", "account-1", timeout=10)),
):
    try:
        call()
        check(False, "a deleted group was found")
    except NotFoundError:
        pass
check([i.group_name for i in client.list_subscriptions()] == ["tellers"], "the deleted group is gone from the list")

# What the door does not offer is refused by name.
try:
    client.create_projection(name="totals", query="fromAll()")
    check(False, "a projection was accepted")
except Exception as error:  # the client raises a generic error for UNIMPLEMENTED
    check("Projections.Create is not offered" in str(error), f"unimplemented: {error}")

client.close()
print("ok")
