"""Migration 0013 on a database with notices: every notice becomes a notification and shows where it showed."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from portal.app import create_app
from portal.extensions import db
from portal.models import VM, Organisation, Policy, User
from portal.services import deletions, notify, schedule
from tests.fixtures.portal import make_org, make_point, make_user, notices

T0 = datetime(2026, 11, 20, 9, 0)
OLD = [  # kind, message, created, expires, dismissed (organisation and VM ids filled in below)
    ("deletion:vm:{vm}", "VM web-1 will be deleted on 2026-12-01 09:00 UTC; undo in the recycle bin.",
     T0, T0 + timedelta(days=11), None),
    ("deletion:backup:{point}", "Backup point x will be deleted on 2026-11-21 UTC; undo in the recycle bin.",
     T0, T0 + timedelta(hours=20), T0 + timedelta(hours=1)),
    ("rpo_missed:{vm}", "web-1 has no good backup within its RPO of 120 minutes", T0, None, None),
    ("tier_change", "Your tier changed from Premium to Basic on 2026-11-20. No VM policy needed changing.",
     T0, None, None),
    ("deletion_blocked", "Backup point y was not deleted: the backup point is protected", T0,
     T0 + timedelta(days=14), None),
    ("sync_refused", "Inventory sync refused: would mark 2 of 2 known VMs", T0, None, None),
]


def _old_notices(connection: sa.Connection) -> list[tuple[object, ...]]:
    """The notices table's rows, times as datetimes (SQLite keeps the text it was given)."""
    rows = connection.execute(sa.text(
        "SELECT organisation_id, kind, message, created_at, expires_at, dismissed_at FROM notices ORDER BY id"))
    return [(*row[:3], *(datetime.fromisoformat(t) if t else None for t in row[3:])) for row in rows]


def vm_without_disks(org: Organisation, name: str) -> VM:
    """A VM row as the schema at 0012 holds it: its disks are left out, as later migrations add disk columns
    that the models know and the old table does not."""
    vm = VM(organisation=org, name=name, environment="production", size_bytes=10 << 30)
    vm.policy = Policy(rpo_minutes=120)
    db.session.add(vm)
    db.session.commit()
    return vm


def test_notices_are_carried_over_and_shown_as_before(tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/old.db",
                      "STORAGE_ROOT": str(tmp_path / "repositories")})
    with app.app_context():
        upgrade(revision="0012_issue12")
        acme = make_org("acme")
        admin = make_user("admin@acme.example", "customer_admin", acme)
        vm = vm_without_disks(acme, "web-1")
        point = make_point(vm, created_at=T0)
        with db.engine.begin() as connection:
            for kind, message, created, expires, dismissed in OLD:
                connection.execute(sa.text(
                    "INSERT INTO notices (organisation_id, kind, message, created_at, expires_at, dismissed_at) "
                    "VALUES (:org, :kind, :message, :created, :expires, :dismissed)"),
                    {"org": acme.id, "kind": kind.format(vm=vm.id, point=point.id), "message": message,
                     "created": created, "expires": expires, "dismissed": dismissed})
            before = _old_notices(connection)
        ids = {"org": acme.id, "admin": admin.id, "vm": vm.id, "point": point.id}
        db.session.remove()

        upgrade()
        assert "notices" not in sa.inspect(db.engine).get_table_names()
        carried = notices().order_by("id").all()
        assert [(n.kind, n.dedup_key) for n in carried] == [
            ("deletion.scheduled", f"vm:{ids['vm']}"), ("deletion.scheduled", f"backup:{ids['point']}"),
            ("rpo.missed", f"vm:{ids['vm']}"), ("tier.changed", f"org:{ids['org']}"), ("deletion.blocked", ""),
            ("sync_refused", "")]
        assert [(n.message, n.created_at, n.expires_at, n.dismissed_at) for n in carried] == [
            (message, created, expires, dismissed) for _, message, created, expires, dismissed in OLD]
        assert all(n.organisation_id == ids['org'] and n.state == "sent" for n in carried)
        assert carried[2].vm_id == ids['vm'] and carried[2].vm_name == "web-1"

        # the banner shows the deletion due within a day that is not dismissed, as it did from the notice
        [banner] = deletions.upcoming_notices(db.session.get(User, ids['admin']), now=T0 + timedelta(days=10))
        assert banner.message == OLD[0][1]
        assert deletions.upcoming_notices(db.session.get(User, ids['admin']), now=T0) == []  # the other: dismissed
        # the RPO episode goes on: no second notice while it is missed, ended once the VM is within its RPO
        assert [n.vm_id for n in notify.open_notices(notify.RPO_NOTICE)] == [ids['vm']]
        result = schedule.TickResult()
        schedule._rpo_notices(T0 + timedelta(hours=3), result)
        assert result.rpo_missed == [] and notices(kind="rpo.missed").count() == 1
        schedule._rpo_notices(T0 + timedelta(minutes=1), result)
        assert notices(kind="rpo.missed").one().dismissed_at == T0 + timedelta(minutes=1)

        downgrade(revision="0012_issue12")
        with db.engine.connect() as connection:
            after = _old_notices(connection)
            left = connection.execute(sa.text("SELECT count(*) FROM notifications")).scalar()
        db.engine.dispose()
    before[2] = (*before[2][:5], T0 + timedelta(minutes=1))  # the episode ended above
    assert [row[1:] for row in after] == [row[1:] for row in before] and left == 0
    assert all(row[0] == before[0][0] for row in after)
