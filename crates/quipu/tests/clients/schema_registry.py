"""Confluent's own Python client against Quipu's schema registry.

Usage: schema_registry.py http://127.0.0.1:PORT

Registers JSON Schemas, reads them back, checks and sets compatibility,
then serializes and deserializes a message with Confluent's JSON Schema
serializer (schema id in the wire format, looked up from the registry).
Exits non-zero, naming what went wrong, when anything differs.
"""

import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

url = sys.argv[1]
client = SchemaRegistryClient({"url": url})

v1 = {
    "type": "object",
    "properties": {"id": {"type": "string"}},
    "required": ["id"],
    "additionalProperties": False,
}
v2 = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "note": {"type": "string"}},
    "required": ["id"],
    "additionalProperties": False,
}
breaking = {
    "type": "object",
    "properties": {"id": {"type": "integer"}},
    "required": ["id"],
    "additionalProperties": False,
}

first = client.register_schema("OrderPlaced", Schema(json.dumps(v1), "JSON"))
second = client.register_schema("OrderPlaced", Schema(json.dumps(v2), "JSON"))
assert (first, second) == (1, 2), (first, second)
assert client.get_subjects() == ["OrderPlaced"], client.get_subjects()
assert client.get_versions("OrderPlaced") == [1, 2], client.get_versions("OrderPlaced")
latest = client.get_latest_version("OrderPlaced")
assert (latest.version, latest.schema_id) == (2, 2), latest
assert json.loads(latest.schema.schema_str) == v2, latest.schema.schema_str
assert json.loads(client.get_schema(1).schema_str) == v1

assert client.test_compatibility("OrderPlaced", Schema(json.dumps(v2), "JSON")) is True
assert client.test_compatibility("OrderPlaced", Schema(json.dumps(breaking), "JSON")) is False
try:
    client.register_schema("OrderPlaced", Schema(json.dumps(breaking), "JSON"))
    raise AssertionError("an incompatible schema was registered")
except SchemaRegistryError as error:
    assert error.http_status_code == 409 and error.error_code == 409, error
    assert "is no longer allowed" in error.error_message, error.error_message
try:
    client.get_latest_version("Nope")
    raise AssertionError("an unknown subject was found")
except SchemaRegistryError as error:
    assert (error.http_status_code, error.error_code) == (404, 40401), error

assert client.get_compatibility() == "BACKWARD", client.get_compatibility()
client.set_compatibility("OrderPlaced", "FULL")
assert client.get_compatibility("OrderPlaced") == "FULL"

# Subjects here are event types, not Kafka's `<topic>-value`.
by_event_type = lambda context, record_name: "OrderPlaced"  # noqa: E731
serializer = JSONSerializer(
    json.dumps(v2),
    client,
    conf={"auto.register.schemas": False, "use.latest.version": True, "subject.name.strategy": by_event_type},
)
deserializer = JSONDeserializer(None, schema_registry_client=client)
context = SerializationContext("OrderPlaced", MessageField.VALUE)
message = {"id": "order-1", "note": "fragile"}
wire = serializer(message, context)
assert wire[0] == 0 and int.from_bytes(wire[1:5], "big") == 2, wire[:5]
assert deserializer(wire, context) == message

print("confluent-kafka", __import__("confluent_kafka").version()[0], "talked to the registry: ok")
