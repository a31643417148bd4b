"""Disaster mode and fire drills: operators only (others get 403, anonymous the sign-in page)."""

from __future__ import annotations

from typing import Any

from . import Case, signed_in

OPERATOR = signed_in(403, operator=200)
NOT_FOUND = signed_in(403, operator=404)


def _run(w: dict[str, Any]) -> int:
    """A disaster run row for the board (made once per world; the planner's POST is tested elsewhere)."""
    if "disaster_run" not in w:
        from portal import clock
        from portal.extensions import db
        from portal.models import DisasterRestore, DisasterRun

        run = DisasterRun(scope="all", scope_label="everything", point_in_time=clock.now(), workers=2,
                          summary={"planned": 1, "missing": [w["acme_staging"].id]}, started_by="operator")
        db.session.add(run)
        db.session.flush()
        db.session.add(DisasterRestore(run_id=run.id, restore_id=w["acme_restore"].id, position=1))
        db.session.commit()
        w["disaster_run"] = run.id
    return int(w["disaster_run"])


def _drill(w: dict[str, Any]) -> int:
    if "fire_drill" not in w:
        from portal.extensions import db
        from portal.models import FireDrill

        drill = FireDrill(vm_id=w["acme_vm"].id, backup_point_id=w["acme_point"].id, requested_by="operator",
                          job_id="drill-test")
        db.session.add(drill)
        db.session.commit()
        w["fire_drill"] = drill.id
    return int(w["fire_drill"])


ROUTES = {
    "operations.disaster_planner": [
        Case("GET", lambda w: "/operations/disaster", OPERATOR),
        Case("GET", lambda w: "/operations/disaster?scope=all", OPERATOR),
        Case("GET", lambda w: f"/operations/disaster?scope=organisation:{w['acme'].id}&workers=3", OPERATOR),
        Case("GET", lambda w: "/operations/disaster?scope=pool:nope", signed_in(403, operator=400)),
        Case("GET", lambda w: "/operations/disaster?scope=all&at=yesterday", signed_in(403, operator=400)),
    ],
    # Valid starts queue restores in Redis: tests/jobs/test_disaster.py covers them.
    "operations.disaster_start": [
        Case("POST", lambda w: "/operations/disaster", signed_in(403, operator=422),
             data=lambda w: {"scope": "all", "workers": "0"}),
    ],
    "operations.disaster_board": [
        Case("GET", lambda w: f"/operations/disaster/{_run(w)}", OPERATOR),
        Case("GET", lambda w: "/operations/disaster/999999", NOT_FOUND),
    ],
    "operations.drills_page": [Case("GET", lambda w: "/operations/drills", OPERATOR)],
    "operations.drill_request": [
        Case("POST", lambda w: "/operations/drills", signed_in(403, operator=400), data=lambda w: {"vm": ""}),
        Case("POST", lambda w: "/operations/drills", NOT_FOUND, data=lambda w: {"vm": "999999"}),
    ],
    "operations.drill_detail": [
        Case("GET", lambda w: f"/operations/drills/{_drill(w)}", OPERATOR),
        Case("GET", lambda w: "/operations/drills/999999", NOT_FOUND),
    ],
}
