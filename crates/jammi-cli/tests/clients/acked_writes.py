"""Writes through a replica that is killed under them.

Usage: acked_writes.py URL TOKEN TABLE

INSERTs rows (id = 0, 1, 2, …) into the mutable table TABLE through replica URL, one
statement per request, until a request fails (the replica died). Prints "writing" once the
first row is acknowledged, then, at the end, one JSON line: {"acknowledged": n} — rows
0..n-1 were acknowledged; row n was in flight when the replica died, or never sent.
"""

import json
import sys

from jammi_http import sql

url, token, table = sys.argv[1:4]
acknowledged = 0
try:
    while acknowledged < 1_000_000:
        sql(url, token, f"INSERT INTO mutable.public.{table} VALUES ({acknowledged}, 'row {acknowledged}')")
        acknowledged += 1
        if acknowledged == 1:
            print("writing", flush=True)
except Exception:
    pass
print(json.dumps({"acknowledged": acknowledged}), flush=True)
