#!/usr/bin/env python3
"""A stand-in Kubernetes API server for `scripts/soak.sh --cluster` (stdlib only).

It serves, over plain HTTP/1.1, what `mtls-guard serve` in cluster mode asks for:
discovery (/api, /apis, aggregated /apis, the group versions) and list + watch of
every kind mtls-guard watches, with the bodies and shapes of the responses
captured from a real kube-apiserver in tests/fixtures/apiserver (the lists there
are the starting state). Every second it changes that state and sends the changes
as watch events with increasing resourceVersions:

- PeerAuthentication bookinfo/default flips between STRICT and PERMISSIVE;
- Service bookinfo/reviews gains or loses a selector label;
- DestinationRules soak/r0..r48 are added one a second, then all deleted at once
  (every 50 s), so the world's size stays bounded;
- every --expire-every seconds the watches of one of those three kinds are closed
  and their resourceVersions expired, so the client gets the 410 ERROR event a
  real server sends (fixture 23) and lists again.

Watches end at their timeoutSeconds (the client watches again from its last
resourceVersion) and get a BOOKMARK every 10 s when they allow bookmarks.
GET /soak/state tells the soak what has been sent (JSON). Kinds whose API group
is not in the captured discovery (Gateway API) are not served: mtls-guard treats
them as empty.

    scripts/soak-apiserver.py --port 18445
"""

import argparse
import copy
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "apiserver"
BOOKMARK_EVERY = 10.0
HISTORY = 2000  # watch events kept for watches that resume from a resourceVersion (minutes)

# plural: (group, version, kind, namespaced, captured list or None for an empty one)
COLLECTIONS = {
    "destinationrules": ("networking.istio.io", "v1", "DestinationRule", True, "10"),
    "peerauthentications": ("security.istio.io", "v1", "PeerAuthentication", True, "11"),
    "policies": ("authentication.istio.io", "v1alpha1", "Policy", True, "12"),
    "meshpolicies": ("authentication.istio.io", "v1alpha1", "MeshPolicy", False, "13"),
    "services": ("", "v1", "Service", True, "14"),
    "ingresses": ("networking.k8s.io", "v1", "Ingress", True, "15"),
    "ingressclasses": ("networking.k8s.io", "v1", "IngressClass", False, "16"),
    "namespaces": ("", "v1", "Namespace", False, "17"),
    "configmaps": ("", "v1", "ConfigMap", True, "18"),
    "mutatingwebhookconfigurations": (
        "admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", False, None),
    "validatingwebhookconfigurations": (
        "admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", False, None),
    "apiservices": ("apiregistration.k8s.io", "v1", "APIService", False, None),
}
# Discovery paths answered with a captured body.
DISCOVERY = {
    "/api": "01",
    "/api/v1": "02",
    "/apis": "03",
    "/apis/networking.istio.io": "05",
    "/apis/networking.istio.io/v1": "06",
    "/apis/security.istio.io/v1beta1": "07",
    "/apis/authentication.istio.io/v1alpha1": "08",
    "/apis/networking.k8s.io/v1": "09",
}
CHURNED = ["peerauthentications", "destinationrules", "services"]


def fixture(number):
    """(status, content type, body bytes) of a captured response."""
    body = next(p for p in FIXTURES.glob(f"{number}-*") if p.suffix != ".meta")
    meta = dict(
        line.split(": ", 1) for line in body.with_suffix(".meta").read_text().splitlines() if ": " in line
    )
    return int(meta["status"].split()[1]), meta["content-type"], body.read_bytes()


def api_version(plural):
    group, version = COLLECTIONS[plural][:2]
    return f"{group}/{version}" if group else version


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(message):
    """One line on stdout (the soak keeps it as apiserver.log): expiries, 410s, lists."""
    print(datetime.now(timezone.utc).strftime("%H:%M:%S.%f")[:-3], message, flush=True)


