"""``lifeboat store``: the storage engine's commands, working on a repository root without the portal.

Every command prints one JSON object with ``--json``. Bad input is one line on stderr and exit code 2;
a restore that met damage, or a verify that found some, exits 1. Every store command takes ``--key-file``
(an organisation key file; or LIFEBOAT_KEY_FILE): an encrypted repository is refused without it (exit 2),
except by ``verify --without-key``; a new repository backed up with it is encrypted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import wraps
from typing import Any, TypeVar

import click

from .backup import backup as run_backup
from .errors import StorageError, TargetExists
from .fsutil import temp_name
from .hooks import DEFAULT_TIMEOUT, Hooks
from .keys import KEY_FILE_ENV, KeyFile, KeyRing, default_keyring, set_default_keyring
from .manifest import ROOT_DISK
from .repository import Repository, has_repository, list_vms, stored_limit
from .restore import restore as run_restore
from .retention import DEFAULT_GRACE_SECONDS, forget, gc, set_protected
from .verify import verify as run_verify

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
wait_option = click.option(
    "--wait", type=click.FloatRange(min=0), default=None,
    help="Seconds to wait for a busy repository (default: backup and gc fail at once, others wait).",
)
disk_option = click.option("--disk", "disk", metavar="NAME", default=None,
                            help="The disk of the revision (needed when it has several).")
threads_option = click.option("--threads", type=click.IntRange(min=1, max=64), default=None,
                              help="Engine threads (default: one per core, at least 2).")


class BadDiskOption(StorageError):
    """invalid disk {!r}: give SOURCE or --disk NAME=SOURCE (file:PATH or rbd:POOL/IMAGE), once per disk"""


def fail(message: str, code: int = 2) -> None:
    click.echo(f"lifeboat: error: {message}", err=True)
    sys.exit(code)


def reports_errors(function: F) -> F:
    """Turn engine errors into one line on stderr and an exit code, never a traceback."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except StorageError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; run the same command again to continue", 130)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}")

    return wrapper  # type: ignore[return-value]


def warn(message: str) -> None:
    click.echo(f"lifeboat: warning: {message}", err=True)


def warn_unreadable(unreadable: dict[str, str]) -> None:
    """One line per manifest that was skipped because it cannot be read."""
    for revision_id, why in sorted(unreadable.items()):
        warn(f"revision {revision_id} skipped: {why}")


def emit(as_json: bool, document: dict[str, Any], human: str) -> None:
    if as_json:
        click.echo(json.dumps(document, sort_keys=True))
    else:
        click.echo(human)


def progress_printer(enabled: bool) -> Callable[[str, int, int], None] | None:
    if not enabled or not sys.stderr.isatty():
        return None
    last = [-1]

    def show(phase: str, done: int, total: int) -> None:
        percent = int(done * 100 / total) if total else 100
        if percent != last[0]:
            last[0] = percent
            end = "\n" if done >= total else ""
            click.echo(f"\r{phase}: {percent:3d}% of {total / 2**20:.0f} MiB", err=True, nl=False)
            click.echo(end, err=True, nl=False)

    return show


@click.group("store")
def store() -> None:
    """Back up, restore, verify and prune per-VM repositories under ROOT."""
    # The filesystem readers log what they find odd in damaged data; our errors already say it in one line.
    logging.getLogger("dissect").setLevel(logging.CRITICAL)


def parse_disks(source: str | None, disks: tuple[str, ...]) -> list[tuple[str, str]]:
    """The (name, spec) pairs of ``[SOURCE] [--disk NAME=SOURCE ...]``: SOURCE is the disk ``root``."""
    pairs = [(ROOT_DISK, source)] if source else []
    for item in disks:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise BadDiskOption(item)
        pairs.append((name, spec))
    if not pairs:
        raise BadDiskOption("")
    return pairs


@store.command("backup")
@click.argument("root")
@click.argument("vm")
@click.argument("source", required=False)
@click.option("--disk", "disks", multiple=True, metavar="NAME=SOURCE",
              help="A disk of the VM (repeatable); all are snapshotted under one freeze into one revision.")
