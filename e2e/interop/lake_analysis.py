#!/usr/bin/env python3
"""An analyst's look at mail.lake.v1 with DuckDB, using only the .avsc file and public clients.

confluent-kafka (librdkafka) reads every partition read-committed from the first offset stamped
at or after --since to its end; fastavro decodes each value after the 5-byte Confluent header;
the rows received at or after --since go into a DuckDB table, and SQL computes the ingestion
latency percentiles (delivered rows), the kind mix and the outcomes per target. With --parquet,
DuckDB also reads the files `mailpipe lake export` wrote and compares their (id, target) pairs
with the topic's. Prints one JSON object on stdout; progress and problems go to stderr.

Exit status: 0 when the figures were computed (the caller judges them), 1 on a Kafka or input
error, 3 when a Python package is missing (scripts/deps.sh installs them; make test runs it).

usage: lake_analysis.py --brokers HOST:PORT --schema mail.lake.v1.avsc [--since RFC3339]
                        [--parquet DIR] [--topic mail.lake.v1] [--timeout SECONDS]
"""
import argparse
import datetime as dt
import glob
import io
import json
import os
import struct
import sys
import tempfile
import time

try:
    import duckdb
    import fastavro
    from confluent_kafka import Consumer, KafkaError, TopicPartition
except ImportError as exc:  # pragma: no cover - exercised by a missing install
    print(f"lake_analysis.py: missing Python package: {exc}; run scripts/deps.sh (make test does)", file=sys.stderr)
    sys.exit(3)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
TIMESTAMPS = ("received_at", "parsed_at", "classified_at", "enriched_at", "delivered_at")

# Column types of the lake table, as the schema's Avro types map to DuckDB. Timestamps travel as
# microseconds since the epoch and become TIMESTAMP (UTC) in SQL.
COLUMNS = {
    "id": "VARCHAR", "external_id": "VARCHAR", "tenant": "VARCHAR", "route_id": "VARCHAR",
    "source": "VARCHAR", "received_at": "BIGINT", "parsed_at": "BIGINT", "classified_at": "BIGINT",
    "enriched_at": "BIGINT", "delivered_at": "BIGINT", "latency_ms": "BIGINT",
    "parse_status": "VARCHAR", "kind": "VARCHAR", "spam_score": "DOUBLE", "lead_score": "DOUBLE",
    "queue": "VARCHAR", "outcome": "VARCHAR", "targets": "VARCHAR[]", "from_hash": "VARCHAR",
    "from_domain": "VARCHAR", "free_mail": "BOOLEAN", "attachment_count": "INTEGER",
    "size": "BIGINT", "thread_depth": "INTEGER", "duplicate": "BOOLEAN", "target": "VARCHAR",
    "attempts": "INTEGER", "attachment_bytes": "BIGINT", "recipient_hashes": "VARCHAR[]",
    "error_class": "VARCHAR",
}


def micros(value):
    """Microseconds since the epoch of a fastavro timestamp-micros value (None stays None)."""
    if value is None:
        return None
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def parse_since(text):
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def consume(args, schema, since, out):
    """Writes the decoded rows received at or after since to out as JSON lines; returns counts."""
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"lake-analysis-{time.time_ns()}",  # never committed: assign() reads outside the group
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    stats = {"records": 0, "rows": 0, "outside": 0, "undecodable": 0, "partitions": 0}
    try:
        meta = consumer.list_topics(args.topic, timeout=10)
        topic = meta.topics.get(args.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise RuntimeError(f"topic {args.topic} not found: {topic.error if topic else 'no metadata'}")
        parts = [TopicPartition(args.topic, p) for p in sorted(topic.partitions)]
        if since is not None:
            # The offset lookup by timestamp skips what was written before since without reading it.
            for tp in parts:
                tp.offset = int(since.timestamp() * 1000)
            parts = consumer.offsets_for_times(parts, timeout=10)
            for tp in parts:
                if tp.offset < 0:  # nothing stamped at or after since: start at the end
                    tp.offset = -1  # OFFSET_END
        else:
            for tp in parts:
                tp.offset = -2  # OFFSET_BEGINNING
        stats["partitions"] = len(parts)
        consumer.assign(parts)
        pending = {tp.partition for tp in parts}
        deadline = time.monotonic() + args.timeout
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"partitions {sorted(pending)} not read to the end within {args.timeout}s")
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise RuntimeError(f"consumer error: {msg.error()}")
            stats["records"] += 1
            value = msg.value()
            try:
                magic, _ = struct.unpack(">bI", value[:5])
                if magic != 0:
                    raise ValueError(f"magic byte {magic}")
                row = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)
            except Exception as exc:  # noqa: BLE001 - one bad record is reported, not fatal
                stats["undecodable"] += 1
                print(f"skipping undecodable record {msg.topic()}[{msg.partition()}]@{msg.offset()}: {exc}",
                      file=sys.stderr)
                continue
            if since is not None and row["received_at"] < since:
                stats["outside"] += 1
                continue
            for col in TIMESTAMPS:
                row[col] = micros(row[col])
            out.write(json.dumps({c: row.get(c) for c in COLUMNS}) + "\n")
            stats["rows"] += 1
    finally:
        consumer.close()
    return stats