class World:
    """The objects, the watch event history and the counters, under one lock."""

    def __init__(self, expire_every):
        self.lock = threading.Condition()
        self.objects = {plural: {} for plural in COLLECTIONS}
        self.rv = 734  # every captured list was read at 734
        self.history = []  # (rv, plural, type, object)
        self.oldest = {plural: 0 for plural in COLLECTIONS}  # older watch starts get 410
        self.closing = {plural: 0 for plural in COLLECTIONS}  # bumped to end open watches
        self.expire_every = expire_every
        self.last_tick = time.monotonic()
        self.stats = {"tick": 0, "events": 0, "expired": 0, "lists": 0, "watches": 0,
                      "watches_open": 0, "gone": 0, "bookmarks": 0}
        for plural, (_, _, kind, _, number) in COLLECTIONS.items():
            if number is None:
                continue
            for item in json.loads(fixture(number)[2])["items"]:
                item["apiVersion"], item["kind"] = api_version(plural), kind
                self.objects[plural][self.key(item)] = item
        self.write("ADDED", "namespaces", {"metadata": {"name": "soak", "labels": {
            "kubernetes.io/metadata.name": "soak"}}, "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}})

    @staticmethod
    def key(obj):
        meta = obj["metadata"]
        return meta.get("namespace", ""), meta["name"]

    def write(self, type_, plural, obj):
        """Stores a change (callers hold the lock or run before the server starts)."""
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = api_version(plural), COLLECTIONS[plural][2]
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.rv)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now())
        if type_ == "DELETED":
            self.objects[plural].pop(self.key(obj), None)
        else:
            self.objects[plural][self.key(obj)] = obj
        self.history.append((self.rv, plural, type_, obj))
        del self.history[:-HISTORY]
        self.stats["events"] += 1

    def tick(self):
        with self.lock:
            t = self.stats["tick"] = self.stats["tick"] + 1
            self.last_tick = time.monotonic()
            pa = copy.deepcopy(self.objects["peerauthentications"][("bookinfo", "default")])
            pa["spec"]["mtls"]["mode"] = "STRICT" if t % 2 == 0 else "PERMISSIVE"
            self.write("MODIFIED", "peerauthentications", pa)
            svc = copy.deepcopy(self.objects["services"][("bookinfo", "reviews")])
            svc["spec"]["selector"] = {"app": "reviews"} if t % 2 == 0 else {"app": "reviews", "soak": "odd"}
            self.write("MODIFIED", "services", svc)
            k = t % 50
            if k == 0:
                for key in sorted(self.objects["destinationrules"]):
                    if key[0] == "soak":
                        self.write("DELETED", "destinationrules", self.objects["destinationrules"][key])
            else:
                self.write("ADDED", "destinationrules", {
                    "metadata": {"name": f"r{k - 1}", "namespace": "soak", "generation": 1},
                    "spec": {"host": f"s{k - 1}.soak.svc.cluster.local",
                             "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}})
            if self.expire_every and t % self.expire_every == 0:
                plural = CHURNED[(t // self.expire_every) % len(CHURNED)]
                self.rv += 1  # a write elsewhere: the list after the 410 reads at this RV
                self.oldest[plural] = self.rv
                self.closing[plural] += 1
                self.stats["expired"] += 1
                log(f"tick {t}: {plural} watches closed, resourceVersions before {self.rv} expired")
            self.lock.notify_all()

    def counts(self):
        return {plural: len(objs) for plural, objs in self.objects.items()}


def parse_path(path):
    """(plural, namespace) of a collection path mtls-guard lists or watches, else None."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) == 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if len(rest) != 1 or rest[0] not in COLLECTIONS:
        return None
    plural = rest[0]
    served_group, served_version, _, namespaced, _ = COLLECTIONS[plural]
    if (group, version) != (served_group, served_version) or (namespace and not namespaced):
        return None
    return plural, namespace


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    world = None  # set in main

    def log_message(self, *args):
        pass

    def send(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, value, status=200):
        self.send(status, "application/json", json.dumps(value, separators=(",", ":")).encode())

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        world = self.world
        if url.path == "/soak/state":
            with world.lock:
                state = dict(world.stats, rv=world.rv, counts=world.counts(),
                             tick_age_ms=int((time.monotonic() - world.last_tick) * 1000))
                state["peerauthentication_mode"] = (
                    world.objects["peerauthentications"][("bookinfo", "default")]["spec"]["mtls"]["mode"])
            return self.send_json(state)
        if url.path == "/apis" and "as=APIGroupDiscoveryList" in self.headers.get("Accept", ""):
            return self.send(*fixture("04"))
        if url.path in DISCOVERY:
            return self.send(*fixture(DISCOVERY[url.path]))
        target = parse_path(url.path)
        if target is None:
            return self.send(*fixture("25"))  # the plain-text 404 of an API not served
        plural, namespace = target
        selected = None
        if query.get("fieldSelector", "").startswith("metadata.name="):
            selected = query["fieldSelector"].split("=", 1)[1]

        def wanted(obj):
            meta = obj["metadata"]
            return (not namespace or meta.get("namespace") == namespace) and (
                selected is None or meta["name"] == selected)

        if query.get("watch") in ("true", "1"):
            return self.watch(plural, wanted, query)
        group, version, kind, _, _ = COLLECTIONS[plural]
        with world.lock:
            world.stats["lists"] += 1
            log(f"list {plural} at {world.rv}")
            items = [copy.deepcopy(o) for _, o in sorted(world.objects[plural].items()) if wanted(o)]
            rv = str(world.rv)
        if group:  # a CRD list, as captured (keys in alphabetical order)
            body = {"apiVersion": api_version(plural), "items": items, "kind": kind + "List",
                    "metadata": {"continue": "", "resourceVersion": rv}}
        else:  # a built-in list: its items carry no type
            for item in items:
                del item["apiVersion"], item["kind"]
            body = {"kind": kind + "List", "apiVersion": version,
                    "metadata": {"resourceVersion": rv}, "items": items}
        self.send_json(body)

    def watch(self, plural, wanted, query):
        world = self.world
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(type_, obj):
            line = json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()

        def status(code, reason, message):
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "reason": reason, "code": code}

        try:
            if query.get("sendInitialEvents") == "true":  # as captured (fixture 21)
                event("ERROR", status(500, "InternalError", "a watch stream was requested by the "
                      "client but the required storage feature RequestWatchProgress is disabled"))
                return
            deadline = time.monotonic() + float(query.get("timeoutSeconds", 1800))
            bookmarks = query.get("allowWatchBookmarks") == "true"
            with world.lock:
                world.stats["watches"] += 1
                since = int(query.get("resourceVersion") or 0) or world.rv
                if since < world.oldest[plural] or (
                        world.history and since < world.history[0][0] - 1):
                    world.stats["gone"] += 1
                    log(f"watch {plural} from {since}: 410")
                    oldest = max(world.oldest[plural], world.history[0][0] - 1 if world.history else 0)
                    event("ERROR", status(410, "Expired",
                                          f"too old resource version: {since} ({oldest})"))
                    return
                world.stats["watches_open"] += 1
                closing = world.closing[plural]
            try:
                next_bookmark = time.monotonic() + BOOKMARK_EVERY
                while True:
                    with world.lock:
                        world.lock.wait_for(
                            lambda: world.rv > since or world.closing[plural] != closing,
                            timeout=max(0.0, min(deadline, next_bookmark) - time.monotonic()))
                        if world.closing[plural] != closing:
                            return
                        pending = [(rv, t, o) for rv, p, t, o in world.history
                                   if rv > since and p == plural and wanted(o)]
                        since = world.rv
                    for _, type_, obj in pending:
                        event(type_, obj)
                    if time.monotonic() >= deadline:
                        return
                    if bookmarks and time.monotonic() >= next_bookmark:
                        kind = COLLECTIONS[plural][2]
                        event("BOOKMARK", {"apiVersion": api_version(plural), "kind": kind,
                                           "metadata": {"resourceVersion": str(since)}})
                        with world.lock:
                            world.stats["bookmarks"] += 1
                        next_bookmark = time.monotonic() + BOOKMARK_EVERY
            finally:
                with world.lock:
                    world.stats["watches_open"] -= 1
        finally:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18445, help="0: any free port (printed)")
    parser.add_argument("--expire-every", type=int, default=60,
                        help="seconds between expiries of one churned kind's watches (0: never)")
    parser.add_argument("--ticks", type=int, default=0, help="stop changing after this many (0: never)")
    args = parser.parse_args()
    Handler.world = World(args.expire_every)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True

    def churn():
        start = time.monotonic()
        while not args.ticks or Handler.world.stats["tick"] < args.ticks:
            # On whole seconds since start: a tick late under load does not drift.
            time.sleep(max(0.0, start + Handler.world.stats["tick"] + 1 - time.monotonic()))
            Handler.world.tick()

    threading.Thread(target=churn, daemon=True).start()
    print(f"soak-apiserver: http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
