"""Drives tern with python3-dubbo 0.0.8 (a third-party Dubbo 2 client, binary protocol over
Hessian 2). Prints one JSON object with what each step got; the Rust test asserts on it.

usage: dubbo_client.py HOST:PORT SERVICE
"""
import json
import sys
import threading

from dubbo.client import DubboClient

host, service = sys.argv[1], sys.argv[2]
out = {}

client = DubboClient(service, version="1.0.0", host=host)
out["single"] = client.call("sayHello", "world", timeout=5)

# An attachment (Dubbo context) that the route matches on.
out["canary"] = client.call("sayHello", "ctx", context={"env": "canary"}, timeout=5)

# Concurrent calls share the client's one connection: ids are remapped by tern.
results = {}
lock = threading.Lock()


def worker(t):
    for i in range(10):
        name = "t%d-%d" % (t, i)
        r = client.call("sayHello", name, timeout=10)
        with lock:
            results[name] = r


threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
for th in threads:
    th.start()
for th in threads:
    th.join()
out["concurrent"] = results

# No route: the proxy answers with Dubbo's SERVICE_NOT_FOUND status and a message, which the
# client raises.
try:
    DubboClient("com.example.Unknown", host=host).call("m", "x", timeout=5)
    out["unknown"] = "no error"
except Exception as e:  # noqa: BLE001 - the client raises its own exception types
    out["unknown"] = "%s: %s" % (type(e).__name__, e)

print(json.dumps(out))
