"""One consumer group with a member on each of several jammi serve replicas.

Usage: group_split.py TOKEN TOPIC GROUP N PUBLISH_URL SUBSCRIBE_URL [SUBSCRIBE_URL ...]

Opens one group member (server-sent events, ack=auto) on each SUBSCRIBE_URL, publishes N
events (field `seq` = 0..N-1) on PUBLISH_URL in batches of 10, and reads until every event
arrived or 30 s passed. Prints one JSON line: {"per_member": [...], "distinct": …,
"duplicates": …, "missing": …}.
"""

import json
import sys
import threading
import time

from jammi_http import publish, subscribe

token, topic, group, n, publish_url, *subscribe_urls = sys.argv[1:]
n = int(n)
received = [[] for _ in subscribe_urls]
opened = threading.Barrier(len(subscribe_urls) + 1)
lock = threading.Lock()


def member(index, url):
    for event in subscribe(url, token, topic, on_open=opened.wait, group=group, from_beginning="true"):
        if "seq" in event:
            with lock:
                received[index].append(event["seq"])


for i, url in enumerate(subscribe_urls):
    threading.Thread(target=member, args=(i, url), daemon=True).start()
opened.wait(30)
time.sleep(0.2)  # both members joined before the first event

for start in range(0, n, 10):
    publish(publish_url, token, topic, [{"seq": s} for s in range(start, min(n, start + 10))])

deadline = time.time() + 30
while time.time() < deadline:
    with lock:
        if len(set(s for r in received for s in r)) >= n:
            break
    time.sleep(0.05)
time.sleep(0.5)  # anything delivered twice would arrive now

with lock:
    everything = [s for r in received for s in r]
    print(json.dumps({
        "per_member": [len(r) for r in received],
        "distinct": len(set(everything)),
        "duplicates": len(everything) - len(set(everything)),
        "missing": n - len(set(everything) & set(range(n))),
    }))
