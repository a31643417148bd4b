"""/healthz, /readyz and who may read /metrics (against a real Redis, and a closed port for a dead one)."""

from __future__ import annotations

import pytest
from flask import Flask

from portal.app import create_app

CLOSED_PORT = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused at once


def test_healthz_answers_without_checking_anything(client) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json == {"status": "ok"}


def test_readyz_is_ready_with_database_redis_and_storage_root(app, client, queues, tmp_path) -> None:
    (tmp_path / "repositories").mkdir()
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "ready"
    assert answer.json["checks"] == {"database": "ok", "redis": "ok", "storage": "ok"}


def test_readyz_is_503_with_the_reason_when_redis_is_unreachable(app, client, tmp_path) -> None:
    (tmp_path / "repositories").mkdir()
    app.config["REDIS_URL"] = CLOSED_PORT
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["status"] == "unavailable"
    assert answer.json["checks"]["database"] == "ok" and answer.json["checks"]["storage"] == "ok"
    assert answer.json["reason"].startswith("redis: ") and "Connection" in answer.json["reason"]


def test_readyz_is_503_without_the_storage_root(app, client, queues) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "storage root" in answer.json["reason"] and answer.json["checks"]["redis"] == "ok"


def test_metrics_are_refused_by_default(client) -> None:
    answer = client.get("/metrics")
    assert answer.status_code == 403 and b"LIFEBOAT_METRICS_ALLOW" in answer.data


def test_metrics_with_a_token(app, client) -> None:
    app.config["METRICS_TOKEN"] = "s3cret-scrape-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"})
    assert answer.status_code == 200 and b"lifeboat_backup_runs" in answer.data
    assert answer.headers["Content-Type"].startswith("text/plain; version=")


def test_metrics_by_network_allow_list(app, client) -> None:
    app.config["METRICS_ALLOW"] = ["10.0.0.0/8", "2001:db8::/32"]
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "2001:db8::5"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.168.1.10"}).status_code == 403
    assert client.get("/metrics").status_code == 403  # 127.0.0.1 is not on the list
    app.config["METRICS_ALLOW"] = "127.0.0.0/8, 10.0.0.0/8"  # as a plain environment variable would give it
    assert client.get("/metrics").status_code == 200


def test_the_demo_serves_metrics_to_loopback_only(app, database_url, tmp_path) -> None:
    demo = create_app({"TESTING": True, "DEMO": True, "SQLALCHEMY_DATABASE_URI": database_url,
                       "STORAGE_ROOT": str(tmp_path / "repositories")})
    with demo.test_client() as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 403
    _dispose(demo)


def test_a_bad_allow_list_stops_the_start(database_url) -> None:
    with pytest.raises(RuntimeError, match="METRICS_ALLOW"):
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "METRICS_ALLOW": ["10.0.0.0/33"]})


def _dispose(other: Flask) -> None:
    from portal.extensions import db

    with other.app_context():
        db.engine.dispose()
