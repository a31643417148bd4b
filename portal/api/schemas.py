"""Marshmallow schemas of the API: they validate input and describe every answer in the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime

import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from .pagination import page_schema

RESTORE_STATES = ("queued", "running", "done", "failed", "cancelled")


class UTCDateTime(f.DateTime):
    """RFC 3339 with the offset (the database keeps naive UTC)."""

    def _serialize(self, value, attr, obj, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return super()._serialize(value, attr, obj, **kwargs)


class StrictBoolean(f.Boolean):
    """true or false only (not "yes", 1 or "on"): a JSON API has booleans."""

    def _deserialize(self, value, attr, data, **kwargs):  # type: ignore[no-untyped-def]
        if not isinstance(value, bool):
            raise ma.ValidationError("must be true or false")
        return value


class Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class PolicySchema(ma.Schema):
    rpo_minutes = f.Integer()
    keep_hourly = f.Integer()
    keep_daily = f.Integer()
    keep_weekly = f.Integer()
    keep_monthly = f.Integer()
    business_critical = f.Boolean()
    excluded = f.Boolean()
    exclusion_reason = f.String()
    pre_hook = f.String()
    post_hook = f.String()


class PolicyPatchSchema(Strict):
    """Any of these; values outside the organisation's tier are refused whole (422, nothing saved)."""

    rpo_minutes = f.Integer(strict=True, validate=v.Range(min=0, max=10**6))
    keep_hourly = f.Integer(strict=True, validate=v.Range(min=0, max=10**6))
    keep_daily = f.Integer(strict=True, validate=v.Range(min=0, max=10**6))
    keep_weekly = f.Integer(strict=True, validate=v.Range(min=0, max=10**6))
    keep_monthly = f.Integer(strict=True, validate=v.Range(min=0, max=10**6))
    business_critical = StrictBoolean()
    excluded = StrictBoolean()
    exclusion_reason = f.String(validate=v.Length(max=1000))
    pre_hook = f.String(validate=v.Length(max=100))
    post_hook = f.String(validate=v.Length(max=100))


class BoundsSchema(ma.Schema):
    min_rpo_minutes = f.Integer()
    max_keep_hourly = f.Integer()
    max_keep_daily = f.Integer()
    max_keep_weekly = f.Integer()
    max_keep_monthly = f.Integer()
    business_critical_allowed = f.Boolean()


class DiskSchema(ma.Schema):
    name = f.String()
    size_bytes = f.Integer()


class VMDiskSchema(DiskSchema):
    missing_since = UTCDateTime(allow_none=True, metadata={
        "description": "set while the inventory feed no longer lists the disk: the VM's backups fail until it is "
                       "listed again or someone confirms its removal (`POST /vms/{vm}/disks/{id}/removal`)"})
    id = f.Integer(metadata={"description": "the disk's id (to confirm that a missing disk was removed)"})
    removal_due_at = UTCDateTime(allow_none=True, metadata={
        "description": "set when someone confirmed that the missing disk was removed on purpose: then the disk "
                       "stops being the VM's (its data stays in the older points); undo until then"})


class VMSchema(ma.Schema):
    id = f.Integer()
    name = f.String()
    organisation = f.String(metadata={"description": "the organisation's slug"})
    resource_group = f.String(allow_none=True)
    environment = f.String()
    size_bytes = f.Integer()
    disks = f.List(f.Nested(VMDiskSchema))
    policy = f.Nested(PolicySchema)
    tier = f.String(allow_none=True)
    bounds = f.Nested(BoundsSchema)
    priority_class = f.String(validate=v.OneOf(("critical", "high", "normal", "low")))
    priority_reason = f.String()
    backup_status = f.String(metadata={"description": "ok, late, missed, none or excluded"})
    last_backup_at = UTCDateTime(allow_none=True)
    missing_since = UTCDateTime(allow_none=True)
    deletion_due_at = UTCDateTime(allow_none=True)


class VMFilterArgs(ma.Schema):
    cursor = f.String(load_default=None, validate=v.Length(max=500))
    limit = f.Integer(load_default=50, validate=v.Range(min=1))
    organisation = f.String(load_default=None, validate=v.Length(max=64),
                            metadata={"description": "only this organisation (slug)"})
    environment = f.String(load_default=None, validate=v.Length(max=16))


class BackupSchema(ma.Schema):
    id = f.Integer()
    vm = f.Integer()
    revision = f.String()
    created_at = UTCDateTime()
    size_bytes = f.Integer()
    new_bytes = f.Integer()
    state = f.String(metadata={"description": "ok, verified, damaged or distrusted"})
    verified_at = UTCDateTime(allow_none=True)
    protected = f.Boolean()
    deletion_due_at = UTCDateTime(allow_none=True)
    disks = f.List(f.Nested(DiskSchema), metadata={"description": "every disk of the VM in this point, in backup "
                                                                  "order (empty until the catalog has read it)"})


