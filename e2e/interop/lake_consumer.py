#!/usr/bin/env python3
"""An analyst's consumer of mail.lake.v1, written with clients nobody on the project wrote:
confluent-kafka (librdkafka) reads the whole topic read-committed (to the end of every
partition), fastavro decodes each value with schemas/mail.lake.v1.avsc after the 5-byte
Confluent header. Prints one JSON object per row, then a summary line on stderr. Exits 0 when it
decoded at least EXPECTED_ROWS rows.

usage: lake_consumer.py BROKERS SCHEMA_FILE EXPECTED_ROWS TIMEOUT_SECONDS
"""
import io
import json
import struct
import sys
import time

import fastavro
from confluent_kafka import Consumer, KafkaError


def main() -> int:
    brokers, schema_file, expected, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with open(schema_file) as fh:
        schema = fastavro.parse_schema(json.load(fh))
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"lake-interop-{time.time_ns()}",
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    consumer.subscribe(["mail.lake.v1"])
    rows = 0
    at_end = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                assigned = {(p.topic, p.partition) for p in consumer.assignment()}
                if rows >= expected and assigned and assigned <= at_end:
                    break
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add((msg.topic(), msg.partition()))
                    continue
                print(f"consumer error: {msg.error()}", file=sys.stderr)
                return 2
            value = msg.value()
            magic, schema_id = struct.unpack(">bI", value[:5])
            if magic != 0:
                print(f"bad magic byte {magic} at offset {msg.offset()}", file=sys.stderr)
                return 2
            row = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)
            row["_key"] = msg.key().decode()
            row["_schema_id"] = schema_id
            print(json.dumps(row, default=str))
            rows += 1
            at_end.discard((msg.topic(), msg.partition()))
    finally:
        consumer.close()
    print(f"decoded {rows} lake rows", file=sys.stderr)
    return 0 if rows >= expected else 1


if __name__ == "__main__":
    sys.exit(main())
