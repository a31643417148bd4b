"""SLA tiers and organisations' tiers, for account managers and operators (customers: 403). Changing them is
organisation-wide, so a token restricted to some VMs may only read them."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from ..extensions import db
from ..models import SlaTier
from ..services import access, tiers
from . import schemas as s
from .auth import current_user, require_scope
from .errors import ErrorSchema, api_error
from .pagination import paginate

blp = Blueprint("api_tiers", __name__, url_prefix="/api/v1", description="SLA tiers (account managers, operators)")


def require_staff() -> None:
    user = current_user()
    if not user.is_staff:
        api_error(403, "SLA tiers are managed by account managers and operators")


def tier_json(tier: SlaTier) -> dict[str, Any]:
    return {"id": tier.id, **tiers.snapshot(tier)}


def _as_form(values: dict[str, Any]) -> dict[str, str]:
    """The service parses text (one set of messages for the page and the API)."""
    form = {k: ("on" if v else "") if isinstance(v, bool) else str(v) for k, v in values.items()}
    return form


def _get_tier(tier_id: int) -> SlaTier:
    tier = db.session.get(SlaTier, tier_id)
    if tier is None:
        api_error(404, "not found")
    return tier


@blp.route("/tiers")
class Tiers(MethodView):
    @require_scope("tiers:read")
    @blp.arguments(s.VMFilterArgs(only=("cursor", "limit")), location="query")
    @blp.response(200, s.TierPage)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """All SLA tiers."""
        require_staff()
        rows, cursor = paginate(select(SlaTier), [SlaTier.id], args)
        return {"items": [tier_json(t) for t in rows], "next": cursor}

    @require_scope("tiers:write", organisation_wide=True)
    @blp.arguments(s.TierInputSchema)
    @blp.response(201, s.TierSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="invalid values (why in `message` and `errors`)")
    def post(self, values: dict[str, Any]) -> dict[str, Any]:
        """Define a new tier."""
        require_staff()
        tier = tiers.create(current_user(), tiers.parse_form(_as_form(values)))  # TierError: 422 invalid_tier
        return tier_json(tier)


@blp.route("/tiers/<id:tier>")
class TierDetail(MethodView):
    @require_scope("tiers:read")
    @blp.response(200, s.TierSchema)
    def get(self, tier: int) -> dict[str, Any]:
        """One tier."""
        require_staff()
        return tier_json(_get_tier(tier))

    @require_scope("tiers:write", organisation_wide=True)
    @blp.arguments(s.TierInputSchema)
    @blp.response(200, s.TierChangeSchema)
    @blp.alt_response(422, schema=ErrorSchema, description="invalid values; nothing was saved")
    def patch(self, values: dict[str, Any], tier: int) -> dict[str, Any]:
        """Change a tier; every organisation on it is brought inside the new bounds (`clamped` says how)."""
        require_staff()
        row = _get_tier(tier)
        merged = {**tiers.snapshot(row), **values}
        clamps = tiers.update(current_user(), row, tiers.parse_form(_as_form(merged)))  # TierError: 422 invalid_tier
        return {"tier": tier_json(row), "clamped": {str(k): v for k, v in clamps.items()}}


@blp.route("/organisations/<id:organisation>/tier")
class OrganisationTier(MethodView):
    @require_scope("tiers:write", organisation_wide=True)
    @blp.arguments(s.OrganisationTierSchema)
    @blp.response(200, s.OrganisationSchema)
    def put(self, body: dict[str, Any], organisation: int) -> dict[str, Any]:
        """Move an organisation (one you manage) to a tier; its VMs' policies are clamped to it."""
        require_staff()
        org = access.get_organisation(current_user(), organisation)
        tier = _get_tier(body["tier"]) if body["tier"] is not None else None
        clamped = tiers.assign(current_user(), org, tier)
        return {"id": org.id, "slug": org.slug, "name": org.name, "tier": tier.name if tier else None,
                "clamped": clamped}
