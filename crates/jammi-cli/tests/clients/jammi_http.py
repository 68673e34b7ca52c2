"""The HTTP API of jammi serve, as the topic clients here use it (standard library only)."""

import json
import urllib.parse
import urllib.request


def publish(base, token, topic, events):
    """Publish an event (dict) or a list of events on replica `base`; returns the answer."""
    request = urllib.request.Request(
        f"{base}/v1/topics/{topic}/events",
        data=json.dumps(events).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def subscribe(base, token, topic, on_open=None, **query):
    """Yield the events of a server-sent-event subscription on replica `base` (query
    parameters as keywords: from_beginning="true", group="g", …); `on_open` is called once
    the response has started."""
    url = f"{base}/v1/topics/{topic}/events"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=60) as stream:
        if on_open:
            on_open()
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data:"):
                yield json.loads(line[5:])


def ack(base, token, topic, group, member, offsets):
    """Acknowledge `offsets` for a group member (ack=explicit); returns the answer
    ({"acknowledged": …, "not_held": …})."""
    request = urllib.request.Request(
        f"{base}/v1/topics/{topic}/ack",
        data=json.dumps({"group": group, "member": member, "offsets": offsets}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def sql(base, token, statement):
    """Run one SQL statement through `/v1/sql`; returns the answer."""
    request = urllib.request.Request(
        f"{base}/v1/sql",
        data=json.dumps({"sql": statement}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
