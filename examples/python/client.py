#!/usr/bin/env python3
"""A replikit client in Python, on stubs generated from proto/ (see README.md beside this file).

Writes a key through one node, reads it back through another, carries the session token from
each response into the next request (read-your-writes and writes-follow-reads across nodes in a
causal keyspace; other keyspaces may answer with an empty token, which is passed on all the same),
and prints a node's Status. Prints one JSON object per step on stdout and exits 0 when every
check held, 1 when one did not, 2 when a call failed.

With --tls-ca (and --tls-cert/--tls-key: mutual TLS) it talks TLS, presenting its client
certificate (spiffe://<cluster-id>/client/<name>; docs/security.md). --expect-denied KEYSPACE
then also tries a get and a put in a keyspace the cluster's authz file does not grant it, and
checks that both are refused with PERMISSION_DENIED (a "denied" step each); --no-status skips the
Status call (which an authz file may not grant either).

    PYTHONPATH=examples/python/gen python3 examples/python/client.py \
        --target 127.0.0.1:7001 --target 127.0.0.1:7002 --keyspace default
    PYTHONPATH=examples/python/gen python3 examples/python/client.py \
        --target 127.0.0.1:7001 --tls-ca pki/ca.pem --tls-cert pki/client-app.pem --tls-key pki/client-app.key \
        --no-status --expect-denied other
"""

import argparse
import base64
import json
import sys
import uuid

import grpc

from replikit.v1 import cluster_service_pb2, cluster_service_pb2_grpc, kv_service_pb2, kv_service_pb2_grpc

TIMEOUT_S = 5.0


def channel(target, args):
    """A plaintext channel, or TLS (mutual TLS with --tls-cert/--tls-key) when --tls-ca is given."""
    if args.tls_ca is None:
        return grpc.insecure_channel(target)
    read = lambda path: open(path, "rb").read() if path else None
    creds = grpc.ssl_channel_credentials(read(args.tls_ca), read(args.tls_key), read(args.tls_cert))
    return grpc.secure_channel(target, creds)


def version_text(version):
    return f"{version.hlc.wall_time_ms}.{version.hlc.logical}@{version.node_id}"


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def token_text(token):
    return base64.b64encode(token).decode("ascii")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True, help="HOST:PORT of a node; give two to cross nodes")
    parser.add_argument("--keyspace", default="default")
    parser.add_argument("--tls-ca", help="PEM of the CA that signed the nodes' certificates: talk TLS")
    parser.add_argument("--tls-cert", help="PEM of this client's certificate (mutual TLS; needs --tls-key)")
    parser.add_argument("--tls-key", help="PEM of that certificate's private key")
    parser.add_argument("--expect-denied", metavar="KEYSPACE", help="check that a get and a put there are PERMISSION_DENIED")
    parser.add_argument("--no-status", action="store_true", help="skip the Status call")
    args = parser.parse_args()
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_cert is not None and args.tls_ca is None:
        parser.error("--tls-cert needs --tls-ca")

    first, second = args.target[0], args.target[-1]
    kv_first = kv_service_pb2_grpc.KvServiceStub(channel(first, args))
    kv_second = kv_service_pb2_grpc.KvServiceStub(channel(second, args))
    key = f"py-{uuid.uuid4().hex[:12]}".encode()
    failures = []

    try:
        # 1. Put through the first node.
        put = kv_first.Put(kv_service_pb2.PutRequest(keyspace=args.keyspace, key=key, value=b"one"), timeout=TIMEOUT_S)
        emit("put", node=first, key=key.decode(), version=version_text(put.version), sessionToken=token_text(put.session_token))

        # 2. Get through the second node, bringing the put's token: read-your-writes across nodes.
        get = kv_second.Get(
            kv_service_pb2.GetRequest(keyspace=args.keyspace, key=key, session_token=put.session_token), timeout=TIMEOUT_S
        )
        emit("get", node=second, found=get.found, value=get.value.decode(), sessionToken=token_text(get.session_token))
        if not get.found or get.value != b"one":
            failures.append(f"get through {second} returned found={get.found} value={get.value!r}, not b'one'")

        # 3. Put through the second node with the get's token (writes-follow-reads), then read it
        #    back through the first node with the newest token.
        put2 = kv_second.Put(
            kv_service_pb2.PutRequest(keyspace=args.keyspace, key=key, value=b"two", session_token=get.session_token),
            timeout=TIMEOUT_S,
        )
        emit("put", node=second, key=key.decode(), version=version_text(put2.version), sessionToken=token_text(put2.session_token))
        get2 = kv_first.Get(
            kv_service_pb2.GetRequest(keyspace=args.keyspace, key=key, session_token=put2.session_token), timeout=TIMEOUT_S
        )
        emit("get", node=first, found=get2.found, value=get2.value.decode(), sessionToken=token_text(get2.session_token))
        if not get2.found or get2.value != b"two":
            failures.append(f"get through {first} returned found={get2.found} value={get2.value!r}, not b'two'")

        # 4. The operator's view.
        if not args.no_status:
            cluster = cluster_service_pb2_grpc.ClusterServiceStub(channel(first, args))
            status = cluster.Status(cluster_service_pb2.StatusRequest(), timeout=TIMEOUT_S)
            emit(
                "status",
                node=status.node_id,
                cluster=status.cluster_id,
                version=status.version,
                members={m.node_id: cluster_service_pb2.MemberState.Name(m.state) for m in status.members},
                keyspaces={k.name: k.quorum_reachable for k in status.keyspaces},
                notServingReasons=list(status.not_serving_reasons),
            )
            if args.keyspace not in {k.name for k in status.keyspaces}:
                failures.append(f"Status does not list keyspace {args.keyspace}")
    except grpc.RpcError as err:
        emit("error", code=err.code().name, details=err.details())
        return 2

    # 5. Outside the grants: each call must be refused, and refused for that reason.
    if args.expect_denied is not None:
        denied_calls = [
            ("get", lambda: kv_first.Get(kv_service_pb2.GetRequest(keyspace=args.expect_denied, key=key), timeout=TIMEOUT_S)),
            ("put", lambda: kv_first.Put(kv_service_pb2.PutRequest(keyspace=args.expect_denied, key=key, value=b"no"), timeout=TIMEOUT_S)),
        ]
        for name, call in denied_calls:
            try:
                call()
                emit("denied", call=name, keyspace=args.expect_denied, code="OK", details="")
                failures.append(f"{name} in keyspace {args.expect_denied} succeeded; expected PERMISSION_DENIED")
            except grpc.RpcError as err:
                emit("denied", call=name, keyspace=args.expect_denied, code=err.code().name, details=err.details())
                if err.code() != grpc.StatusCode.PERMISSION_DENIED:
                    failures.append(f"{name} in keyspace {args.expect_denied} failed with {err.code().name}, not PERMISSION_DENIED")

    emit("done", ok=not failures, failures=failures)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