@click.option("--tag", "tags", multiple=True, help="Tag the new revision (repeatable).")
@click.option("--pre-hook", help="Shell command run before the snapshot (e.g. fsfreeze in the guest).")
@click.option("--post-hook", help="Shell command run after the snapshot, always.")
@click.option("--hook-timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True)
@threads_option
@wait_option
@json_option
@reports_errors
def backup_command(root: str, vm: str, source: str | None, disks: tuple[str, ...], tags: tuple[str, ...],
                   pre_hook: str | None, post_hook: str | None, hook_timeout: float, threads: int | None,
                   wait: float | None, as_json: bool) -> None:
    """Back SOURCE (file:PATH or rbd:POOL/IMAGE, the disk 'root') and every --disk up as a new revision of VM."""
    if has_repository(root, vm) and os.environ.get(KEY_FILE_ENV) and \
            not Repository.open(root, vm, require_key=False).encrypted:
        warn(f"the repository of VM {vm!r} is not encrypted and stays so; the key is not used "
             "(convert it by copying it into an encrypted repository)")
    revision = run_backup(
        root, vm, parse_disks(source, disks), hooks=Hooks(pre_hook, post_hook, hook_timeout), tags=tags,
        threads=threads, wait=0.0 if wait is None else wait, progress=progress_printer(not as_json),
    )
    for warning in revision.stats.get("warnings", []):
        warn(warning)
    stats = revision.stats
    document = {"revision": revision.id, "vm": vm, "parent": revision.parent, "size": revision.size, **stats,
                "disks": [{**d.summary(), "stats": d.stats} for d in revision.disks]}
    names = ", ".join(f"{d.name} {d.size}" for d in revision.disks)
    emit(as_json, document,
         f"revision {revision.id}: {revision.size} bytes ({names}), read {stats['bytes_read']}, "
         f"wrote {stats['bytes_written']} ({stats['chunks_new']} new, {stats['chunks_reused']} reused, "
         f"{stats['chunks_zero']} zero chunks) in {stats['seconds']} s")


@store.command("list")
@click.argument("root")
@click.argument("vm", required=False)
@json_option
@reports_errors
def list_command(root: str, vm: str | None, as_json: bool) -> None:
    """List the revisions of VM (or the VMs under ROOT)."""
    if vm is None:
        vms = list_vms(root)
        emit(as_json, {"vms": vms}, "\n".join(vms))
        return
    repository = Repository.open(root, vm)
    revisions = repository.revisions()
    warn_unreadable(repository.unreadable)
    lines = [
        f"{r.id}  {r.created}  {r.size:>14}  {r.trust:<10}  {'protected' if r.protected else '':<9}  "
        f"{','.join(r.disk_names)}"
        for r in revisions
    ]
    emit(as_json, {"vm": vm, "revisions": [r.summary() for r in revisions], "unreadable": repository.unreadable},
         "\n".join(lines))


@store.command("restore")
@click.argument("root")
@click.argument("vm")
@click.argument("revision")
@click.argument("target")
@click.option("--force", is_flag=True, help="Overwrite an existing target.")
@click.option("--sync/--no-sync", default=True, show_default=True,
              help="Flush the output to stable storage before publishing it.")
@click.option("--limit-rate", type=click.IntRange(min=1), metavar="MIB",
              help="Write at most MIB mebibytes per second (leave the storage network room).")
@disk_option
@threads_option
@wait_option
@json_option
@reports_errors
def restore_command(root: str, vm: str, revision: str, target: str, force: bool, sync: bool,
                    limit_rate: int | None, disk: str | None, threads: int | None, wait: float | None,
                    as_json: bool) -> None:
    """Restore a disk of REVISION (or 'latest') of VM to TARGET (a path or rbd:POOL/IMAGE).

    A revision of several disks needs --disk NAME. An interrupted restore continues when the same command is
    run again.
    """
    result = run_restore(root, vm, revision, target, disk=disk, force=force, threads=threads, wait=wait, sync=sync,
                         progress=progress_printer(not as_json),
                         limit_bytes_per_second=limit_rate * 1024 * 1024 if limit_rate else None)
    damaged = "; ".join(f"{s}-{e}" for s, e in result.damaged)
    emit(as_json, result.as_dict(),
         f"restored disk {result.disk} of {result.revision} ({result.bytes} bytes) in {result.seconds} s"
         + (f"; DAMAGED byte ranges (zero-filled): {damaged}" if damaged else ""))
    if result.damaged:
        sys.exit(1)


@store.command("verify")
@click.argument("root")
@click.argument("vm")
@click.argument("revision", required=False)
@click.option("--without-key", is_flag=True,
              help="Encrypted repository without its key: check every chunk's outer hash and find missing ones.")
@threads_option
@wait_option
@json_option
@reports_errors
def verify_command(root: str, vm: str, revision: str | None, without_key: bool, threads: int | None,
                   wait: float | None, as_json: bool) -> None:
    """Re-read and re-hash every chunk of REVISION (default: all revisions). Exit 1 on damage."""
    result = run_verify(root, vm, revision, threads=threads, wait=wait, without_key=without_key)
    warn_unreadable(result.unreadable_reasons)
    what = "chunks" if result.contents_checked else "sealed chunks (outer hashes, without the key)"
    human = (f"checked {result.chunks_checked} {what} of {len(result.revisions_checked)} revisions: "
             + ("clean" if result.clean else
                f"{len(result.damaged_chunks)} damaged, distrusted: {', '.join(result.distrusted_revisions)}"))
    if result.unreadable_revisions:
        human += f"; manifests unreadable: {', '.join(result.unreadable_revisions)}"
    emit(as_json, result.as_dict(), human)
    if not result.clean:
        sys.exit(1)


@store.command("forget")
@click.argument("root")
@click.argument("vm")
@click.argument("revision")
@json_option
@reports_errors
def forget_command(root: str, vm: str, revision: str, as_json: bool) -> None:
    """Remove REVISION unless it is protected (its chunks go at the next gc)."""
    forgotten = forget(root, vm, revision)
    emit(as_json, {"revision": forgotten.id, "forgotten": True}, f"forgot {forgotten.id}")


def _protection_command(protected: bool) -> Callable[[str, str, str, bool], None]:
    @reports_errors
    def command(root: str, vm: str, revision: str, as_json: bool) -> None:
        changed = set_protected(root, vm, revision, protected)
        state = "protected" if protected else "unprotected"
        emit(as_json, {"revision": changed.id, "protected": protected}, f"{changed.id} {state}")

    return command


for _name, _flag, _help in (("protect", True, "Keep REVISION from being forgotten."),
                            ("unprotect", False, "Allow REVISION to be forgotten again.")):
    store.command(_name, help=_help)(
        click.argument("root")(click.argument("vm")(click.argument("revision")(
            json_option(_protection_command(_flag))))))


@store.command("gc")
@click.argument("root")
@click.argument("vm")
@click.option("--grace", type=click.FloatRange(min=0), default=DEFAULT_GRACE_SECONDS, show_default=True,
              help="Only delete unreferenced chunks older than this many seconds.")
@wait_option
@json_option
@reports_errors
def gc_command(root: str, vm: str, grace: float, wait: float | None, as_json: bool) -> None:
    """Delete chunks that no revision references and that are older than the grace period."""
    result = gc(root, vm, grace=grace, wait=0.0 if wait is None else wait)
    if result.unreadable_revisions:
        warn(f"no chunk deleted: the manifests of {', '.join(result.unreadable_revisions)} cannot be read and may "
             "reference any chunk; repair or remove them, then run gc again")
    emit(as_json, dict(result.__dict__),
         f"removed {result.chunks_removed} chunks ({result.bytes_removed} bytes); "
         f"kept {result.chunks_kept_young} younger than the grace period")


def _ls_line(entry: dict[str, Any]) -> str:
    mode = stat.filemode(entry["mode"])
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(entry["mtime"]))
    target = f" -> {entry['target']}" if entry.get("target") else ""
    return f"{mode} {entry['uid']:>5} {entry['gid']:>5} {entry['size']:>12} {when} {entry['name']}{target}"


