"""Topic delivery from one jammi serve replica to another, timed.

Usage: sse_latency.py PUBLISH_URL SUBSCRIBE_URL TOKEN TOPIC N

Subscribes (server-sent events, live events only) on SUBSCRIBE_URL, then publishes N events
one at a time on PUBLISH_URL, each after the previous one arrived, and prints one JSON line:
{"received": n, "p50_ms": …, "p99_ms": …, "max_ms": …} — the time from just before each
publish request to its event's arrival at the subscriber.
"""

import json
import sys
import threading
import time

from jammi_http import publish as publish_events, subscribe as events

publish_url, subscribe_url, token, topic, n = sys.argv[1:6]
n = int(n)
arrived = {}
ready = threading.Event()
cond = threading.Condition()


def subscribe():
    for event in events(subscribe_url, token, topic, on_open=ready.set):
        with cond:
            arrived[event["seq"]] = time.perf_counter()
            cond.notify_all()


def publish(seq):
    publish_events(publish_url, token, topic, {"seq": seq})


def wait_for(seq, seconds):
    deadline = time.perf_counter() + seconds
    with cond:
        while seq not in arrived and time.perf_counter() < deadline:
            cond.wait(deadline - time.perf_counter())
    return seq in arrived


threading.Thread(target=subscribe, daemon=True).start()
ready.wait(10)
# The subscription is live once a warm-up event arrives (negative sequence numbers).
for warm in range(1, 50):
    publish(-warm)
    if wait_for(-warm, 0.5):
        break
else:
    sys.exit("no warm-up event reached the subscriber")

latencies = []
for seq in range(n):
    started = time.perf_counter()
    publish(seq)
    if not wait_for(seq, 5):
        sys.exit(f"event {seq} did not arrive within 5 s")
    latencies.append((arrived[seq] - started) * 1000)

latencies.sort()
print(json.dumps({
    "received": len(latencies),
    "p50_ms": round(latencies[len(latencies) // 2], 2),
    "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
    "max_ms": round(latencies[-1], 2),
}))