class FileEntrySchema(ma.Schema):
    name = f.String()
    path = f.String()
    type = f.String()
    size = f.Integer(allow_none=True)
    mode = f.Integer(allow_none=True)
    uid = f.Integer(allow_none=True)
    gid = f.Integer(allow_none=True)
    mtime = f.Float(allow_none=True)
    target = f.String(allow_none=True)


FILES_PAGE = 2000  # a directory is read whole from the backup anyway; also the old, unpaged answer's cap


class FilesArgs(ma.Schema):
    path = f.String(load_default="/", validate=v.Length(min=1, max=4096),
                    metadata={"description": "an absolute directory path inside the backup: `/` lists the disks, "
                                             "`/DISK` a disk's partitions, `/DISK/p1/...` inside one (`/p1/...`: "
                                             "deprecated, disk `root` or the first)"})
    q = f.String(load_default="", validate=v.Length(max=200), metadata={"description": "search names below path"})
    cursor = f.String(load_default=None, validate=v.Length(max=500),
                      metadata={"description": "the `next` value of the previous page"})
    limit = f.Integer(load_default=FILES_PAGE, validate=v.Range(min=1),
                      metadata={"description": f"entries per page (default and at most {FILES_PAGE})"})


class FilesSchema(ma.Schema):
    """A list like every other (``items``, ``next``), plus the directory listed."""

    items = f.List(f.Nested(FileEntrySchema), required=True,
                   metadata={"description": "the directory's entries sorted by name (search: in tree order)"})
    next = f.String(required=True, allow_none=True,
                    metadata={"description": "cursor of the next page; null on the last page"})
    path = f.String(required=True)
    entries = f.List(f.Nested(FileEntrySchema), metadata={
        "deprecated": True, "description": "deprecated alias of `items` (this page), removed in the next release"})
    truncated = f.Boolean(metadata={
        "deprecated": True, "description": "deprecated: true when `next` is not null, removed in the next release"})


class TargetSchema(Strict):
    type = f.String(load_default="new", validate=v.OneOf(("new", "in_place", "in_vm")),
                    metadata={"description": "`new`: a new image next to the original; `in_place` (kinds `full`, "
                                             "`instant`): over the VM's disks, after a protected safety backup "
                                             "(undo: `POST /restores/{id}/undo`); `in_vm` (kind `files`): the "
                                             "files back into the disk they came from, at `path`"})
    path = f.String(load_default="", validate=v.Length(max=4096),
                    metadata={"description": "`in_vm`: the folder on the disk to put the files in (`/p1/restored`); "
                                             "empty: where they were"})
    confirm = f.String(load_default="", validate=v.Length(max=256),
                       metadata={"description": "`in_place`, `in_vm`: the VM's name, typed out: it overwrites what "
                                                "is on the VM's disk now (organisation administrators only)"})


class ConfirmSchema(Strict):
    confirm = f.String(required=True, validate=v.Length(max=256),
                       metadata={"description": "the VM's name, typed out: the undo overwrites its disk again"})


class RestoreRequestSchema(Strict):
    backup = f.Integer(required=True, strict=True, validate=v.Range(min=1, max=2**31 - 1),
                       metadata={"description": "the backup point's id"})
    kind = f.String(required=True, validate=v.OneOf(("full", "files", "instant")),
                    metadata={"description": "`full`: a copy; `files`: an archive of `paths`; `instant` (RBD disks): "
                                             "a new image usable at once, hydrated in the background"})
    paths = f.List(f.String(validate=v.Length(min=1, max=4096)), load_default=list,
                   validate=v.Length(max=1000), metadata={"description": "absolute paths (kind `files`) as the files "
                                                                         "list names them (`/DISK/p1/...`), all "
                                                                         "on one disk"})
    target = f.Nested(TargetSchema, load_default=lambda: {"type": "new"})
    disk = f.String(load_default="", validate=v.Length(max=128), metadata={
        "description": "kinds `full` and `instant`: restore only this disk of the point (its name in the "
                       "backup's `disks`); without it every disk, one output (image) each, usable together "
                       "(`instant`). The web pages' in-place restores, full or instant, take the same choice (the "
                       "API's target is `new`). Kind `files`: the disk of `paths` (implied by `/DISK/...` paths)"})


