"""Keep a single-machine Ray Serve on loopback.

Ray Serve 2.60 replicas start an inter-deployment gRPC server hard-wired to ``[::]:0``
(all interfaces; ``ray/serve/_private/replica.py``), and ingress replicas a direct-ingress
gRPC server on ``[::]:port`` (``grpc_util.start_grpc_server``), whatever the node IP. The embedded
stack promises that nothing listens beyond 127.0.0.1, so when ``VIGIL_LOOPBACK_ONLY=1``
(set by ``vigil up``/``demo`` before Ray starts, inherited by every Ray worker) the
replica binds that server to 127.0.0.1 instead. Clusters never set the variable.
"""

from __future__ import annotations

import os

ENV = "VIGIL_LOOPBACK_ONLY"


def pin_serve_replicas_to_loopback() -> bool:
    if os.environ.get(ENV) != "1":
        return False
    try:
        from ray.serve._private import default_impl, replica
    except ImportError:  # Serve layout changed: nothing to patch; the integration test will tell
        return False
    return _wrap(replica, "add_port_to_grpc_server") and _wrap(default_impl, "add_grpc_address")


def _wrap(module, name: str) -> bool:  # noqa: ANN001
    original = getattr(module, name, None)
    if original is None:
        return False
    if getattr(original, "_vigil_loopback", False):
        return True

    def loopback_only(server, address: str, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if address.startswith("[::]:") or address.startswith("0.0.0.0:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return original(server, address, *args, **kwargs)

    loopback_only._vigil_loopback = True  # type: ignore[attr-defined]
    setattr(module, name, loopback_only)
    return True
