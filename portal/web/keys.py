"""The organisation key for a customer's own escrow: downloaded once by one of its admins, audited."""

from __future__ import annotations

from flask import Response, abort
from flask_login import current_user

from ..auth.guards import login_required
from ..services import keys
from . import bp


@bp.route("/organisation/key", methods=["POST"])
@login_required
def organisation_key_export() -> Response:
    """The key file of the signed-in admin's organisation (its encrypted backups open with it anywhere).

    Only the organisation's own admins, never staff: the provider holds the key already, the export is for the
    customer. Shown once (a second export is refused until the key is rotated) and audited.
    """
    user = current_user
    if not user.is_customer_admin or user.organisation is None:
        abort(403)
    text = keys.export(user.organisation, user)
    response = Response(text, mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="lifeboat-{user.organisation.slug}.key"'
    response.headers["Cache-Control"] = "no-store"
    return response
