"""Two Kafka client libraries against Quipu's Kafka door.

Usage: kafka_clients.py KAFKA_HOST:PORT HTTP_HOST:PORT

confluent-kafka (librdkafka) produces with optimistic concurrency, sees a
stale expected revision refused, and consumes in a group with headers;
kafka-python produces and consumes an event-type topic in its own group.
The HTTP API then shows what was written. confluent-kafka's AdminClient
learns that topics exist already and reads a topic's settings. Exits non-zero, naming what went
wrong, when anything differs.
"""

import json
import sys
import time
import urllib.request

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from verdict import fail

kafka_address, http_address = sys.argv[1], sys.argv[2]


def produce_confluent(key, headers, value):
    """Produces one record; returns the delivered message or the error."""
    producer = Producer(
        {"bootstrap.servers": kafka_address, "acks": "all", "enable.idempotence": False, "partitioner": "murmur2_random"}
    )
    outcome = {}

    def delivered(error, message):
        outcome["error"], outcome["message"] = error, message

    producer.produce("order", key=key, value=json.dumps(value), headers=headers, on_delivery=delivered)
    producer.flush(20)
    if "message" not in outcome:
        fail(f"no delivery report for {key}")
    return outcome["error"], outcome["message"]


error, placed = produce_confluent(
    "order-py1", [("quipu-event-type", "OrderPlaced"), ("quipu-expected-revision", "no_stream")], {"total": 3}
)
if error is not None:
    fail(f"the first produce failed: {error}")
error, _ = produce_confluent("order-py1", [("quipu-event-type", "OrderPlaced"), ("quipu-expected-revision", "no_stream")], {})
if error is None or error.code() != KafkaError.INVALID_RECORD:
    fail(f"a stale expected revision was not refused as INVALID_RECORD: {error}")
# librdkafka reports the code only; the door's message (naming the
# stream and revisions) is in the answer's error_message field.

consumer = Consumer(
    {
        "bootstrap.servers": kafka_address,
        "group.id": "confluent-readers",
        "auto.offset.reset": "earliest",
        "heartbeat.interval.ms": 200,
    }
)
consumer.subscribe(["order"])
found = None
deadline = time.time() + 30
while found is None and time.time() < deadline:
    message = consumer.poll(0.5)
    if message is None or message.error():
        continue
    if message.key() == b"order-py1":
        found = message
consumer.commit(asynchronous=False)
consumer.close()
if found is None:
    fail("the confluent consumer did not see order-py1")
headers = {k: v.decode() for k, v in found.headers()}
if headers.get("quipu-event-type") != "OrderPlaced" or headers.get("quipu-stream-revision") != "0":
    fail(f"headers: {headers}")
if found.offset() != placed.offset():
    fail(f"consumed offset {found.offset()} is not the produced {placed.offset()}")
if json.loads(found.value()) != {"total": 3}:
    fail(f"value: {found.value()}")

producer = KafkaProducer(bootstrap_servers=kafka_address, acks="all")
sent = producer.send(
    "order", key=b"order-py2", value=b'{"total":4}', headers=[("quipu-event-type", b"OrderPlaced")]
).get(timeout=20)
producer.close()

consumer = KafkaConsumer(
    "quipu.type.OrderPlaced",
    bootstrap_servers=kafka_address,
    group_id="python-readers",
    auto_offset_reset="earliest",
    consumer_timeout_ms=5000,
)
seen = {}
for message in consumer:
    seen[message.key] = message
    if len(seen) == 2:
        break
consumer.close()
if set(seen) != {b"order-py1", b"order-py2"}:
    fail(f"kafka-python saw {sorted(seen)}")
if seen[b"order-py2"].offset != sent.offset:
    fail(f"kafka-python consumed offset {seen[b'order-py2'].offset}, produced {sent.offset}")

for stream, total in [("order-py1", 3), ("order-py2", 4)]:
    with urllib.request.urlopen(f"http://{http_address}/v1/streams/{stream}") as answer:
        events = json.load(answer)["events"]
    if [e["data"] for e in events] != [{"total": total}]:
        fail(f"{stream} holds {events}")
admin = AdminClient({"bootstrap.servers": kafka_address})
for name, expected in [("order", KafkaError.TOPIC_ALREADY_EXISTS), ("bad.name", KafkaError.TOPIC_EXCEPTION)]:
    future = admin.create_topics([NewTopic(name, num_partitions=4)], request_timeout=20)[name]
    try:
        future.result()
        fail(f"creating {name} succeeded")
    except KafkaException as error:
        if error.args[0].code() != expected:
            fail(f"creating {name}: {error}")
resource = ConfigResource("topic", "order")
configs = admin.describe_configs([resource], request_timeout=20)[resource].result()
if configs["retention.ms"].value != "-1" or configs["cleanup.policy"].value != "delete":
    fail(f"order's settings: {configs}")
if not configs["retention.ms"].is_read_only:
    fail("settings should be read-only")
print("ok")
