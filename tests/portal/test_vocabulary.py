"""One vocabulary: the engine's trust maps onto the catalog's states once, and "a good point" is one rule that
the query condition and the Python property both follow."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import BackupPoint
from portal.models.backups import GOOD_STATES, STATE_OF_TRUST, STATES, PointState
from storage.manifest import Trust
from tests.fixtures.portal import make_org, make_point, make_vm


def test_every_engine_trust_has_one_catalog_state() -> None:
    assert set(STATE_OF_TRUST) == {t.value for t in Trust}
    assert set(STATE_OF_TRUST.values()) <= set(STATES)
    assert STATE_OF_TRUST[Trust.TRUSTED] == PointState.OK and STATE_OF_TRUST[Trust.DISTRUSTED] == "distrusted"


def test_the_good_point_query_and_property_agree(app) -> None:
    vm = make_vm(make_org())
    points = []
    for n, state in enumerate(STATES):
        for pending in (False, True):
            point = make_point(vm, revision=f"20261124T00000{n}Z-00000{int(pending)}", state=state)
            if pending:
                point.deletion_due_at = clock.now() + timedelta(days=1)
            points.append(point)
    db.session.commit()
    queried = set(db.session.scalars(select(BackupPoint.id).where(BackupPoint.good())))
    assert queried == {p.id for p in points if p.is_good}
    assert {p.state for p in points if p.is_good} == set(GOOD_STATES)
    assert all(p.deletion_due_at is None for p in points if p.is_good)
