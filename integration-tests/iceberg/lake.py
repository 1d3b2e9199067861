"""Real Iceberg tables for sluice's tests, through pyiceberg.

    lake.py CATALOG_JSON create TABLE
    lake.py CATALOG_JSON append TABLE ROWS     -> prints the new snapshot id
    lake.py CATALOG_JSON expire TABLE SNAPSHOT_ID
    lake.py CATALOG_JSON expire-older-than TABLE RFC3339
    lake.py CATALOG_JSON snapshots TABLE       -> JSON: pyiceberg's view
    lake.py CATALOG_JSON add-column TABLE NAME -> a new optional string column
    lake.py CATALOG_JSON glue-table DB.NAME    -> JSON: Glue's GetTable (null if none)
    lake.py CATALOG_JSON wide DB.PREFIX N      -> N Glue tables DB.PREFIX0000...: the
                                                 first made by pyiceberg with one
                                                 snapshot, the others registered in
                                                 Glue on its metadata file (each a
                                                 real Iceberg table that commits on
                                                 its own from then on)

CATALOG_JSON is the pyiceberg catalog's properties as a JSON object, with
a "name" (e.g. {"name": "lake", "type": "glue", ...} for moto's Glue and S3,
or {"name": "local", "type": "sql", "uri": "sqlite:///...", ...}).
"""

import json
import sys
import time

import pyarrow as pa
from pyiceberg.catalog import load_catalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "name", StringType(), required=False),
)


def catalog(props):
    props = dict(props)
    name = props.pop("name")
    return load_catalog(name, **props)


def make_bucket(props):
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=props["s3.endpoint"],
        region_name=props["s3.region"],
        aws_access_key_id=props["s3.access-key-id"],
        aws_secret_access_key=props["s3.secret-access-key"],
    )
    bucket = props["warehouse"].split("/")[2]
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)


def glue_client(props):
    import boto3

    return boto3.client(
        "glue",
        endpoint_url=props["glue.endpoint"],
        region_name=props["glue.region"],
        aws_access_key_id=props["glue.access-key-id"],
        aws_secret_access_key=props["glue.secret-access-key"],
    )


def glue_table(props, name):
    import base64

    glue = glue_client(props)
    database, table = name.split(".", 1)
    try:
        t = glue.get_table(DatabaseName=database, Name=table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        return None
    text = t.get("ViewOriginalText", "")
    if text.startswith("/* Presto View: "):
        t["PrestoView"] = json.loads(base64.b64decode(text[len("/* Presto View: ") : -len(" */")]))
    return t


def wide(props, prefix, n):
    cat = catalog(props)
    make_bucket(props)
    database = prefix.split(".", 1)[0]
    try:
        cat.create_namespace(database)
    except Exception:  # already there
        pass
    first = f"{prefix}{0:04d}"
    t = cat.create_table(first, schema=SCHEMA)
    t.append(pa.table({"id": pa.array([0], pa.int64()), "name": pa.array(["row-0"], pa.string())}))
    t = cat.load_table(first)
    glue = glue_client(props)
    for i in range(1, n):
        glue.create_table(
            DatabaseName=database,
            TableInput={
                "Name": f"{prefix.split('.', 1)[1]}{i:04d}",
                "TableType": "EXTERNAL_TABLE",
                "Parameters": {"table_type": "ICEBERG", "metadata_location": t.metadata_location},
                "StorageDescriptor": {"Location": t.location()},
            },
        )


def main(argv):
    props, command, table = json.loads(argv[1]), argv[2], argv[3]
    if command == "glue-table":
        print(json.dumps(glue_table(props, table), default=str))
        return
    if command == "wide":
        wide(props, table, int(argv[4]))
        return
    cat = catalog(props)
    namespace = table.rsplit(".", 1)[0]
    if command == "create":
        if props.get("type") == "glue":
            make_bucket(props)
        try:
            cat.create_namespace(namespace)
        except Exception:  # already there
            pass
        cat.create_table(table, schema=SCHEMA)
    elif command == "append":
        from pyiceberg.exceptions import CommitFailedException

        rows = int(argv[4])
        # As Iceberg's writers do, a commit that lost a race (another
        # writer, or sluice's tag) is made again on the new metadata.
        for attempt in range(30):
            t = cat.load_table(table)
            start = len(t.metadata.snapshots) * 1000
            df = pa.table(
                {
                    "id": pa.array(range(start, start + rows), pa.int64()),
                    "name": pa.array([f"row-{i}" for i in range(rows)], pa.string()),
                }
            )
            try:
                t.append(df)
                break
            except CommitFailedException:
                if attempt == 29:
                    raise
                time.sleep(0.05 * (attempt + 1))
        print(t.current_snapshot().snapshot_id)
    elif command == "compact":
        from compact import rewrite  # the compaction job's own rewrite

        t = cat.load_table(table)
        rewrite(t, {})
        print(cat.load_table(table).current_snapshot().snapshot_id)
    elif command == "expire":
        t = cat.load_table(table)
        t.maintenance.expire_snapshots().by_id(int(argv[4])).commit()
    elif command == "expire-older-than":
        from datetime import datetime

        t = cat.load_table(table)
        t.maintenance.expire_snapshots().older_than(datetime.fromisoformat(argv[4])).commit()
    elif command == "refs":
        t = cat.load_table(table)
        print(json.dumps({name: {"snapshot_id": r.snapshot_id, "type": r.snapshot_ref_type.value,
                                 "max_ref_age_ms": r.max_ref_age_ms}
                          for name, r in t.metadata.refs.items()}))
    elif command == "add-column":
        with cat.load_table(table).update_schema() as update:
            update.add_column(argv[4], StringType())
    elif command == "snapshots":
        t = cat.load_table(table)
        print(
            json.dumps(
                {
                    "current_snapshot_id": t.metadata.current_snapshot_id,
                    "snapshots": [
                        {
                            "snapshot_id": s.snapshot_id,
                            "parent_id": s.parent_snapshot_id,
                            "sequence_number": s.sequence_number,
                            "timestamp_ms": s.timestamp_ms,
                            "operation": s.summary.operation.value if s.summary else None,
                        }
                        for s in sorted(t.metadata.snapshots, key=lambda s: s.sequence_number)
                    ],
                }
            )
        )
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