class RestoreSchema(ma.Schema):
    id = f.Integer()
    vm = f.Integer()
    backup = f.Integer()
    kind = f.String()
    paths = f.List(f.String())
    target = f.Dict()
    disk = f.String(metadata={"description": "the one disk restored; empty: every disk of the point"})
    state = f.String(validate=v.OneOf(RESTORE_STATES))
    phase = f.String(metadata={"description": "the step a running restore is on (the last step, once finished)"})
    outcome = f.String(metadata={"description": "for people: queued, running (step), finished, finished with N "
                                                "damaged chunk(s), failed: reason, cancelled"})
    position = f.Integer(allow_none=True, metadata={"description": "1 + the restores (any tenant's) that will "
                                                                   "start before this one; null unless queued"})
    priority_class = f.String()
    priority_reason = f.String()
    progress = f.Float(metadata={"description": "0.0 to 1.0"})
    bytes_done = f.Integer()
    bytes_total = f.Integer()
    eta_seconds = f.Float(allow_none=True, metadata={"description": "until it finishes, the work ahead included; "
                                                                     "null when unknown (nothing measured yet)"})
    error = f.String()
    report = f.Dict()
    created_at = UTCDateTime()
    started_at = UTCDateTime(allow_none=True)
    finished_at = UTCDateTime(allow_none=True)
    usable_at = UTCDateTime(allow_none=True, metadata={"description": "instant restores: when the new image could "
                                                                      "first be opened (a VM could start from it)"})
    download = f.String(allow_none=True, metadata={"description": "URL of the archive a finished file restore made "
                                                                  "(null for files put back into the VM's disk)"})


class RestoreFilterArgs(ma.Schema):
    cursor = f.String(load_default=None, validate=v.Length(max=500))
    limit = f.Integer(load_default=50, validate=v.Range(min=1))
    state = f.String(load_default=None, validate=v.OneOf(RESTORE_STATES))


class DownloadArgs(ma.Schema):
    path = f.List(f.String(validate=v.Length(min=1, max=4096)), required=True, validate=v.Length(min=1, max=1000),
                  metadata={"description": "absolute paths to include, as the files list names them, all on "
                                         "one disk (repeat the parameter)"})
    format = f.String(load_default="tar.gz", validate=v.OneOf(("tar.gz", "zip")))


class DeletionSchema(ma.Schema):
    kind = f.String()
    id = f.Integer()
    deletion_requested_at = UTCDateTime(allow_none=True)
    deletion_due_at = UTCDateTime(allow_none=True)
    message = f.String()


class AuditSchema(ma.Schema):
    id = f.Integer()
    actor = f.String()
    action = f.String()
    object = f.Dict(metadata={"description": "type, id and label of what changed"})
    organisation = f.Integer(allow_none=True)
    before = f.Dict(allow_none=True)
    after = f.Dict(allow_none=True)
    at = UTCDateTime()
    remote_addr = f.String()


class AuditFilterArgs(ma.Schema):
    cursor = f.String(load_default=None, validate=v.Length(max=500))
    limit = f.Integer(load_default=50, validate=v.Range(min=1))
    action = f.String(load_default=None, validate=v.Length(max=64))


class TierSchema(ma.Schema):
    id = f.Integer()
    name = f.String()
    min_rpo_minutes = f.Integer()
    max_keep_hourly = f.Integer()
    max_keep_daily = f.Integer()
    max_keep_weekly = f.Integer()
    max_keep_monthly = f.Integer()
    restore_priority = f.String()
    rto_minutes = f.Integer()
    business_critical_included = f.Boolean()


class TierInputSchema(Strict):
    name = f.String(validate=v.Length(min=1, max=80))
    min_rpo_minutes = f.Integer(strict=True)
    max_keep_hourly = f.Integer(strict=True)
    max_keep_daily = f.Integer(strict=True)
    max_keep_weekly = f.Integer(strict=True)
    max_keep_monthly = f.Integer(strict=True)
    restore_priority = f.String(validate=v.OneOf(("critical", "high", "normal", "low")))
    rto_minutes = f.Integer(strict=True)
    business_critical_included = StrictBoolean()


class TierChangeSchema(ma.Schema):
    tier = f.Nested(TierSchema)
    clamped = f.Dict(metadata={"description": "VM id -> field -> [old, new] for policies brought inside the tier"})


class OrganisationTierSchema(Strict):
    tier = f.Integer(required=True, allow_none=True, strict=True, validate=v.Range(min=1, max=2**31 - 1),
                     metadata={"description": "tier id or null"})


class OrganisationSchema(ma.Schema):
    id = f.Integer()
    slug = f.String()
    name = f.String()
    tier = f.String(allow_none=True)
    clamped = f.Dict()


class InventorySyncArgs(ma.Schema):
    scope = f.String(required=True, validate=v.Length(min=1, max=64),
                     metadata={"description": "an organisation slug, or `all`"})


class InventoryResultSchema(ma.Schema):
    status = f.String()
    added = f.Raw()
    updated = f.Raw()
    missing = f.Raw()
    returned = f.Raw()
    sync = f.Integer(allow_none=True)
    message = f.String()


VMPage = page_schema(VMSchema, "VMPage")
BackupPage = page_schema(BackupSchema, "BackupPage")
RestorePage = page_schema(RestoreSchema, "RestorePage")
AuditPage = page_schema(AuditSchema, "AuditPage")
TierPage = page_schema(TierSchema, "TierPage")
