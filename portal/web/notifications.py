"""The notification centre, notification preferences, and organisation webhooks (services/notify.py and
services/webhooks.py hold the rules).

Everyone sees only their own notifications (another user's id is a 404). Webhooks belong to an
organisation: its customer admins, its account manager and operators manage them; members get 403, and
another tenant's organisation or webhook is a 404 like any unknown id.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from ..auth.guards import login_required
from ..extensions import db
from ..models import Organisation, Webhook
from ..services import access, notify, webhooks
from ..services.notify import Preference, PreferenceError
from ..services.webhooks import WebhookError
from .pagination import page_arg, paginate

bp = Blueprint("notifications", __name__)

EMAIL_LABELS = {"off": "no email", "immediate": "email at once", "daily": "daily digest"}


@bp.app_context_processor
def _notification_helpers() -> dict[str, Any]:
    """``notification_unread()`` for the nav; the count query runs only when a template calls it."""

    def unread() -> int:
        return notify.unread_count(current_user) if current_user.is_authenticated else 0

    return {"notification_unread": unread}


# -- the centre -------------------------------------------------------------------------------------------

@bp.route("/notifications")
@login_required
def centre() -> str:
    page = page_arg()
    rows, pages = paginate(notify.inbox_query(current_user), page)
    orgs = access.organisations_for(current_user)[:20] if webhooks.may_manage(current_user) else []
    return render_template("notifications.html", rows=rows, page=page, pages=pages,
                           mails=notify.recent_mail(current_user), webhook_orgs=orgs)


@bp.route("/notifications/<int:notification_id>/read", methods=["POST"])
@login_required
def mark_read(notification_id: int) -> BaseResponse:
    if notify.own_notification(current_user, notification_id) is None:
        abort(404)
    notify.mark_read(current_user, notification_id)
    return redirect(url_for("notifications.centre"), 303)


@bp.route("/notifications/read", methods=["POST"])
@login_required
def mark_all_read() -> BaseResponse:
    count = notify.mark_read(current_user)
    flash(f"{count} notification(s) marked read.", "ok")
    return redirect(url_for("notifications.centre"), 303)


# -- preferences ------------------------------------------------------------------------------------------

def _render_preferences(prefs: dict[str, Preference], error: str = "", status: int = 200) -> tuple[str, int]:
    return render_template("notifications_preferences.html", prefs=prefs, kinds=notify.KINDS,
                           email_labels=EMAIL_LABELS, error=error), status


@bp.route("/notifications/preferences")
@login_required
def preferences() -> tuple[str, int]:
    return _render_preferences(notify.preferences_of(current_user))


@bp.route("/notifications/preferences", methods=["POST"])
@login_required
def preferences_save() -> tuple[str, int] | BaseResponse:
    choices = {kind: Preference(email=request.form.get(f"email-{kind}", "off"),
                                portal=request.form.get(f"portal-{kind}") == "on")
               for kind in notify.people_kinds(current_user)}
    try:
        notify.save_preferences(current_user, choices)
    except PreferenceError as exc:
        db.session.rollback()
        return _render_preferences(choices, str(exc), 422)
    flash("Notification preferences saved.", "ok")
    return redirect(url_for("notifications.preferences"), 303)


# -- webhooks ---------------------------------------------------------------------------------------------

def _require_manager() -> None:
    if not webhooks.may_manage(current_user):
        abort(403)


def _render_webhooks(org: Organisation, *, error: str = "", values: dict[str, Any] | None = None,
                     created: Webhook | None = None, status: int = 200) -> tuple[str, int]:
    return render_template("notifications_webhooks.html", org=org, hooks=webhooks.for_organisation(org),
                           deliveries=webhooks.deliveries(org), events=webhooks.EVENTS, kinds=notify.KINDS,
                           defaults=notify.WEBHOOK_DEFAULT_EVENTS, error=error, values=values or {},
                           created=created), status


@bp.route("/organisations/<int:org_id>/webhooks")
@login_required
def webhooks_page(org_id: int) -> tuple[str, int]:
    _require_manager()
    return _render_webhooks(access.get_organisation(current_user, org_id))


@bp.route("/organisations/<int:org_id>/webhooks", methods=["POST"])
@login_required
def webhook_create(org_id: int) -> tuple[str, int]:
    _require_manager()
    org = access.get_organisation(current_user, org_id)
    values: dict[str, Any] = {"url": request.form.get("url", ""), "description": request.form.get("description", ""),
                              "events": request.form.getlist("events")}
    try:
        hook = webhooks.create(current_user, org, values["url"], values["events"], values["description"],
                               request.form.get("secret", ""))
    except WebhookError as exc:
        db.session.rollback()
        return _render_webhooks(org, error=str(exc), values=values, status=422)
    return _render_webhooks(org, created=hook, status=201)  # the secret is shown this once, never flashed


def _hook(webhook_id: int) -> Webhook:
    _require_manager()
    hook = db.session.get(Webhook, webhook_id)
    if hook is None:
        abort(404)
    access.get_organisation(current_user, hook.organisation_id)  # another tenant's webhook: 404
    return hook


@bp.route("/webhooks/<int:webhook_id>/test", methods=["POST"])
@login_required
def webhook_test(webhook_id: int) -> BaseResponse:
    hook = _hook(webhook_id)
    if not hook.active:
        flash("Enable the webhook before testing it.", "error")
    else:
        row = webhooks.test(current_user, hook)
        flash(f"Test delivery #{row.id} queued; its status appears below.", "ok")
    return redirect(url_for("notifications.webhooks_page", org_id=hook.organisation_id), 303)


@bp.route("/webhooks/<int:webhook_id>/disable", methods=["POST"])
@login_required
def webhook_disable(webhook_id: int) -> BaseResponse:
    hook = webhooks.set_active(current_user, _hook(webhook_id), False)
    flash(f"Webhook {hook.url} disabled.", "ok")
    return redirect(url_for("notifications.webhooks_page", org_id=hook.organisation_id), 303)


@bp.route("/webhooks/<int:webhook_id>/enable", methods=["POST"])
@login_required
def webhook_enable(webhook_id: int) -> BaseResponse:
    hook = webhooks.set_active(current_user, _hook(webhook_id), True)
    flash(f"Webhook {hook.url} enabled.", "ok")
    return redirect(url_for("notifications.webhooks_page", org_id=hook.organisation_id), 303)
