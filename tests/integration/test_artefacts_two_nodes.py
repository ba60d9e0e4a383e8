"""Heads served by reference on a two-node Ray cluster (issue 25): the Encode replica runs on
the second node, which has no copy of the heads file (it exists only in the object store), and
fetches it by its ``s3://`` reference; what it encodes equals the trained model's encoding.

Ray runs in a child process (the session's Ray is already initialised in this one): a head
and a second node (``ray.cluster_utils.Cluster``, loopback only), SeaweedFS as the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import json, os, sys, tempfile
    from pathlib import Path
    import numpy as np, torch

    out, state = Path(sys.argv[1]), Path(sys.argv[2])
    from infra.embedded import EmbeddedStack
    from vigil.config import S3_SECRET_ENV, load_settings
    from vigil.objectstore import ObjectStore

    base = load_settings(None, state_dir=state, database={"url": f"sqlite:///{state / 'v.db'}"},
                         kafka={"bootstrap_servers": "127.0.0.1:9"})
    stack = EmbeddedStack(base, with_ray=False)
    s = stack.start()
    try:
        from vigil.model.anomaly import AnomalyModel
        from vigil.model.heads import save_heads

        trained = AnomalyModel.create("vigil-micro", timesformer=True)
        with torch.no_grad():
            for p in trained.head_modules()["video"].parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.2)
        local = state / "heads.pt"
        save_heads(trained, local)
        store = ObjectStore(s.s3)
        store.put("models/two-node/heads.pt", local.read_bytes())
        local.unlink()  # from now on the heads exist only in the object store
        frames = np.random.default_rng(3).integers(0, 255, (4, 48, 64, 3), dtype=np.uint8)
        want = trained.encode_frames([frames])[0].seg_emb

        os.environ[S3_SECRET_ENV] = s.s3.secret_key.get_secret_value()  # the nodes' environment
        import ray
        from ray import serve
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={
            "node_ip_address": "127.0.0.1", "num_cpus": 1, "include_dashboard": False})
        node2 = cluster.add_node(num_cpus=1, resources={"node2": 1}, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": 0})
        from services.scoring import serve_app

        dep = serve_app.Encode.options(
            num_replicas=1, ray_actor_options={"num_cpus": 0.5, "resources": {"node2": 0.5},
                                               "runtime_env": {"env_vars": {"VIGIL_ARTEFACT_CACHE": str(state / "cache-node2")}}},
            user_config={"heads": f"s3://{s.s3.bucket}/models/two-node/heads.pt", "object_store": s.s3.for_workers()})
        h = serve.run(dep.bind("vigil-micro", 1), name="two-node", route_prefix=None)
        got = h.encode_one.remote(frames).result(timeout_s=300).seg_emb
        st = h.stats.remote().result(timeout_s=60)
        cached = [str(p.relative_to(state)) for p in (state / "cache-node2").rglob("heads.pt")]
        out.write_text(json.dumps({
            "replica_node": st["node_id"], "node2": node2.node_id, "head": cluster.head_node.node_id,
            "max_abs_diff": float(np.abs(np.asarray(got) - want).max()),
            "zero_shot_diff": float(np.abs(AnomalyModel.create("vigil-micro").encode_frames([frames])[0].seg_emb - want).max()),
            "cached": cached, "local_copy_exists": local.exists()}))
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    finally:
        stack.stop()
''')


def test_a_replica_on_a_node_without_the_file_fetches_the_heads_by_reference(tmp_path):
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(tmp_path / "st")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and out.exists(), (proc.stdout[-3000:], proc.stderr[-5000:])
    r = json.loads(out.read_text())
    assert r["replica_node"] == r["node2"] != r["head"], r  # the replica ran on the second node
    assert not r["local_copy_exists"] and r["cached"], r  # fetched into that node's cache, by content hash
    assert r["zero_shot_diff"] > 1e-3, r  # the trained video head changes the encoding
    assert r["max_abs_diff"] < 1e-5, r  # and the replica ran it
    print(f"\ntwo nodes: replica on node2, heads fetched into {r['cached']}, |diff| {r['max_abs_diff']:.2e} "
          f"(zero-shot differs by {r['zero_shot_diff']:.3f})")