@store.command("ls")
@click.argument("root")
@click.argument("vm")
@click.argument("revision")
@click.argument("path", default="/")
@disk_option
@json_option
@reports_errors
def ls_command(root: str, vm: str, revision: str, path: str, disk: str | None, as_json: bool) -> None:
    """List PATH inside a disk of REVISION (partitions are /p1, /p2, ...) without restoring the image."""
    from .browse import open_revision_disk  # the filesystem readers load only when needed
    with open_revision_disk(root, vm, revision, disk=disk) as opened:
        entry = opened.stat(path)
        entries = opened.list_dir(path) if entry.type == "dir" else [entry]
        listed = [e.to_json() for e in entries]
    emit(as_json, {"revision": revision, "disk": disk, "path": path, "entries": listed},
         "\n".join(_ls_line(e) for e in listed))


@store.command("get")
@click.argument("root")
@click.argument("vm")
@click.argument("revision")
@click.argument("path")
@click.argument("out")
@click.option("--force", is_flag=True, help="Overwrite an existing OUT.")
@click.option("--allow-damaged", is_flag=True,
              help="Return files on damaged chunks zero-filled (the damage is named on stderr).")
@click.option("--disk", "disk_name", metavar="NAME", default=None,
              help="The disk of the revision (needed when it has several).")
