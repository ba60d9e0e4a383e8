"""S3 settings sent to Ray workers carry no secret; the worker takes it from its environment."""

from __future__ import annotations

import pytest

from vigil.config import S3_SECRET_ENV, ConfigError, S3Settings


def test_for_workers_leaves_the_secret_out_and_in_worker_reads_it_from_the_environment(monkeypatch):
    s3 = S3Settings(endpoint="minio:9000", access_key="vigil", secret_key="t0p-s3cret")
    plain = s3.for_workers()
    assert "t0p-s3cret" not in str(plain) and "secret_key" not in plain
    assert plain["endpoint"] == "minio:9000" and plain["access_key"] == "vigil"
    monkeypatch.setenv(S3_SECRET_ENV, "t0p-s3cret")
    back = S3Settings.in_worker(plain)
    assert back == s3


def test_a_worker_without_the_secret_in_its_environment_is_told_which_variable(monkeypatch):
    monkeypatch.delenv(S3_SECRET_ENV, raising=False)
    with pytest.raises(ConfigError, match="VIGIL_S3__SECRET_KEY is not set in this Ray worker"):
        S3Settings.in_worker(S3Settings(endpoint="minio:9000").for_workers())


def test_the_published_s3_secret_is_refused_for_a_configured_store_outside_development(tmp_path, monkeypatch):
    from vigil.config import load_settings

    monkeypatch.delenv("VIGIL_ENVIRONMENT", raising=False)  # the tests' own development setting
    monkeypatch.delenv(S3_SECRET_ENV, raising=False)

    cfg = tmp_path / "c.yaml"
    cfg.write_text("environment: production\ns3: {endpoint: 'minio:9000'}\n")
    with pytest.raises(ConfigError, match="s3.secret_key is the published default for s3.endpoint minio:9000"):
        load_settings(cfg)
    cfg.write_text("environment: production\ns3: {endpoint: 'minio:9000', secret_key: own-secret}\n")
    assert load_settings(cfg).s3.secret_key.get_secret_value() == "own-secret"
    cfg.write_text("environment: production\n")  # the embedded store (no endpoint): loopback only, allowed
    assert load_settings(cfg).s3.endpoint is None
    cfg.write_text("environment: development\ns3: {endpoint: 'minio:9000'}\n")
    assert load_settings(cfg).s3.endpoint == "minio:9000"