def analyse(con, parquet_dir, since):
    """The analyst's queries over the lake table (and the exported files); returns the figures."""
    p50, p95, p99 = con.execute("""
        SELECT quantile_cont(latency_ms, [0.5, 0.95, 0.99])
        FROM lake WHERE delivered_at IS NOT NULL""").fetchone()[0] or [None, None, None]
    figures = {
        "rows": con.execute("SELECT count(*) FROM lake").fetchone()[0],
        "messages": con.execute("SELECT count(DISTINCT id) FROM lake").fetchone()[0],
        "delivered_rows": con.execute("SELECT count(*) FROM lake WHERE delivered_at IS NOT NULL").fetchone()[0],
        "latency_ms": {"p50": p50, "p95": p95, "p99": p99},
        "kinds": dict(con.execute("SELECT kind, count(*) FROM lake GROUP BY kind ORDER BY kind").fetchall()),
        "outcomes_by_target": {},
    }
    for target, outcome, n in con.execute("""
            SELECT target, outcome, count(*) FROM lake GROUP BY target, outcome ORDER BY target, outcome""").fetchall():
        figures["outcomes_by_target"].setdefault(target, {})[outcome] = n
    if parquet_dir is not None:
        figures["parquet"] = compare_parquet(con, parquet_dir, since)
    return figures


def compare_parquet(con, parquet_dir, since):
    files = sorted(glob.glob(os.path.join(parquet_dir, "*.parquet")))
    result = {"files": len(files), "rows": 0, "missing": [], "extra": [], "pairs_equal": False}
    if files:
        con.execute("CREATE TABLE exported AS SELECT * FROM read_parquet(?)", [files])
    else:
        con.execute("CREATE TABLE exported AS SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS target WHERE false")
    result["rows"] = con.execute("SELECT count(*) FROM exported").fetchone()[0]
    if files:
        # The export's own window, checked in SQL on its TIMESTAMP column.
        early = con.execute("SELECT count(*) FROM exported WHERE received_at < ?::TIMESTAMPTZ",
                            [since.isoformat() if since else "1970-01-01T00:00:00+00:00"]).fetchone()[0]
        result["received_before_since"] = early
    # EXCEPT ALL both ways: equal multisets of (id, target), so a duplicated row shows too.
    result["missing"] = [list(r) for r in con.execute(
        "SELECT id, target FROM (SELECT id, target FROM lake EXCEPT ALL SELECT id, target FROM exported) "
        "ORDER BY ALL LIMIT 10").fetchall()]
    result["extra"] = [list(r) for r in con.execute(
        "SELECT id, target FROM (SELECT id, target FROM exported EXCEPT ALL SELECT id, target FROM lake) "
        "ORDER BY ALL LIMIT 10").fetchall()]
    result["pairs_equal"] = not result["missing"] and not result["extra"]
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--schema", required=True, help="path to schemas/mail.lake.v1.avsc")
    ap.add_argument("--since", help="only rows received at or after this RFC 3339 time")
    ap.add_argument("--parquet", help="directory of files written by mailpipe lake export")
    ap.add_argument("--topic", default="mail.lake.v1")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds to reach the end of every partition")
    args = ap.parse_args()
    with open(args.schema) as fh:
        schema = fastavro.parse_schema(json.load(fh))
    since = parse_since(args.since)
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = os.path.join(tmp, "lake.jsonl")
        try:
            with open(rows_file, "w") as out:
                stats = consume(args, schema, since, out)
        except RuntimeError as exc:
            print(f"lake_analysis.py: {exc}", file=sys.stderr)
            return 1
        con = duckdb.connect()
        if stats["rows"]:
            cols = ", ".join(f"'{c}': '{t}'" for c, t in COLUMNS.items())
            # read_json with declared columns: exact types, and fast for an analyst's millions of rows.
            con.execute("CREATE TABLE lake_raw AS SELECT * FROM read_json(?, format = 'newline_delimited', "
                        f"columns = {{{cols}}})", [rows_file])
        else:
            con.execute("CREATE TABLE lake_raw AS SELECT "
                        + ", ".join(f"NULL::{t} AS {c}" for c, t in COLUMNS.items()) + " WHERE false")
        # Timestamps as TIMESTAMP (UTC wall time), so SQL can subtract and bucket them.
        ts = ", ".join(f"make_timestamp({c}) AS {c}" for c in TIMESTAMPS)
        con.execute(f"CREATE VIEW lake AS SELECT * REPLACE ({ts}) FROM lake_raw")
        figures = analyse(con, args.parquet, since)
    figures["topic"] = {k: v for k, v in stats.items() if k != "rows"}
    print(json.dumps(figures, sort_keys=True))
    print(f"lake_analysis.py: {stats['rows']} rows from {stats['records']} records of {args.topic}, "
          f"{stats['undecodable']} undecodable", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