@reports_errors
def get_command(root: str, vm: str, revision: str, path: str, out: str, force: bool, allow_damaged: bool,
                disk_name: str | None) -> None:
    """Copy the file PATH out of a disk of REVISION to OUT; a directory becomes a tar archive. OUT '-' is stdout."""
    from .browse import open_revision_disk  # the filesystem readers load only when needed

    if out != "-" and os.path.lexists(out) and not force:
        raise TargetExists(out)
    with open_revision_disk(root, vm, revision, disk=disk_name) as disk:
        entry = disk.stat(path)
        if out == "-":
            _copy_out(disk, entry.type, path, sys.stdout.buffer, allow_damaged)
            return
        partial = temp_name(os.path.abspath(out))
        try:
            with open(partial, "wb") as handle:
                _copy_out(disk, entry.type, path, handle, allow_damaged)
            os.replace(partial, out)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)


def _copy_out(disk: Any, kind: str, path: str, sink: Any, allow_damaged: bool) -> None:
    if kind == "file":
        with disk.open_file(path, allow_damaged=allow_damaged) as source:
            shutil.copyfileobj(source, sink, 1024 * 1024)
    else:
        from .files import archive

        archive.write_tar(disk, [path], sink, allow_damaged=allow_damaged)


def address_value(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """HOST:PORT on the command line, checked by the engine's parser (so the message is the engine's)."""
    from .serve import BadAddress, parse_address

    if value is None:
        return None
    try:
        return parse_address(value)
    except BadAddress as exc:
        raise click.BadParameter(str(exc)) from None


def wait_for_stop() -> None:
    """Block until SIGTERM or SIGINT (Ctrl-C)."""
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    while not stop.wait(3600):
        pass


@store.command("serve")
@click.argument("root")
@click.argument("vm")
@click.argument("revision")
@click.option("--http", "http_address", callback=address_value, is_flag=False, flag_value="127.0.0.1:0",
              metavar="HOST:PORT",
              help="Serve over HTTP at HOST:PORT (alone: 127.0.0.1, any free port). The default.")
@click.option("--nbd", "nbd_address", callback=address_value, is_flag=False, flag_value="127.0.0.1:0",
              metavar="HOST:PORT",
              help="Serve over NBD through nbdkit at HOST:PORT (alone: 127.0.0.1, any free port).")
@click.option("--writable", is_flag=True,
              help="Let NBD clients write: writes go to a temporary copy-on-write overlay, never the repository.")
@click.option("--zero-damaged", is_flag=True,
              help="Answer damaged chunks with zeros (and report them) instead of an I/O error.")
@click.option("--url-base", metavar="URL", help="The HTTP address clients use (http://name:port), if not HOST:PORT.")
@wait_option
@json_option
@reports_errors
def serve_command(root: str, vm: str, revision: str, http_address: Any, nbd_address: Any, writable: bool,
                  zero_damaged: bool, url_base: str | None, wait: float | None, as_json: bool) -> None:
    """Serve REVISION (or 'latest') of VM as a raw disk until SIGTERM, read-only from verified chunks.

    Prints the URLs once serving (with --json one line: {"http": URL, "nbd": URL}); when stopped, what was
    served. The URLs carry a random secret: anyone who has one can read the disk. Exit 1 if damage was met.
    """
    from .serve import Serving, parse_address

    if writable and nbd_address is None:
        fail("--writable needs --nbd: HTTP clients cannot write")
    if http_address is None and nbd_address is None:
        http_address = parse_address("127.0.0.1:0")
    with Serving(root, vm, revision, http=http_address, nbd=nbd_address, writable=writable,
                 zero_damaged=zero_damaged, url_base=url_base, wait=wait) as serving:
        emit(as_json, serving.urls, "\n".join(f"{kind}: {url}" for kind, url in serving.urls.items()))
        sys.stdout.flush()
        wait_for_stop()
        report = serving.report()
    damaged = "; ".join(f"{s}-{e}" for s, e in report["damaged"])
    emit(as_json, {"event": "stopped", **report},
         f"stopped: served {report['bytes_served']} bytes" + (f"; DAMAGED byte ranges: {damaged}" if damaged else ""))
    if report["damaged"]:
        sys.exit(1)


@store.command("instant-restore")
@click.argument("root")
@click.argument("vm")
@click.argument("revision")
@click.argument("target")
@click.option("--listen", "listen", callback=address_value, metavar="HOST:PORT",
              help="Where to serve the backup point over HTTP while the image hydrates (port 0: any free port).")
@click.option("--url-base", metavar="URL",
              help="The address the hypervisors reach that server at (http://name:port), if not --listen's.")
@click.option("--abort", "abort", is_flag=True, help="Remove an interrupted instant restore's image instead.")
@click.option("--source-timeout", type=click.FloatRange(min=0.1, max=3600), default=30.0, show_default=True,
              metavar="SECONDS", help="Give up when the source (as Ceph reaches it) does not answer this fast.")
@wait_option
@json_option
@reports_errors
def instant_restore_command(root: str, vm: str, revision: str, target: str, listen: Any, url_base: str | None,
                            abort: bool, source_timeout: float, wait: float | None, as_json: bool) -> None:
    """Make TARGET (rbd:POOL/IMAGE) usable from REVISION at once, then hydrate it and commit.

    Prints {"event": "ready", ...} the moment the image can be opened, progress while Ceph copies the rest,
    and a final JSON object (ready_seconds, hydrated_bytes, seconds, damaged). If interrupted, run the same
    command again to continue. Exit 0 done, 1 damage or a failed hydration, 2 bad input.
    """
    from .instant import abort_instant_restore, instant_restore

    if abort:
        done = abort_instant_restore(root, vm, target)
        emit(as_json, done, f"aborted the instant restore into {done['image']} (the image is removed)")
        return
    if listen is None:
        fail("--listen HOST:PORT is needed: Ceph and the hypervisors read the backup point from there")

    def show(event: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(event, sort_keys=True))
        elif event["event"] == "ready":
            click.echo(f"{event['image']} is usable now ({event['seconds']} s); hydrating from {event['url']}")
        elif event["event"] == "progress" and sys.stderr.isatty():
            click.echo(f"\rhydrating: {event['percent']:3d}%", err=True, nl=event["percent"] >= 100)
        sys.stdout.flush()

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as Ctrl-C does: cleanly, resumable
    result = instant_restore(root, vm, revision, target, listen=listen, url_base=url_base, events=show, wait=wait,
                             source_timeout=source_timeout)
    damaged = "; ".join(f"{s}-{e}" for s, e in result.damaged)
    emit(as_json, result.as_dict(),
         f"{result.image} hydrated and committed: usable after {result.ready_seconds} s, done after "
         f"{result.seconds} s" + (f"; DAMAGED byte ranges (zero-filled): {damaged}" if damaged else ""))
    if result.damaged:
        sys.exit(1)


token_option = click.option("--token", envvar="LIFEBOAT_TOKEN", required=True,
                            help="Bearer token with the export:read scope (or set LIFEBOAT_TOKEN).")
# Replication imports requests only when it runs, so the other store commands start fast.
fetch_threads_option = click.option("--threads", type=click.IntRange(min=1, max=64), default=4,
                                    show_default=True, help="Parallel downloads.")


@store.command("repair")
@click.argument("root")
@click.argument("vm")
@click.option("--from", "url", required=True, metavar="URL", help="The portal whose export holds good copies.")
@token_option
@fetch_threads_option
@wait_option
@json_option
@reports_errors
def repair_command(root: str, vm: str, url: str, token: str, threads: int, wait: float | None,
                   as_json: bool) -> None:
    """Fetch good copies of VM's quarantined or missing chunks from URL and trust complete revisions again.

    Run after verify. Exit 0 when every chunk was repaired, 1 when some could not be had.
    """
    from .repair import repair as run_repair
    from .replicate import ExportClient

    repo = Repository.open(root, vm, require_key=False)
    fetch = ExportClient(url, token).chunk_fetcher(vm, stored_limit(repo.chunk_size))
    result = run_repair(root, vm, fetch, threads=threads, wait=0.0 if wait is None else wait)
    human = (f"repaired {len(result.chunks_repaired)} of {len(result.chunks_missing) + len(result.chunks_damaged)} "
             f"chunks; trusted again: {', '.join(result.revisions_trusted) or 'none'}")
    if result.chunks_unavailable:
        human += (f"; {len(result.chunks_unavailable)} unavailable, still distrusted: "
                  f"{', '.join(result.revisions_distrusted)}")
    emit(as_json, result.as_dict(), human)
    if not result.clean:
        sys.exit(1)


@click.group("replicate")
def replicate() -> None:
    """Copy backups from another Lifeboat portal's export API into a repository root."""


class ProgressBar:
    """A plain one-line progress bar on stderr: chunks done, MiB received, MiB/s."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, repository: str, done: int, total: int, received: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        share = done / total if total else 1.0
        filled = int(share * 30)
        rate = received / 2**20 / max(now - self.started, 1e-6)
        line = (f"\r{repository}: [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} chunks, "
                f"{received / 2**20:.0f} MiB, {rate:.0f} MiB/s")
        click.echo(line, err=True, nl=done >= total)


@replicate.command("pull")
@click.argument("url")
@token_option
@click.option("--vm", "vms", multiple=True, help="Only this VM (repository name, id or name; repeatable).")
@click.argument("root")
@fetch_threads_option
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@wait_option
@json_option
@reports_errors
def pull_command(url: str, token: str, vms: tuple[str, ...], root: str, threads: int, progress: bool | None,
                 wait: float | None, as_json: bool) -> None:
    """Pull the backups the token may export from the portal at URL into ROOT.

    Only missing chunks are fetched, each checked against its hash; manifests are written last. Run the
    same command again to continue an interrupted pull. Exit 0 done, 1 some chunks could not be had.
    """
    from .replicate import ExportClient
    from .replicate import pull as run_pull

    show = sys.stderr.isatty() if progress is None else progress
    result = run_pull(root, ExportClient(url, token), vms=list(vms) or None, threads=threads,
                      progress=ProgressBar() if show and not as_json else None,
                      wait=0.0 if wait is None else wait)
    human = (f"pulled {len(result.revisions_pulled)} revisions of {len(result.repositories)} repositories: "
             f"{result.chunks_fetched} chunks ({result.bytes_fetched} bytes) fetched, "
             f"{result.chunks_present} already here, in {result.seconds} s")
    if result.chunks_unavailable:
        human += f"; {len(result.chunks_unavailable)} chunks of distrusted revisions unavailable at the source"
    emit(as_json, result.as_dict(), human)
    if not result.ok:
        for chunk, reason in sorted(result.chunks_failed.items())[:5]:
            click.echo(f"lifeboat: chunk {chunk}: {reason}", err=True)
        fail(f"{len(result.chunks_failed)} chunks could not be fetched; incomplete revisions not written: "
             f"{', '.join(result.revisions_incomplete)}; run the same command again to continue", 1)


@store.command("copy")
@click.argument("src_root")
@click.argument("dst_root")
@click.option("--vm", "vms", multiple=True, help="Only this VM (repeatable; default: every repository of SRC_ROOT).")
@click.option("--encrypt", is_flag=True,
              help="Convert plain repositories into new encrypted ones, keys wrapped by --key-file's key: every "
                   "chunk re-read, renamed and sealed, every manifest rewritten, the result verified.")
@fetch_threads_option
@wait_option
@json_option
@reports_errors
def copy_command(src_root: str, dst_root: str, vms: tuple[str, ...], encrypt: bool, threads: int,
                 wait: float | None, as_json: bool) -> None:
    """Copy repositories from SRC_ROOT to DST_ROOT (a folder, rados:POOL[/NAMESPACE] or s3://BUCKET[/PREFIX] each).

    Every chunk is re-hashed before it is written and manifests come last; run the same command again to
    continue an interrupted copy. Without --encrypt the bytes move as stored (ciphertext too, no key needed);
    with it, plain repositories become encrypted ones. Exit 0 done, 1 when some revisions could not be copied
    whole (or the converted repository does not verify clean).
    """
    from .copy import convert as run_convert
    from .copy import copy as run_copy

    verified: list[str] = []
    if encrypt:
        result = run_convert(src_root, dst_root, default_keyring(), vms=list(vms) or None, threads=threads,
                             wait=0.0 if wait is None else wait, unclean=verified)
    else:
        result = run_copy(src_root, dst_root, vms=list(vms) or None, threads=threads,
                          wait=0.0 if wait is None else wait)
    human = (f"{'converted' if encrypt else 'copied'} {len(result.revisions_pulled)} revisions of "
             f"{len(result.repositories)} repositories: {result.chunks_fetched} chunks ({result.bytes_fetched} "
             f"bytes), {result.chunks_present} already there, in {result.seconds} s")
    document = result.as_dict()
    if encrypt:
        document["verify_damaged"] = verified
        document["ok"] = result.ok and not verified
        human += "; verified clean with the key" if not verified else ""
    emit(as_json, document, human)
    if not result.ok:
        for chunk, reason in sorted(result.chunks_failed.items())[:5]:
            click.echo(f"lifeboat: chunk {chunk}: {reason}", err=True)
        fail(f"{len(result.chunks_failed)} chunks could not be copied; revisions not written: "
             f"{', '.join(result.revisions_incomplete)}", 1)
    if verified:
        fail(f"the converted repositories do not verify clean: {', '.join(verified)}; "
             "run `lifeboat store verify` on them with the key", 1)

# -- keys ------------------------------------------------------------------------------------------------

@contextmanager
def _keys_from(path: str | None) -> Iterator[None]:
    """The key file as the engine's keyring (and LIFEBOAT_KEY_FILE, for nbdkit's plugin process) while a
    command runs; both put back afterwards (tests run commands in one process)."""
    if path is None:
        yield
        return
    absolute = os.path.abspath(path)
    ring = KeyRing.from_file(absolute)
    before = os.environ.get(KEY_FILE_ENV)
    set_default_keyring(ring)
    os.environ[KEY_FILE_ENV] = absolute
    try:
        yield
    finally:
        set_default_keyring(None)
        if before is None:
            os.environ.pop(KEY_FILE_ENV, None)
        else:
            os.environ[KEY_FILE_ENV] = before


def _with_key_file(command: click.Command) -> None:
    """Give a store command ``--key-file PATH``: loaded before it runs; a bad file is one line, exit 2."""
    command.params.append(click.Option(
        ["--key-file", "key_file"], metavar="PATH", default=None,
        help="The organisation key file of an encrypted repository (or set LIFEBOAT_KEY_FILE)."))
    callback = command.callback
    assert callback is not None

    @wraps(callback)
    def run(*args: Any, key_file: str | None = None, **kwargs: Any) -> Any:
        with ExitStack() as stack:
            try:
                stack.enter_context(_keys_from(key_file))
            except StorageError as exc:
                fail(str(exc), exc.exit_code)
            return callback(*args, **kwargs)

    command.callback = run


for _command in store.commands.values():
    _with_key_file(_command)


@click.group("keys")
def keys() -> None:
    """Organisation key files and the keys of encrypted repositories (rotate, rewrap, show)."""


@keys.command("create")
@click.argument("out")
@click.option("--organisation", default="", help="Whose key it is (written into the file).")
@click.option("--from", "previous", metavar="PATH",
              help="Rotate the organisation key: a new current key in front of PATH's keys (they still open "
                   "what they wrapped until every repository is rewrapped).")
@json_option
@reports_errors
def keys_create(out: str, organisation: str, previous: str | None, as_json: bool) -> None:
    """Write a new organisation key file OUT (readable by its owner only; never over an existing file)."""
    keyfile = KeyFile.load(previous).rotated() if previous else KeyFile.create(organisation)
    if organisation:
        keyfile.organisation = organisation
    keyfile.save(out)
    emit(as_json, {"file": out, "key": keyfile.current.id, "keys": [k.id for k in keyfile.keys]},
         f"wrote {out}: organisation key {keyfile.current.id}; keep a copy: without it its backups are lost")


@keys.command("show")
@click.argument("root")
@click.argument("vm")
@json_option
@reports_errors
def keys_show(root: str, vm: str, as_json: bool) -> None:
    """The key ids of VM's repository (data keys, newest first, and the organisation keys wrapping them)."""
    from .rekey import describe

    info = describe(Repository.open(root, vm, keyless=True))
    emit(as_json, info.as_dict(),
         f"data keys {', '.join(info.data_keys)}; wrapped by {', '.join(info.wrapped_by)}")


@keys.command("rotate")
@click.argument("root")
@click.argument("vm")
@click.option("--key-file", "key_file", required=True, metavar="PATH", help="The organisation key file.")
@click.option("--new-key-file", metavar="PATH",
              help="Also rewrap every key of the repository by this file's current key.")
@wait_option
@json_option
@reports_errors
def keys_rotate(root: str, vm: str, key_file: str, new_key_file: str | None, wait: float | None,
                as_json: bool) -> None:
    """Start a new data key for VM: new chunks are sealed with it, old keys stay to read old chunks."""
    from .rekey import rotate

    new = KeyFile.load(new_key_file).current if new_key_file else None
    info = rotate(root, vm, KeyRing.from_file(key_file), new_key=new, wait=0.0 if wait is None else wait)
    emit(as_json, info.as_dict(), f"VM {vm} writes with data key {info.data_keys[0]} now "
                                  f"({len(info.data_keys)} keys); wrapped by {', '.join(info.wrapped_by)}")


@keys.command("rewrap")
@click.argument("root")
@click.argument("vm")
@click.option("--key-file", "key_file", required=True, metavar="PATH", help="The key file that opens it now.")
@click.option("--new-key-file", required=True, metavar="PATH", help="The key file whose current key wraps next.")
@wait_option
@json_option
@reports_errors
def keys_rewrap(root: str, vm: str, key_file: str, new_key_file: str, wait: float | None, as_json: bool) -> None:
    """Wrap VM's keys by another organisation key; no chunk is re-encrypted."""
    from .rekey import rewrap

    info = rewrap(root, vm, KeyRing.from_file(key_file), KeyFile.load(new_key_file).current,
                  wait=0.0 if wait is None else wait)
    emit(as_json, info.as_dict(), f"VM {vm}: keys wrapped by {', '.join(info.wrapped_by)}")
