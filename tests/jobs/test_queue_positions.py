"""Queue positions and ETAs (issue 11: 2, 3). One definition, computed once (``portal.services.eta``):

- position = 1 + the restores that will start before this one, the same number on the restore page, the
  status page, the dashboard during a disaster and the API;
- the ETA adds the work ahead (what is left of running restores, then the queued ones before it) to the
  restore's own time, at the measured throughput; with nothing measured it is unknown, never invented.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from portal import clock
from portal.extensions import db
from portal.models import Restore
from portal.services import disaster, runs, tokens
from tests.fixtures.portal import make_point, make_vm

MiB = 1 << 20
BEFORE = re.compile(r"Queue position: <strong>(\d+)</strong> \((\d+) restore\(s\) will start before this one\)")


def _queue(world: dict[str, Any]) -> dict[str, Restore]:
    """globex's shop-1 running, shop-2 waiting (normal), then a disaster run for acme: web-1 (critical) and
    staging-api (high). The order workers take them: web-1, staging-api, shop-2."""
    db.session.delete(world["acme_restore"])  # the route matrix's sample row
    db.session.commit()
    globex, admin = world["globex"], world["globex_admin"]
    shop1 = runs.request_restore(admin, world["globex_vm"], world["globex_point"], "full")
    shop1.state, shop1.started_at, shop1.bytes_total, shop1.bytes_done = "running", clock.now(), 400 * MiB, 100 * MiB
    db.session.commit()  # as a worker has it
    shop2_vm = make_vm(globex, "shop-2")
    shop2 = runs.request_restore(admin, shop2_vm, make_point(shop2_vm, size_bytes=200 * MiB), "full")
    make_point(world["acme_staging"], size_bytes=300 * MiB)
    run = disaster.start(world["operator"], disaster.Scope.parse(f"organisation:{world['acme'].id}"), clock.now(),
                         workers=1)
    acme = {r.vm.name: r for _, r in disaster.restores_of(run)}
    return {"shop-1": shop1, "shop-2": shop2, "web-1": acme["web-1"], "staging-api": acme["staging-api"]}


def _api(client: Any, user: Any, restore: Restore) -> dict[str, Any]:
    _, secret = tokens.create_token(user, ["restores:read"], name=f"t{restore.id}")
    answer = client.get(f"/api/v1/restores/{restore.id}", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200
    return answer.json


def _dashboard_positions(page: str) -> dict[str, str]:
    section = page.split('<table class="disaster-positions">', 1)[1].split("</table>", 1)[0]
    return dict(re.findall(r'<tr data-vm="([^"]+)">.*?<td data-state="[^"]+">[^<]*</td><td>([^<]*)</td>',
                           section, re.S))


def _status_positions(page: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-vm="([^"]+)" data-position="([^"]*)">', page))


def test_one_position_on_the_restore_page_status_page_dashboard_and_api(queues, world, client, auth) -> None:
    restores = _queue(world)
    expected = {"web-1": 1, "staging-api": 2, "shop-2": 3}  # shop-1 runs: it has started, no position
    for user, names in ((world["acme_admin"], ("web-1", "staging-api")), (world["globex_admin"], ("shop-2",))):
        auth.login(user)
        status = _status_positions(client.get("/status").get_data(as_text=True))
        dashboard = _dashboard_positions(client.get("/").get_data(as_text=True)) if user.organisation.slug == "acme" \
            else None
        for name in names:
            restore = restores[name]
            page = client.get(f"/restores/{restore.id}").get_data(as_text=True)
            position, before = (int(n) for n in BEFORE.search(page).groups())  # type: ignore[union-attr]
            assert (position, before) == (expected[name], expected[name] - 1)
            assert int(status[name]) == position
            assert _api(client, user, restore)["position"] == position
            if dashboard is not None:
                assert int(dashboard[name]) == position
        auth.logout()
    auth.login(world["globex_admin"])
    running = client.get(f"/restores/{restores['shop-1'].id}").get_data(as_text=True)
    assert "Queue position" not in running and _status_positions(client.get("/status").get_data(as_text=True))[
        "shop-1"] == ""


def test_eta_is_unknown_until_a_restore_is_measured_then_adds_the_work_ahead(queues, world, client, auth) -> None:
    restores = _queue(world)
    auth.login(world["acme_admin"])
    staging = restores["staging-api"]
    page = client.get(f"/restores/{staging.id}").get_data(as_text=True)
    assert "ETA: unknown (no restore measured yet)" in page and "0.0 min" not in page
    assert _api(client, world["acme_admin"], staging)["eta_seconds"] is None
    assert 'unknown (no restore measured yet)' in client.get("/status").get_data(as_text=True)

    # A finished full restore measures 1 MiB/s (100 MiB in 100 s).
    now = clock.now()
    measured = Restore(vm_id=world["acme_vm"].id, backup_point_id=world["acme_point"].id, kind="full", state="done",
                       started_at=now - timedelta(seconds=100), finished_at=now, bytes_total=100 * MiB)
    db.session.add(measured)
    db.session.commit()
    # One worker: shop-1 has 300 MiB left, then web-1 (1 GiB, its point's size), then staging-api (300 MiB).
    web_size = restores["web-1"].backup_point.size_bytes
    assert _api(client, world["acme_admin"], restores["web-1"])["eta_seconds"] == round((300 * MiB + web_size) / MiB,
                                                                                        1)
    assert _api(client, world["acme_admin"], staging)["eta_seconds"] == round((600 * MiB + web_size) / MiB, 1)
    page = client.get(f"/restores/{staging.id}").get_data(as_text=True)
    minutes = round((600 * MiB + web_size) / MiB / 60)
    assert f"ETA: about {minutes} min, the work ahead included, at 1.0 MiB/s" in page
