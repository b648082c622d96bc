"""Produce Avro records the way a Confluent shop does, for featurepipe's
schema registry test: confluent-kafka's Producer (librdkafka) with its
AvroSerializer, which registers each writer schema in the schema registry
under the topic's subject (TopicNameStrategy, "<topic>-value") and writes
Confluent's wire format (0x00, the 4-byte schema id, the Avro body).

Usage: python confluent_produce.py SPEC.json
SPEC: {"bootstrap": "host:port", "registry": "http://...", "topic": "...",
       "batches": [{"schema": {...avsc...}, "compatibility": "NONE"|null,
                    "records": [{...}, ...]}, ...]}
Prints one JSON line per record: {"batch", "index", "partition", "offset",
"schema_id"}, in input order; exits non-zero on any failure.
"""
import json
import struct
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    registry = SchemaRegistryClient({"url": spec["registry"]})
    producer = Producer({"bootstrap.servers": spec["bootstrap"], "acks": "all",
                         "enable.idempotence": False, "api.version.request": True})
    keys = StringSerializer("utf_8")
    topic = spec["topic"]
    subject = topic + "-value"
    delivered = {}
    errors = []

    def on_delivery(err, msg, ref):
        if err is not None:
            errors.append(f"{ref}: {err}")
        else:
            delivered[ref] = (msg.partition(), msg.offset())

    ids = {}
    for b, batch in enumerate(spec["batches"]):
        if batch.get("compatibility"):
            registry.set_compatibility(subject_name=subject, level=batch["compatibility"])
        ser = AvroSerializer(registry, json.dumps(batch["schema"]),
                             conf={"auto.register.schemas": True})
        for i, rec in enumerate(batch["records"]):
            ctx = SerializationContext(topic, MessageField.VALUE)
            value = ser(rec, ctx)
            ids[(b, i)] = struct.unpack(">I", value[1:5])[0]
            producer.produce(topic, key=keys(rec["user_id"]), value=value,
                             on_delivery=lambda err, msg, ref=(b, i): on_delivery(err, msg, ref))
            producer.poll(0)
    left = producer.flush(60)
    if left or errors:
        sys.exit(f"{left} records not delivered; errors: {errors[:5]}")
    for (b, i), (p, o) in sorted(delivered.items()):
        print(json.dumps({"batch": b, "index": i, "partition": p, "offset": o, "schema_id": ids[(b, i)]}))


if __name__ == "__main__":
    main()
