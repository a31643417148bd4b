"""Who may see what: every query for tenant data goes through here, so isolation lives in one place.

Operators see everything; account managers the organisations assigned to them; customers their own.
An object outside a user's reach is answered exactly like one that does not exist (404), so ids of other
tenants reveal nothing.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select

from ..errors import NotFound
from ..extensions import db
from ..models import VM, BackupPoint, Organisation, User
from ..security import MAX_ID

T = TypeVar("T")


def visible_org_ids(user: User) -> Select[Any] | None:
    """A subquery of organisation ids the user may see; None means all of them (operators)."""
    if user.is_operator:
        return None
    if user.is_account_manager:
        return select(Organisation.id).where(Organisation.account_manager_id == user.id)
    return select(Organisation.id).where(Organisation.id == (user.organisation_id or -1))


def scope_to_user(query: Select[T], org_column: Any, user: User) -> Select[T]:
    ids = visible_org_ids(user)
    return query if ids is None else query.where(org_column.in_(ids))


def organisations_for(user: User) -> list[Organisation]:
    query = scope_to_user(select(Organisation).order_by(Organisation.name), Organisation.id, user)
    return list(db.session.scalars(query))


def get_organisation(user: User, org_id: int) -> Organisation:
    _check_id(org_id)
    query = scope_to_user(select(Organisation).where(Organisation.id == org_id), Organisation.id, user)
    return _one_or_404(query)


def get_vm(user: User, vm_id: int) -> VM:
    _check_id(vm_id)
    query = scope_to_user(select(VM).where(VM.id == vm_id), VM.organisation_id, user)
    return _one_or_404(query)


def get_backup(user: User, vm: VM, backup_id: int) -> BackupPoint:
    _check_id(backup_id)
    query = select(BackupPoint).where(BackupPoint.id == backup_id, BackupPoint.vm_id == vm.id)
    return _one_or_404(query)


def get_user(user: User, user_id: int) -> User:
    _check_id(user_id)
    query = scope_to_user(select(User).where(User.id == user_id), User.organisation_id, user)
    return _one_or_404(query)


def _check_id(object_id: int) -> None:
    """Ids from forms and query strings: one that no row can have (ids are 32-bit) is 404 like any unknown one,
    not a database error."""
    if not 1 <= object_id <= MAX_ID:
        raise NotFound()


def _one_or_404(query: Select[T]) -> T:
    found = db.session.scalars(query).first()
    if found is None:
        raise NotFound()
    return found
