"""Writes the events data set of the cluster test to the S3 server.

Usage: make_events.py ENDPOINT BUCKET PREFIX ROWS FILES

ROWS rows in FILES Parquet files under s3://BUCKET/PREFIX/: id (0..ROWS-1), k = id % 1000,
v = (id % 1000) / 2 (halves: every sum is exact, in any order), tenant (two UUIDs, by the
parity of id). Prints one JSON line with what it wrote.
"""

import io
import json
import sys

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TENANTS = ["3f2b8c1e-0000-4000-8000-0000000000b1", "3f2b8c1e-0000-4000-8000-0000000000b2"]

endpoint, bucket, prefix, rows, files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
per_file = -(-rows // files)
written = 0
for f in range(files):
    ids = np.arange(f * per_file, min(rows, (f + 1) * per_file), dtype=np.int64)
    if len(ids) == 0:
        break
    k = (ids % 1000).astype(np.int32)
    tenant = pa.DictionaryArray.from_arrays(pa.array((ids % 2).astype(np.int32)), pa.array(TENANTS)).cast(pa.string())
    table = pa.table({"id": ids, "k": k, "v": k.astype(np.float64) / 2, "tenant": tenant})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=250_000)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/part-{f:03}.parquet", Body=buf.getvalue())
    written += len(ids)
print(json.dumps({"rows": written, "files": files}), flush=True)
