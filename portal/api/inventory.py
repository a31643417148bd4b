"""Inventory sync for operators: the same feed and rules as ``lifeboat inventory sync`` (never deletes; a
feed that would mark too many VMs missing is refused whole). Not for tokens restricted to some VMs (403)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from flask.views import MethodView
from flask_smorest import Blueprint

from ..services import inventory as service
from . import schemas as s
from .auth import current_user, require_scope
from .errors import ErrorSchema, api_error

blp = Blueprint("api_inventory", __name__, url_prefix="/api/v1", description="Inventory sync (operators)")

FEED_DOC = {"application/json": {"schema": {"type": "object", "description": "the inventory feed (see "
                                                                             "`lifeboat inventory export`)"}}}


def require_operator() -> None:
    if not current_user().is_operator:
        api_error(403, "inventory sync is for operators")


@blp.route("/inventory/sync")
class InventorySync(MethodView):
    @require_scope("inventory:write", organisation_wide=True)
    @blp.arguments(s.InventorySyncArgs, location="query")
    @blp.doc(requestBody={"required": True, "content": FEED_DOC})
    @blp.response(200, s.InventoryResultSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="refused (e.g. the mass-drop guard); nothing applied")
    @blp.alt_response(422, schema=ErrorSchema, description="the feed is not valid")
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Add and update organisations, resource groups, VMs and disks from a feed (JSON body)."""
        require_operator()
        document = request.get_json(silent=True)
        if document is None:
            api_error(422, "the body must be the inventory feed as JSON", "invalid_feed")
        result = service.sync(document, args["scope"], actor=current_user())  # FeedError 422, SyncRefused 409
        return {"status": "applied", "added": result.added, "updated": result.updated, "missing": result.missing,
                "returned": result.returned}


@blp.route("/inventory")
class InventoryExport(MethodView):
    @require_scope("inventory:write", organisation_wide=True)
    @blp.arguments(s.VMFilterArgs(only=("organisation",)), location="query")
    @blp.response(200, {"type": "object"}, description="the inventory as the feed `POST /inventory/sync` takes")
    def get(self, args: dict[str, Any]) -> Response:
        """The inventory as a feed (for an organisation slug, or all)."""
        require_operator()
        return jsonify(service.export(args.get("organisation") or "all"))
