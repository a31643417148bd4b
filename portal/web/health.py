"""Endpoints for load balancers and monitoring: ``/healthz`` (the process answers), ``/readyz`` (database,
Redis and the storage root are usable: 503 with the reason otherwise) and ``/metrics`` (Prometheus).

``/metrics`` is not public: it answers a bearer token (``METRICS_TOKEN``) or clients whose address lies in
``METRICS_ALLOW`` (CIDRs); with neither configured it answers nobody, except loopback in the demo. The
allow-list matches the address of the direct peer: behind a reverse proxy on the same host every client
would look local, so there either use the token or let Prometheus reach the app server directly.
"""

from __future__ import annotations

import hmac
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..check import probe_database, probe_redis, probe_storage
from ..metrics import registry_for

bp = Blueprint("health", __name__)

DEMO_ALLOW = ("127.0.0.1/32", "::1/128")
NO_STORE = {"Cache-Control": "no-store"}


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    """Check the allow-list when the app is built (a typo must stop the start, not open or close /metrics
    silently) and give the app its metrics registry."""
    allowed_networks(state.app.config)
    state.app.extensions["lifeboat_metrics"] = registry_for(state.app.config)


def allowed_networks(config: Any) -> list[IPv4Network | IPv6Network]:
    raw = config.get("METRICS_ALLOW") or []
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not raw and config.get("DEMO"):
        raw = list(DEMO_ALLOW)
    try:
        return [ip_network(str(entry), strict=False) for entry in raw]
    except ValueError as exc:
        raise RuntimeError(f"LIFEBOAT_METRICS_ALLOW: {exc}") from None


@bp.route("/healthz")
def healthz() -> Response:
    """Liveness: the process serves requests. Deliberately checks nothing else, so a database outage does
    not get every web process restarted."""
    return Response('{"status": "ok"}\n', mimetype="application/json", headers=NO_STORE)


@bp.route("/readyz")
def readyz() -> tuple[Response, int]:
    config = current_app.config
    problems = {"database": probe_database(), "redis": probe_redis(config), "storage": probe_storage(config)}
    failing = {name: why for name, why in problems.items() if why}
    body: dict[str, Any] = {"status": "unavailable" if failing else "ready",
                            "checks": {name: why or "ok" for name, why in problems.items()}}
    if failing:
        body["reason"] = "; ".join(f"{name}: {why}" for name, why in failing.items())
    answer = jsonify(body)
    answer.headers.update(NO_STORE)
    return answer, 503 if failing else 200


def _may_scrape() -> bool:
    token = str(current_app.config.get("METRICS_TOKEN") or "")
    if token:
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[len("Bearer "):].strip().encode(),
                                                               token.encode()):
            return True
    try:
        address = ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in allowed_networks(current_app.config))


@bp.route("/metrics")
def metrics() -> Response:
    if not _may_scrape():
        if current_app.config.get("METRICS_TOKEN"):
            return Response("metrics need a valid bearer token\n", status=401, mimetype="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="lifeboat-metrics"'})
        return Response("metrics are not served to this address (LIFEBOAT_METRICS_ALLOW, LIFEBOAT_METRICS_TOKEN)\n",
                        status=403, mimetype="text/plain")
    registry = current_app.extensions["lifeboat_metrics"]
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE})
