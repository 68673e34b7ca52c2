"""A consumer group with explicit acknowledgements over two replicas, one of which dies.

Usage: group_failover.py TOKEN TOPIC GROUP N URL_A URL_B

One member on each replica (ack=explicit, lease 2 s). N events are published on A in small
batches (so A's member, woken first, claims most of them). B's member acknowledges every
event it gets; A's holds every event unacknowledged. Once publishing is done and A holds at
least 10, the script prints "kill" (the caller kills replica A with SIGKILL, then answers a
line) and waits until every event has been acknowledged by the group, 40 s at most. Prints
one JSON line: {"acked": distinct offsets acknowledged, "acked_twice": offsets acknowledged
for two deliveries, "b_acked", "held_at_kill": events A's member held,
"seconds_after_kill"}.
"""

import json
import sys
import threading
import time

from jammi_http import ack, publish, subscribe

token, topic, group, n, url_a, url_b = sys.argv[1:7]
n = int(n)
lock = threading.Lock()
acked = {}
counts = {"b": 0}
held = []
opened = threading.Barrier(3)


def record(who, offset, answer):
    with lock:
        if answer["acknowledged"] == 1:
            acked[offset] = acked.get(offset, 0) + 1
            counts[who] += 1


def member(who, url):
    member_id = None
    try:
        for event in subscribe(url, token, topic, on_open=opened.wait, group=group, ack="explicit", ack_timeout_seconds="2", from_beginning="true"):
            if "_offset" not in event:
                member_id = event["member"]
                continue
            offset = event["_offset"]
            if who == "a":
                with lock:
                    held.append(offset)
                continue
            record(who, offset, ack(url, token, topic, group, member_id, [offset]))
    except Exception:
        pass  # replica A died: its member's connection ends


for who, url in (("a", url_a), ("b", url_b)):
    threading.Thread(target=member, args=(who, url), daemon=True).start()
opened.wait(30)
time.sleep(0.2)
for start in range(0, n, 5):
    publish(url_a, token, topic, [{"seq": s} for s in range(start, min(n, start + 5))])
    time.sleep(0.01)

deadline = time.time() + 30
while time.time() < deadline:
    with lock:
        if len(set(held)) >= 10:
            break
    time.sleep(0.05)
with lock:
    held_at_kill = len(set(held))
print("kill", flush=True)
killed = time.time()
sys.stdin.readline()  # the caller answers once replica A is dead

deadline = time.time() + 40
while time.time() < deadline:
    with lock:
        if len(acked) >= n:
            break
    time.sleep(0.05)
done = time.time()
time.sleep(0.5)  # anything delivered again would be acknowledged now
with lock:
    print(json.dumps({
        "acked": len(acked),
        "acked_twice": sum(1 for c in acked.values() if c > 1),
        "b_acked": counts["b"],
        "held_at_kill": held_at_kill,
        "seconds_after_kill": round(done - killed, 2),
    }))
