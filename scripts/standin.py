#!/usr/bin/env python3
"""envclone's local AWS stand-in: moto's server with the corrections the product depends on.

Run with the project's virtualenv (scripts/lib.sh sets it up):

    .venv/bin/python scripts/standin.py --port 0 --port-file /tmp/x/port

moto answers every call as if AWS had no time and never failed. envclone's correctness is mostly
about waiting for the right state and surviving faults, so this wrapper adds (details, and the
moto internals each one touches, in tests/it/STANDIN.md):

* RDS statuses that take time (creating/modifying/renaming/backing-up... -> available), and the
  state checks AWS makes on them;
* CloudFormation restoring an AWS::RDS::DBInstance from DBSnapshotIdentifier or to a point in
  time (SourceDBInstanceIdentifier + RestoreTime; moto made a read replica), an instance's
  LatestRestorableTime that trails the clock (none without automated backups), failing and
  rolling back stacks whose resources fail, waiting for the DB before CREATE_COMPLETE, and the
  ClientRequestToken idempotency of CreateStack;
* CloudFormation deleting stacks as AWS does: DELETE_FAILED instead of an HTTP error,
  RetainResources, dependency order, DB instances deleted by the identifier recorded at
  creation (deletion protection refuses), non-empty buckets failing, and the resource types
  moto did not delete at all; stack termination protection (UpdateTerminationProtection, and
  DeleteStack refused while it is enabled);
* Aurora: CloudFormation creating AWS::RDS::DBCluster (new, from a cluster snapshot, or a
  point-in-time / copy-on-write restore) with its instances as members, cluster statuses that
  take time, a LatestRestorableTime that trails the clock, and stack deletes that snapshot
  or keep the cluster by its DeletionPolicy;
* what public sample templates (tests/fixtures/real/) need: Cognito user pools, clients and
  domains in moto's Cognito; CloudFront, WAFv2 and two API Gateway types as recorded
  placeholders with the Ref/GetAtt values CloudFormation documents;
* S3 HeadObject/GetObject with PartNumber on multipart objects;
* a few cheap refusals AWS makes and moto does not (EnterStandby below MinSize, DeleteDBInstance
  without a final-snapshot decision);
* a control API under /envclone-standin/ for latency and error injection, the RDS delay, and
  a health endpoint standing in for the application behind the load balancer.

Everything here reaches into moto's internals, so the moto version is pinned and checked first.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import fnmatch
import dataclasses
import functools
import io
import json
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from typing import Any, Callable
import urllib.parse
from urllib.parse import parse_qs

PINNED_MOTO_VERSION = "5.2.5"
# CreateStack's template size quotas ("CloudFormation quotas").
TEMPLATE_BODY_MAX = 51_200
TEMPLATE_URL_MAX = 1_000_000
CONTROL_PREFIX = "/envclone-standin/"


def _check_moto_version() -> None:
    # Every patch below names private moto functions and attributes; with another version they
    # may silently stop applying, which would make tests pass against the wrong behaviour.
    try:
        from importlib.metadata import version

        found = version("moto")
    except Exception as exc:  # pragma: no cover - only on a broken environment
        sys.exit(f"standin: cannot find moto ({exc}); run envclone_ensure_venv (scripts/lib.sh)")
    if found != PINNED_MOTO_VERSION:
        sys.exit(
            f"standin: moto {found} is installed but the stand-in is written against moto "
            f"{PINNED_MOTO_VERSION} (it patches moto internals). Re-check every patch in "
            f"scripts/standin.py and tests/it/STANDIN.md before changing the pin."
        )


_check_moto_version()

# moto creates boto3 sessions while importing (a developer's AWS_PROFILE that names a profile
# not on this machine makes that import fail) and must never see real credentials.
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)
os.environ.update(
    AWS_CONFIG_FILE=os.devnull,
    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_EC2_METADATA_DISABLED="true",
)
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from moto.autoscaling.exceptions import ValidationError as AsgValidationError  # noqa: E402
from moto.autoscaling.models import AutoScalingBackend  # noqa: E402
from moto.autoscaling.responses import AutoScalingResponse  # noqa: E402
from moto.cloudformation import models as cfn_models  # noqa: E402
from moto.cloudformation import parsing as cfn_parsing  # noqa: E402
from moto.cloudformation.responses import CloudFormationResponse  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.rds import exceptions as rds_exceptions  # noqa: E402
from moto.rds import models as rds_models  # noqa: E402
from moto.rds.exceptions import RDSClientError  # noqa: E402
from moto.rds.responses import RDSResponse  # noqa: E402
from moto.s3 import exceptions as s3_exceptions  # noqa: E402
from moto.s3 import models as s3_models  # noqa: E402
from moto.s3.responses import S3Response  # noqa: E402


def _log(msg: str) -> None:
    print(f"standin: {msg}", file=sys.stderr, flush=True)


# ==================================================================================== settings


class Settings:
    """Run-time knobs changed through the control API; read by request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rds_delay = float(os.environ.get("ENVCLONE_STANDIN_RDS_DELAY", "2.0"))
        # How long a DB snapshot or DB cluster snapshot stays `creating` before `available`.
        # AWS: minutes to hours, while its point in time is fixed within seconds of the request
        # and SnapshotCreateTime is reported from then on ("Create Amazon EBS snapshots": "the
        # point-in-time snapshot is created immediately"); moto reports SnapshotCreateTime from
        # the request, as AWS does once the point is fixed. Longer than the RDS delay, so a test
        # can see a source back in service while its snapshot is still being made.
        self.snapshot_delay = float(os.environ.get("ENVCLONE_STANDIN_SNAPSHOT_DELAY", "3.0"))
        # How far an Aurora cluster's LatestRestorableTime trails the clock (AWS: seconds to
        # ~5 minutes).
        self.restorable_lag = float(os.environ.get("ENVCLONE_STANDIN_RESTORABLE_LAG", "3"))
        # How long a DB instance or cluster rename stays pending under the OLD identifier
        # (status `renaming`) before it answers only to the new one. AWS: about 10 minutes.
        self.rename_delay = float(os.environ.get("ENVCLONE_STANDIN_RENAME_DELAY", "4"))
        # Of that, how long it still says `available` (the new name only in PendingModifiedValues)
        # before `renaming`: ModifyDBInstance ApplyImmediately applies changes "asynchronously
        # ... as soon as possible", and seconds of `available` have been seen (aws-sdk-js#1505,
        # boto3#609). moto shows `renaming` at once.
        self.rename_start_delay = float(os.environ.get("ENVCLONE_STANDIN_RENAME_START_DELAY", "1.5"))
        self.faults: list[FaultRule] = []
        self.next_fault_id = 1


SETTINGS = Settings()


# ============================================================================ RDS: time passes

# A transient status and the one it settles into once the delay has passed. AWS takes minutes;
# the stand-in takes SETTINGS.rds_delay seconds, measured from the moment the status was set and
# evaluated when the status is read, so lowering the delay at run time also hurries along
# transitions already under way.
_SETTLES_INTO = {
    "creating": "available",
    "modifying": "available",
    "renaming": "available",
    "backing-up": "available",
    "rebooting": "available",
    "starting": "available",
    "stopping": "stopped",
}


class _TimedStatus:
    """Data descriptor replacing the plain `status` attribute of DBInstance and DBSnapshot.

    moto assigns `status = "available"` in their constructors and when starting an instance;
    the first of these becomes "creating" and a start from "stopped" becomes "starting", so
    no constructor has to be touched. Reads settle a transient status whose time is up.
    """

    _slot = "_envclone_status"

    def __init__(self, delay: Callable[[], float] | None = None) -> None:
        # Seconds a transient status lasts; the RDS delay unless given (snapshots).
        self._delay = delay or (lambda: SETTINGS.rds_delay)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        state = obj.__dict__.get(self._slot)
        if state is None:
            return None
        if obj.__dict__.get("_envclone_pending_rename"):
            # `available` (the new name only in PendingModifiedValues) until the rename starts,
            # then `renaming` until `_settle_renames` applies it, however long that takes.
            if time.monotonic() - obj.__dict__["_envclone_rename_called"] < SETTINGS.rename_start_delay:
                return "available"
            return "renaming"
        value, since = state
        final = _SETTLES_INTO.get(value)
        if final is not None and time.monotonic() - since >= self._delay():
            obj.__dict__[self._slot] = (final, time.monotonic())
            return final
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        previous = self.__get__(obj)
        if value == "available":
            if previous is None:
                value = "creating"
            elif previous == "stopped":
                value = "starting"
        elif value == "stopped" and previous == "available":
            value = "stopping"
        obj.__dict__[self._slot] = (value, time.monotonic())


def _force_status(obj: Any, value: str) -> None:
    """Set a status verbatim (the descriptor's setter would reinterpret "available")."""
    obj.__dict__[_TimedStatus._slot] = (value, time.monotonic())


def _invalid_instance_state(instance_id: str) -> RDSClientError:
    # AWS's code and wording for operations on an instance that is not available.
    return RDSClientError(
        "InvalidDBInstanceState",
        f"Database instance is not in available state (instance {instance_id}).",
    )


# ---------------------------------------------------------------------- RDS: renames take time
#
# AWS ("Renaming a DB instance", USER_RenameInstance; ModifyDBCluster NewDBClusterIdentifier):
# the call returns at once; the database keeps answering to its OLD identifier with status
# `renaming` (the new name in PendingModifiedValues) until the rename is effective, about ten
# minutes later; from then on only the new identifier answers. The new name is taken from the
# call on. moto moves the identifier at the call. Here the move waits SETTINGS.rename_delay and
# is applied at the start of the first request after that (requests to moto are serialized, so
# no request sees the move half done).


@dataclasses.dataclass
class _PendingRename:
    backend: Any
    kind: str  # "instance" or "cluster"
    old_id: str
    new_id: str
    due: float


_PENDING_RENAMES: list[_PendingRename] = []
_RENAMES_LOCK = threading.Lock()
# Every request to moto runs under this lock (see StandinApp), so a rename applied at a request's
# start never races another request's reads.
MOTO_LOCK = threading.RLock()
_ORIGINAL_RENAMES: dict[str, Callable[..., Any]] = {}


def _rename_target_taken(kind: str, backend: Any, new_id: str) -> bool:
    with _RENAMES_LOCK:
        return any(r.backend is backend and r.kind == kind and r.new_id.lower() == new_id.lower() for r in _PENDING_RENAMES)


def _defer_rename(kind: str, backend: Any, obj: Any, old_id: str, new_id: str) -> None:
    obj.__dict__["_envclone_pending_rename"] = new_id
    obj.__dict__["_envclone_rename_called"] = time.monotonic()
    key = "DBInstanceIdentifier" if kind == "instance" else "DBClusterIdentifier"
    obj.pending_modified_values = {key: new_id}
    with _RENAMES_LOCK:
        _PENDING_RENAMES.append(_PendingRename(backend, kind, old_id, new_id, time.monotonic() + SETTINGS.rename_delay))


def _settle_renames() -> None:
    """Applies every pending rename whose time has come (called with MOTO_LOCK held)."""
    now = time.monotonic()
    with _RENAMES_LOCK:
        due = [r for r in _PENDING_RENAMES if r.due <= now]
        for r in due:
            _PENDING_RENAMES.remove(r)
    for r in due:
        store = r.backend.databases if r.kind == "instance" else r.backend.clusters
        obj = store.get(r.old_id)
        if obj is None or obj.__dict__.get("_envclone_pending_rename") != r.new_id:
            continue  # deleted meanwhile
        del obj.__dict__["_envclone_pending_rename"]
        obj.pending_modified_values = {}
        if r.kind == "instance":
            _ORIGINAL_RENAMES["instance"](r.backend, r.old_id, {"new_db_instance_identifier": r.new_id})
        else:
            members = list(obj._members)
            _ORIGINAL_RENAMES["cluster"](r.backend, {"db_cluster_identifier": r.old_id, "new_db_cluster_identifier": r.new_id})
            # moto left the instances pointing at the old name (no longer members).
            for member in members:
                member.db_cluster_identifier = obj.db_cluster_identifier
        _force_status(obj, "available")
        _log(f"rename of {r.kind} {r.old_id} to {r.new_id} is effective")


def _reset_renames() -> None:
    with _RENAMES_LOCK:
        _PENDING_RENAMES.clear()


def _install_rds_time() -> None:
    rds_models.DBInstance.status = _TimedStatus()
    rds_models.DBSnapshot.status = _TimedStatus(lambda: SETTINGS.snapshot_delay)
    backend_cls = rds_models.RDSBackend

    orig_create_snapshot = backend_cls.create_db_snapshot

    @functools.wraps(orig_create_snapshot)
    def create_db_snapshot(self, db_instance_identifier, db_snapshot_identifier, snapshot_type="manual", *args, **kwargs):  # type: ignore[no-untyped-def]
        database = self.databases.get(db_instance_identifier)
        # Automated snapshots are taken by moto inside CreateDBInstance itself, and the final
        # snapshot of DeleteDBInstance is taken whatever the state: only a user's manual snapshot
        # needs an available instance, and puts it in backing-up while it runs.
        manual = snapshot_type == "manual" and not getattr(self, "_envclone_final_snapshot", False)
        if database is not None and manual and database.status != "available":
            raise _invalid_instance_state(db_instance_identifier)
        snapshot = orig_create_snapshot(self, db_instance_identifier, db_snapshot_identifier, snapshot_type, *args, **kwargs)
        if database is not None and manual:
            _force_status(database, "backing-up")
        return snapshot

    backend_cls.create_db_snapshot = create_db_snapshot

    orig_copy_snapshot = backend_cls.copy_db_snapshot

    @functools.wraps(orig_copy_snapshot)
    def copy_db_snapshot(self, source_db_snapshot_identifier, *args, **kwargs):  # type: ignore[no-untyped-def]
        _require_snapshot_available(self, source_db_snapshot_identifier)
        return orig_copy_snapshot(self, source_db_snapshot_identifier, *args, **kwargs)

    backend_cls.copy_db_snapshot = copy_db_snapshot

    orig_restore = backend_cls.restore_db_instance_from_db_snapshot

    @functools.wraps(orig_restore)
    def restore_db_instance_from_db_snapshot(self, from_snapshot_id, overrides):  # type: ignore[no-untyped-def]
        # AWS refuses to restore from a snapshot that is still being created.
        _require_snapshot_available(self, from_snapshot_id)
        database = orig_restore(self, from_snapshot_id, overrides)
        database._envclone_restored_from = _snapshot_name(self, from_snapshot_id)
        return database

    backend_cls.restore_db_instance_from_db_snapshot = restore_db_instance_from_db_snapshot

    orig_replica = backend_cls.create_db_instance_read_replica

    @functools.wraps(orig_replica)
    def create_db_instance_read_replica(self, db_kwargs):  # type: ignore[no-untyped-def]
        # moto builds a replica by copying the primary, status included.
        replica = orig_replica(self, db_kwargs)
        _force_status(replica, "creating")
        return replica

    backend_cls.create_db_instance_read_replica = create_db_instance_read_replica

    orig_modify = backend_cls.modify_db_instance

    @functools.wraps(orig_modify)
    def modify_db_instance(self, db_instance_identifier, db_kwargs):  # type: ignore[no-untyped-def]
        database = self.describe_db_instances(db_instance_identifier)[0]
        # A rename accepted and not started says `available`; one change at a time here.
        if database.status != "available" or database.__dict__.get("_envclone_pending_rename"):
            raise _invalid_instance_state(db_instance_identifier)
        apply_now = _truthy(db_kwargs.get("apply_immediately"))
        new_id = db_kwargs.get("new_db_instance_identifier")
        if new_id and not apply_now:
            # AWS defers a rename without ApplyImmediately to the next maintenance window and
            # shows it as pending; moto would rename at once. There is no maintenance window
            # here, so the rename stays pending for good.
            del db_kwargs["new_db_instance_identifier"]
            if "NewDBInstanceIdentifier" in db_kwargs:
                del db_kwargs["NewDBInstanceIdentifier"]
            database = orig_modify(self, db_instance_identifier, db_kwargs)
            database.pending_modified_values = {"DBInstanceIdentifier": new_id}
            return database
        if new_id and (new_id.lower() in self.databases or _rename_target_taken("instance", self, new_id)):
            raise RDSClientError("DBInstanceAlreadyExists", f"DB instance already exists: {new_id}")
        if new_id:
            rest = {k: v for k, v in db_kwargs.items() if k not in ("new_db_instance_identifier", "NewDBInstanceIdentifier")}
            database = orig_modify(self, db_instance_identifier, rest)
            _force_status(database, "renaming")
            _defer_rename("instance", self, database, database.db_instance_identifier, new_id.lower())
            return database
        database = orig_modify(self, db_instance_identifier, db_kwargs)
        if apply_now:
            _force_status(database, "modifying")
        return database

    backend_cls.modify_db_instance = modify_db_instance
    _ORIGINAL_RENAMES["instance"] = orig_modify

    orig_reboot = backend_cls.reboot_db_instance

    @functools.wraps(orig_reboot)
    def reboot_db_instance(self, db_instance_identifier):  # type: ignore[no-untyped-def]
        database = orig_reboot(self, db_instance_identifier)
        if database.status != "available":
            raise _invalid_instance_state(db_instance_identifier)
        _force_status(database, "rebooting")
        return database

    backend_cls.reboot_db_instance = reboot_db_instance

    orig_delete = backend_cls.delete_db_instance

    @functools.wraps(orig_delete)
    def delete_db_instance(self, db_instance_identifier, final_db_snapshot_identifier=None, skip_final_snapshot=False, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._envclone_final_snapshot = True
        try:
            return orig_delete(self, db_instance_identifier, final_db_snapshot_identifier, skip_final_snapshot, *args, **kwargs)
        finally:
            self._envclone_final_snapshot = False

    backend_cls.delete_db_instance = delete_db_instance

    orig_resp_delete = RDSResponse.delete_db_instance

    @functools.wraps(orig_resp_delete)
    def resp_delete_db_instance(self):  # type: ignore[no-untyped-def]
        # The API (not CloudFormation, which calls the backend directly) must say what happens
        # to the data: AWS refuses a delete that neither skips nor names a final snapshot.
        _require_final_snapshot_choice(self.params)
        return orig_resp_delete(self)

    RDSResponse.delete_db_instance = resp_delete_db_instance


def _require_final_snapshot_choice(params: dict[str, Any]) -> None:
    """AWS refuses a DeleteDBInstance/DeleteDBCluster that neither skips nor names a final
    snapshot, or that does both."""
    skip = _truthy(params.get("SkipFinalSnapshot"))
    final = params.get("FinalDBSnapshotIdentifier")
    if skip and final:
        raise RDSClientError(
            "InvalidParameterCombination",
            "Cannot specify both SkipFinalSnapshot and FinalDBSnapshotIdentifier.",
        )
    if not skip and not final:
        raise RDSClientError(
            "InvalidParameterCombination",
            "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.",
        )


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _snapshot_name(backend: Any, snapshot_id: str) -> str:
    if snapshot_id.startswith("arn:"):
        return backend.extract_snapshot_name_from_arn(snapshot_id)
    return snapshot_id.lower()


def _require_snapshot_available(backend: Any, snapshot_id: str) -> None:
    name = _snapshot_name(backend, snapshot_id)
    snapshot = backend.database_snapshots.get(name)
    if snapshot is not None and snapshot.status != "available":
        raise RDSClientError(
            "InvalidDBSnapshotState", f"Snapshot {name} is not in available state."
        )


def restored_instances() -> dict[str, str]:
    """{current instance id: snapshot id} for every instance restored from a DB snapshot, and
    {current instance id: "point-in-time restore of <source> at <time>"} for one restored to a
    point in time."""
    result: dict[str, str] = {}
    for account_backends in list(rds_models.rds_backends.values()):
        for backend in list(account_backends.values()):
            for instance_id, database in list(backend.databases.items()):
                snapshot = database.__dict__.get("_envclone_restored_from")
                if snapshot:
                    result[instance_id] = snapshot
    return result


# ============================================================ RDS: point-in-time restore


def _instance_latest_restorable_time(database: Any) -> datetime.datetime | None:
    """Now minus the restorable lag, never before the instance existed; none while it is being
    created and none without automated backups (BackupRetentionPeriod 0: no point-in-time
    restore). moto answered now, always."""
    if database.status == "creating" or not int(database.backup_retention_period or 0):
        return None
    from moto.core.utils import utcnow

    latest = utcnow() - datetime.timedelta(seconds=SETTINGS.restorable_lag)
    return max(latest, database.created)


# Request arguments of RestoreDBInstanceToPointInTime that are not settings of the new instance.
_PIT_ARGUMENTS = (
    "source_db_instance_identifier",
    "target_db_instance_identifier",
    "source_dbi_resource_id",
    "source_db_instance_automated_backups_arn",
)


def _install_rds_point_in_time() -> None:
    rds_models.DBInstance.latest_restorable_time = property(_instance_latest_restorable_time)
    backend_cls = rds_models.RDSBackend
    orig_restore_pit = backend_cls.restore_db_instance_to_point_in_time

    @functools.wraps(orig_restore_pit)
    def restore_db_instance_to_point_in_time(self, source_db_identifier, target_db_identifier, overrides):  # type: ignore[no-untyped-def]
        # moto ignored RestoreTime and UseLatestRestorableTime and the source's backups.
        overrides = {key: value for key, value in dict(overrides or {}).items() if key not in _PIT_ARGUMENTS and value is not None}
        restore_time = overrides.pop("restore_time", None)
        use_latest = _truthy(overrides.pop("use_latest_restorable_time", None))
        if restore_time not in (None, "") and use_latest:
            raise RDSClientError("InvalidParameterCombination", "Cannot specify both RestoreTime and UseLatestRestorableTime")
        if restore_time in (None, "") and not use_latest:
            raise RDSClientError("InvalidParameterCombination", "Either RestoreTime or UseLatestRestorableTime must be specified.")
        source_id = str(source_db_identifier or "").lower()
        source = self.databases.get(source_id)
        if source is None:
            raise rds_exceptions.DBInstanceNotFoundError(source_id)
        target = str(target_db_identifier or "").lower()
        if target in self.databases:
            raise RDSClientError("DBInstanceAlreadyExists", f"DB instance already exists: {target}")
        if not int(source.backup_retention_period or 0):
            raise RDSClientError(
                "PointInTimeRestoreNotEnabled",
                f"SourceDBInstanceIdentifier {source_id} refers to a DB instance with BackupRetentionPeriod equal to 0.",
            )
        latest = _instance_latest_restorable_time(source)
        if latest is None:
            raise RDSClientError("InvalidDBInstanceState", f"DB instance {source_id} is not available.")
        moment = latest if use_latest else _parse_restore_time(restore_time)
        if moment > latest:
            raise RDSClientError(
                "InvalidRestoreFault",
                f"The restore time {_rfc3339(moment)} is after the latest restorable time "
                f"{_rfc3339(latest)} of DB instance {source_id}.",
            )
        if moment < source.created.replace(microsecond=0):
            raise RDSClientError(
                "InvalidRestoreFault",
                f"The restore time {_rfc3339(moment)} is before DB instance {source_id} existed.",
            )
        database = orig_restore_pit(self, source_id, target, overrides)
        # moto copied the source's tags and settings; AWS takes tags from the request.
        database.tags = list(overrides.get("tags") or [])
        database.__dict__["_envclone_restored_from"] = f"point-in-time restore of {source_id} at {_rfc3339(moment)}"
        return database

    backend_cls.restore_db_instance_to_point_in_time = restore_db_instance_to_point_in_time


# ===================================================================== RDS: Aurora clusters


def _invalid_cluster_state(cluster_id: str, status: Any) -> RDSClientError:
    # AWS's code; the wording of moto's Start/StopDBCluster refusals.
    return RDSClientError(
        "InvalidDBClusterStateFault",
        f"DbCluster {cluster_id} is in {status} state but expected it to be one of available.",
    )


def _cluster_snapshot_name(snapshot_id: str) -> str:
    if snapshot_id.startswith("arn:"):
        return snapshot_id.rsplit(":", 1)[-1].lower()
    return snapshot_id.lower()


def _cluster_id(identifier: str) -> str:
    if identifier.startswith("arn:"):
        return identifier.rsplit(":", 1)[-1].lower()
    return identifier.lower()


def _require_cluster_snapshot_available(backend: Any, snapshot_id: str) -> None:
    name = _cluster_snapshot_name(snapshot_id)
    snapshot = backend.cluster_snapshots.get(name)
    if snapshot is not None and snapshot.status != "available":
        raise RDSClientError(
            "InvalidDBClusterSnapshotStateFault",
            f"Cluster snapshot {name} is not in available state.",
        )


def _parse_restore_time(value: Any) -> datetime.datetime:
    """RestoreToTime (RFC 3339 text from a template, or what the API parsed) as a naive UTC
    datetime, which is how moto keeps its times."""
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        text = str(value).strip()
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise RDSClientError(
                "InvalidParameterValue",
                f"The parameter RestoreToTime is not valid: {text!r} is not a time in UTC "
                "format (e.g. 2015-03-07T23:45:00Z).",
            ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


def _latest_restorable_time(cluster: Any) -> datetime.datetime | None:
    """Now minus the lag, never before the cluster existed; none while it is being created
    (AWS shows none until the first backup)."""
    if cluster.status == "creating":
        return None
    from moto.core.utils import utcnow

    latest = utcnow() - datetime.timedelta(seconds=SETTINGS.restorable_lag)
    return max(latest, cluster.created)


# Copy-on-write clones one family (a source and the clones of it and of its clones) may have.
_MAX_CLONES = 15


def _clone_group_size(backend: Any, cluster: Any) -> int:
    """Clusters sharing cluster's clone group, cluster included (1 when it has none)."""
    group = cluster.__dict__.get("_envclone_clone_group")
    if not group:
        return 1
    return sum(1 for other in backend.clusters.values() if other.__dict__.get("_envclone_clone_group") == group)


def _install_rds_clusters() -> None:
    cluster_cls = rds_models.DBCluster
    cluster_cls.status = _TimedStatus()
    rds_models.DBClusterSnapshot.status = _TimedStatus(lambda: SETTINGS.snapshot_delay)
    orig_init = cluster_cls.__init__

    @functools.wraps(orig_init)
    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        orig_init(self, *args, **kwargs)
        # moto keeps "creating" in _status for one read; the stand-in's status takes time.
        _force_status(self, "creating")

    cluster_cls.__init__ = __init__
    cluster_cls.latest_restorable_time = property(_latest_restorable_time)
    # Shared by a cluster and its copy-on-write clones (AWS: a clone group id); none otherwise.
    cluster_cls.clone_group_id = property(lambda self: self.__dict__.get("_envclone_clone_group"))

    backend_cls = rds_models.RDSBackend

    orig_create_snapshot = backend_cls.create_db_cluster_snapshot

    @functools.wraps(orig_create_snapshot)
    def create_db_cluster_snapshot(self, db_cluster_identifier, db_cluster_snapshot_identifier, snapshot_type="manual", *args, **kwargs):  # type: ignore[no-untyped-def]
        # A user's snapshot needs an available cluster; the automated one (taken by moto at
        # create) and the final one of a delete do not.
        cluster = self.clusters.get(db_cluster_identifier)
        manual = snapshot_type == "manual" and not getattr(self, "_envclone_final_snapshot", False)
        if cluster is not None and manual and cluster.status != "available":
            raise _invalid_cluster_state(db_cluster_identifier, cluster.status)
        return orig_create_snapshot(self, db_cluster_identifier, db_cluster_snapshot_identifier, snapshot_type, *args, **kwargs)

    backend_cls.create_db_cluster_snapshot = create_db_cluster_snapshot

    orig_copy_snapshot = backend_cls.copy_db_cluster_snapshot

    @functools.wraps(orig_copy_snapshot)
    def copy_db_cluster_snapshot(self, source_db_cluster_snapshot_identifier, *args, **kwargs):  # type: ignore[no-untyped-def]
        _require_cluster_snapshot_available(self, source_db_cluster_snapshot_identifier)
        return orig_copy_snapshot(self, source_db_cluster_snapshot_identifier, *args, **kwargs)

    backend_cls.copy_db_cluster_snapshot = copy_db_cluster_snapshot

    orig_restore_snapshot = backend_cls.restore_db_cluster_from_snapshot

    @functools.wraps(orig_restore_snapshot)
    def restore_db_cluster_from_snapshot(self, from_snapshot_id, overrides):  # type: ignore[no-untyped-def]
        name = _cluster_snapshot_name(from_snapshot_id)
        if name not in self.cluster_snapshots:
            raise rds_exceptions.DBClusterSnapshotNotFoundError(name)
        _require_cluster_snapshot_available(self, name)
        new_id = str(overrides.get("db_cluster_identifier") or "").lower()
        if new_id in self.clusters:
            raise RDSClientError("DBClusterAlreadyExistsFault", "DB Cluster already exists")
        cluster = orig_restore_snapshot(self, name, overrides)
        # moto copied the snapshotted cluster's settings, tags and deletion protection included;
        # AWS takes those from the request (default: off, no tags).
        cluster.tags = list(overrides.get("tags") or [])
        cluster.deletion_protection = _truthy(overrides.get("deletion_protection"))
        cluster.copy_tags_to_snapshot = _truthy(overrides.get("copy_tags_to_snapshot"))
        cluster.__dict__["_envclone_restored_from"] = {"snapshot": name}
        return cluster

    backend_cls.restore_db_cluster_from_snapshot = restore_db_cluster_from_snapshot

    orig_restore_pit = backend_cls.restore_db_cluster_to_point_in_time

    @functools.wraps(orig_restore_pit)
    def restore_db_cluster_to_point_in_time(self, db_cluster_identifier, source_db_cluster_identifier, restore_type="full-copy", restore_to_time=None, use_latest_restorable_time=False, **overrides):  # type: ignore[no-untyped-def]
        restore_type = restore_type or "full-copy"
        use_latest = _truthy(use_latest_restorable_time)
        if restore_to_time not in (None, "") and use_latest:
            raise RDSClientError(
                "InvalidParameterCombination",
                "Cannot specify both RestoreToTime and UseLatestRestorableTime",
            )
        if restore_to_time in (None, "") and not use_latest:
            raise RDSClientError(
                "InvalidParameterCombination",
                "Either RestoreToTime or UseLatestRestorableTime must be specified.",
            )
        if restore_type not in ("full-copy", "copy-on-write"):
            raise RDSClientError(
                "InvalidParameterValue",
                f"Invalid RestoreType {restore_type}: must be full-copy or copy-on-write.",
            )
        if restore_type == "copy-on-write" and restore_to_time not in (None, ""):
            # AWS's API reference: RestoreToTime "can't be specified if the RestoreType
            # parameter is copy-on-write" (a clone is of the latest restorable time).
            raise RDSClientError(
                "InvalidParameterCombination",
                "RestoreToTime cannot be specified when RestoreType is copy-on-write",
            )
        source_id = _cluster_id(str(source_db_cluster_identifier or ""))
        source = self.clusters.get(source_id)
        if source is None:
            raise rds_exceptions.DBClusterNotFoundError(source_id)
        new_id = str(db_cluster_identifier or "").lower()
        if new_id in self.clusters:
            raise RDSClientError("DBClusterAlreadyExistsFault", "DB Cluster already exists")
        latest = _latest_restorable_time(source)
        if source.status not in ("available", "backing-up", "modifying", "stopped") or latest is None:
            raise _invalid_cluster_state(source_id, source.status)
        if use_latest:
            moment = latest
        else:
            moment = _parse_restore_time(restore_to_time)
            if moment > latest:
                raise RDSClientError(
                    "InvalidRestoreFault",
                    f"The restore time {_rfc3339(moment)} is later than the latest restorable "
                    f"time {_rfc3339(latest)} of DB cluster {source_id}.",
                )
            earliest = getattr(source, "earliest_restorable_time", None) or source.created
            if moment < earliest.replace(microsecond=0):
                raise RDSClientError(
                    "InvalidRestoreFault",
                    f"The restore time {_rfc3339(moment)} is earlier than the earliest restorable "
                    f"time {_rfc3339(earliest)} of DB cluster {source_id}.",
                )
        overrides = {key: value for key, value in overrides.items() if value is not None}
        # moto would copy the source's tags and deletion protection: restore "now" and set
        # those from the request, as AWS does. The recorded point is the time restored to.
        cluster = orig_restore_pit(self, new_id, source_id, "full-copy", None, False, **overrides)
        cluster.tags = list(overrides.get("tags") or [])
        cluster.deletion_protection = _truthy(overrides.get("deletion_protection"))
        cluster.copy_tags_to_snapshot = _truthy(overrides.get("copy_tags_to_snapshot"))
        cluster.__dict__.pop("_envclone_clone_group", None)
        if restore_type == "copy-on-write" and _clone_group_size(self, source) > _MAX_CLONES:
            # AWS: "After you create 15 clones, the next clone that you create is a full copy."
            restore_type = "full-copy"
        if restore_type == "copy-on-write":
            group = source.__dict__.get("_envclone_clone_group") or str(uuid.uuid4())
            source.__dict__["_envclone_clone_group"] = group
            cluster.__dict__["_envclone_clone_group"] = group
        cluster.__dict__["_envclone_restored_from"] = {
            "source_cluster": source_id,
            "restore_type": restore_type,
            "restore_to_time": _rfc3339(moment),
        }
        return cluster

    backend_cls.restore_db_cluster_to_point_in_time = restore_db_cluster_to_point_in_time

    orig_modify = backend_cls.modify_db_cluster

    @functools.wraps(orig_modify)
    def modify_db_cluster(self, kwargs):  # type: ignore[no-untyped-def]
        cluster_id = str(kwargs.get("db_cluster_identifier") or "").lower()
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise rds_exceptions.DBClusterNotFoundError(cluster_id)
        # A rename accepted and not started says `available`; one change at a time here.
        if cluster.status != "available" or cluster.__dict__.get("_envclone_pending_rename"):
            raise _invalid_cluster_state(cluster_id, cluster.status if cluster.status != "available" else "renaming")
        new_id = kwargs.get("new_db_cluster_identifier")
        if new_id and (new_id.lower() in self.clusters or _rename_target_taken("cluster", self, new_id)):
            raise RDSClientError("DBClusterAlreadyExistsFault", "DB Cluster already exists")
        if new_id:
            rest = {k: v for k, v in kwargs.items() if k != "new_db_cluster_identifier"}
            result = orig_modify(self, rest)
            _force_status(cluster, "renaming")
            _defer_rename("cluster", self, cluster, cluster_id, new_id.lower())
            return result
        result = orig_modify(self, kwargs)
        if _truthy(kwargs.get("apply_immediately")):
            _force_status(cluster, "modifying")
        return result

    backend_cls.modify_db_cluster = modify_db_cluster
    _ORIGINAL_RENAMES["cluster"] = orig_modify

    orig_delete = backend_cls.delete_db_cluster

    @functools.wraps(orig_delete)
    def delete_db_cluster(self, cluster_identifier, snapshot_name=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        if snapshot_name and snapshot_name.lower() in self.cluster_snapshots:
            raise rds_exceptions.DBClusterSnapshotAlreadyExistsError(snapshot_name)
        self._envclone_final_snapshot = True
        try:
            cluster = orig_delete(self, cluster_identifier, snapshot_name.lower() if snapshot_name else None, *args, **kwargs)
        finally:
            self._envclone_final_snapshot = False
        # AWS removes the automated backups with the cluster (moto kept them).
        for snapshot_id, snapshot in list(self.cluster_snapshots.items()):
            if snapshot.snapshot_type == "automated" and snapshot.db_cluster_identifier == cluster.db_cluster_identifier:
                self.cluster_snapshots.pop(snapshot_id, None)
        return cluster

    backend_cls.delete_db_cluster = delete_db_cluster

    orig_resp_delete = RDSResponse.delete_db_cluster

    @functools.wraps(orig_resp_delete)
    def resp_delete_db_cluster(self):  # type: ignore[no-untyped-def]
        _require_final_snapshot_choice(self.params)
        return orig_resp_delete(self)

    RDSResponse.delete_db_cluster = resp_delete_db_cluster

    # A subnet group still used by a cluster cannot be deleted either.
    orig_delete_subnet_group = backend_cls.delete_subnet_group

    @functools.wraps(orig_delete_subnet_group)
    def delete_subnet_group(self, subnet_name):  # type: ignore[no-untyped-def]
        for cluster in list(self.clusters.values()):
            if str(cluster.db_subnet_group_name).lower() == str(subnet_name).lower():
                raise RDSClientError(
                    "InvalidDBSubnetGroupStateFault",
                    f"Cannot delete the subnet group '{subnet_name}' because at least one database "
                    f"cluster: {cluster.db_cluster_identifier} is still using it.",
                )
        return orig_delete_subnet_group(self, subnet_name)

    backend_cls.delete_subnet_group = delete_subnet_group


def restored_clusters() -> dict[str, dict[str, str]]:
    """{cluster id: {"snapshot": id} or {"source_cluster", "restore_type", "restore_to_time"}}
    for every cluster restored from a cluster snapshot or to a point in time."""
    result: dict[str, dict[str, str]] = {}
    for account_backends in list(rds_models.rds_backends.values()):
        for backend in list(account_backends.values()):
            for cluster_id, cluster in list(backend.clusters.items()):
                origin = cluster.__dict__.get("_envclone_restored_from")
                if origin:
                    result[cluster_id] = dict(origin)
    return result


# ==================================================== CloudFormation: restore, failure, waiting

_request_local = threading.local()

# Properties of AWS::RDS::DBInstance that may change the restored copy; everything else
# (engine, DB name, master user, storage...) comes from the snapshot, as with RDS's
# RestoreDBInstanceFromDBSnapshot, which is what CloudFormation calls on AWS.
_RESTORE_OVERRIDES = {
    "DBInstanceClass": "db_instance_class",
    "AllocatedStorage": "allocated_storage",
    "AvailabilityZone": "availability_zone",
    "DBParameterGroupName": "db_parameter_group_name",
    "OptionGroupName": "option_group_name",
    "Iops": "iops",
    "MultiAZ": "multi_az",
    "Port": "port",
    "PubliclyAccessible": "publicly_accessible",
    "StorageType": "storage_type",
    "CopyTagsToSnapshot": "copy_tags_to_snapshot",
    "AutoMinorVersionUpgrade": "auto_minor_version_upgrade",
}


def _restore_overrides(resource_name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """What an AWS::RDS::DBInstance restored from a snapshot or to a point in time takes from
    its template (_RESTORE_OVERRIDES, subnet group, security groups)."""
    overrides: dict[str, Any] = {"db_instance_identifier": resource_name.replace("_", "-").lower()}
    for prop, key in _RESTORE_OVERRIDES.items():
        if properties.get(prop) not in (None, ""):
            value = properties[prop]
            if key in ("allocated_storage", "port", "iops"):
                value = int(value)
            elif key in ("multi_az", "publicly_accessible", "copy_tags_to_snapshot", "auto_minor_version_upgrade"):
                value = _truthy(value)
            overrides[key] = value
    subnet_group = properties.get("DBSubnetGroupName")
    if subnet_group:
        overrides["db_subnet_group_name"] = getattr(subnet_group, "name", subnet_group)
    security_groups = properties.get("VPCSecurityGroups") or properties.get("VpcSecurityGroupIds")
    if security_groups:
        overrides["vpc_security_group_ids"] = list(security_groups)
    return overrides


def _restore_to_point_in_time_from_cloudformation(resource_name: str, properties: dict[str, Any], account_id: str, region_name: str) -> Any:
    """AWS::RDS::DBInstance with SourceDBInstanceIdentifier and RestoreTime (or
    UseLatestRestorableTime): CloudFormation's RDS handler calls RestoreDBInstanceToPointInTime
    (moto's template path made a read replica instead)."""
    backend = rds_models.rds_backends[account_id][region_name]
    overrides = _restore_overrides(resource_name, properties)
    target = overrides.pop("db_instance_identifier")
    overrides["restore_time"] = properties.get("RestoreTime")
    overrides["use_latest_restorable_time"] = properties.get("UseLatestRestorableTime")
    database = backend.restore_db_instance_to_point_in_time(str(properties["SourceDBInstanceIdentifier"]), target, overrides)
    database.tags = list(properties.get("Tags") or [])
    return database


def _restore_from_cloudformation(resource_name: str, properties: dict[str, Any], account_id: str, region_name: str) -> Any:
    backend = rds_models.rds_backends[account_id][region_name]
    overrides = _restore_overrides(resource_name, properties)
    # Instances created from templates keep AllocatedStorage as the template's string; RDS
    # compares it with the requested size as a number.
    snapshot = backend.database_snapshots.get(properties["DBSnapshotIdentifier"])
    source = getattr(snapshot, "database", None)
    if source is not None and isinstance(getattr(source, "allocated_storage", None), str):
        source.allocated_storage = int(source.allocated_storage)
    database = backend.restore_db_instance_from_db_snapshot(properties["DBSnapshotIdentifier"], overrides)
    # The restored instance carries the template's tags, not the source instance's.
    database.tags = list(properties.get("Tags") or [])
    return database


# Properties of AWS::RDS::DBCluster and the RDS arguments they become. Engine, EngineVersion,
# DatabaseName and the master user of a restored cluster come from its source, as on AWS.
_CLUSTER_PROPERTIES = {
    "Engine": "engine",
    "EngineVersion": "engine_version",
    "EngineMode": "engine_mode",
    "DatabaseName": "database_name",
    "MasterUsername": "master_username",
    "MasterUserPassword": "master_user_password",
    "Port": "port",
    "BackupRetentionPeriod": "backup_retention_period",
    "PreferredBackupWindow": "preferred_backup_window",
    "PreferredMaintenanceWindow": "preferred_maintenance_window",
    "DBClusterParameterGroupName": "db_cluster_parameter_group_name",
    "CopyTagsToSnapshot": "copy_tags_to_snapshot",
    "DeletionProtection": "deletion_protection",
    "StorageEncrypted": "storage_encrypted",
    "KmsKeyId": "kms_key_id",
    "AvailabilityZones": "availability_zones",
    "EnableIAMDatabaseAuthentication": "enable_iam_database_authentication",
    "EnableCloudwatchLogsExports": "enable_cloudwatch_logs_exports",
    "StorageType": "storage_type",
    "Iops": "iops",
    "DBClusterInstanceClass": "db_cluster_instance_class",
    "ManageMasterUserPassword": "manage_master_user_password",
}
_CLUSTER_FROM_SOURCE = ("Engine", "EngineVersion", "EngineMode", "DatabaseName", "MasterUsername", "MasterUserPassword", "StorageEncrypted", "ManageMasterUserPassword")
_INT_PROPERTIES = {"port", "backup_retention_period", "iops", "allocated_storage"}
_BOOL_PROPERTIES = {"copy_tags_to_snapshot", "deletion_protection", "storage_encrypted", "enable_iam_database_authentication", "manage_master_user_password", "publicly_accessible", "auto_minor_version_upgrade", "multi_az"}


def _rds_value(key: str, value: Any) -> Any:
    if key in _INT_PROPERTIES:
        return int(value)
    if key in _BOOL_PROPERTIES:
        return _truthy(value)
    return value


def _stack_tags_with(template_tags: Any, logical_id: str | None) -> list[dict[str, str]]:
    """The tags CloudFormation puts on a resource: the resource's own, the stack's (propagated;
    the resource's win) and aws:cloudformation:stack-name/stack-id/logical-id."""
    resource_map = getattr(_request_local, "resource_map", None)
    merged: dict[str, str] = {}
    for tag in template_tags or []:
        merged[str(tag["Key"])] = str(tag["Value"])
    # moto's resource map keeps the stack's tags, with aws:cloudformation:* ones of its own.
    for key, value in dict(getattr(resource_map, "tags", None) or {}).items():
        if not str(key).startswith("aws:"):
            merged.setdefault(str(key), str(value))
    if resource_map is not None:
        merged["aws:cloudformation:stack-name"] = str(resource_map["AWS::StackName"])
        merged["aws:cloudformation:stack-id"] = str(resource_map["AWS::StackId"])
        if logical_id:
            merged["aws:cloudformation:logical-id"] = logical_id
    return [{"Key": key, "Value": value} for key, value in merged.items()]


def _create_cluster_from_cloudformation(resource_name: str, properties: dict[str, Any], account_id: str, region_name: str, logical_id: str | None = None) -> Any:
    """What CloudFormation does for AWS::RDS::DBCluster: RestoreDBClusterToPointInTime with
    SourceDBClusterIdentifier, RestoreDBClusterFromSnapshot with SnapshotIdentifier, else
    CreateDBCluster."""
    backend = rds_models.rds_backends[account_id][region_name]
    identifier = resource_name.replace("_", "-").lower()
    source = properties.get("SourceDBClusterIdentifier")
    snapshot = properties.get("SnapshotIdentifier")
    restoring = bool(source) or bool(snapshot)
    kwargs: dict[str, Any] = {"db_cluster_identifier": identifier}
    for prop, key in _CLUSTER_PROPERTIES.items():
        if restoring and prop in _CLUSTER_FROM_SOURCE:
            continue
        if properties.get(prop) not in (None, ""):
            kwargs[key] = _rds_value(key, properties[prop])
    subnet_group = properties.get("DBSubnetGroupName")
    if subnet_group:
        kwargs["db_subnet_group_name"] = getattr(subnet_group, "name", subnet_group)
    security_groups = properties.get("VpcSecurityGroupIds")
    if security_groups:
        kwargs["vpc_security_group_ids"] = [str(group) for group in security_groups]
    kwargs["tags"] = _stack_tags_with(properties.get("Tags"), logical_id)
    if source:
        cluster = backend.restore_db_cluster_to_point_in_time(
            identifier,
            str(source),
            restore_type=properties.get("RestoreType") or "full-copy",
            restore_to_time=properties.get("RestoreToTime") or None,
            use_latest_restorable_time=_truthy(properties.get("UseLatestRestorableTime")),
            **{key: value for key, value in kwargs.items() if key != "db_cluster_identifier"},
        )
    elif snapshot:
        cluster = backend.restore_db_cluster_from_snapshot(str(snapshot), kwargs)
    else:
        if identifier in backend.clusters:
            raise RDSClientError("DBClusterAlreadyExistsFault", "DB Cluster already exists")
        cluster = backend.create_db_cluster(kwargs)
    return cluster


def _create_cluster_instance_from_cloudformation(resource_name: str, properties: dict[str, Any], account_id: str, region_name: str, logical_id: str | None = None) -> Any:
    """An AWS::RDS::DBInstance with DBClusterIdentifier: CreateDBInstance into that cluster
    (moto's template path ignored the property and made a stand-alone instance)."""
    backend = rds_models.rds_backends[account_id][region_name]
    cluster_id = _cluster_id(str(properties["DBClusterIdentifier"]))
    cluster = backend.clusters.get(cluster_id)
    kwargs: dict[str, Any] = {
        "db_instance_identifier": resource_name.replace("_", "-").lower(),
        "db_cluster_identifier": cluster_id,
        "db_instance_class": properties.get("DBInstanceClass"),
        "engine": properties.get("Engine") or getattr(cluster, "engine", None),
        "tags": _stack_tags_with(properties.get("Tags"), logical_id),
    }
    for prop, key in (
        ("AvailabilityZone", "availability_zone"),
        ("PubliclyAccessible", "publicly_accessible"),
        ("DBParameterGroupName", "db_parameter_group_name"),
        ("AutoMinorVersionUpgrade", "auto_minor_version_upgrade"),
        ("CopyTagsToSnapshot", "copy_tags_to_snapshot"),
        ("PromotionTier", "promotion_tier"),
        ("PreferredMaintenanceWindow", "preferred_maintenance_window"),
    ):
        if properties.get(prop) not in (None, ""):
            kwargs[key] = int(properties[prop]) if key == "promotion_tier" else _rds_value(key, properties[prop])
    subnet_group = properties.get("DBSubnetGroupName")
    if subnet_group:
        kwargs["db_subnet_group_name"] = getattr(subnet_group, "name", subnet_group)
    if cluster is not None:
        kwargs["port"] = cluster.port
    return backend.create_db_instance(kwargs)


def _install_cloudformation_clusters() -> None:
    from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
    from moto.core.common_models import CloudFormationModel

    cluster_cls = rds_models.DBCluster

    class DBClusterTemplateModel(CloudFormationModel):
        """Registers AWS::RDS::DBCluster with moto's CloudFormation (which skipped it); the
        resource it creates is moto's own DBCluster."""

        # moto's model metaclass files every model under the service named in its module.
        __module__ = "moto.rds.models"

        @staticmethod
        def cloudformation_name_type() -> str:
            return "DBClusterIdentifier"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::RDS::DBCluster"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in ("Endpoint.Address", "Endpoint.Port", "ReadEndpoint.Address", "DBClusterArn", "DBClusterResourceId")

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[no-untyped-def]
            properties = cloudformation_json.get("Properties") or {}
            return _create_cluster_from_cloudformation(resource_name, properties, account_id, region_name, kwargs.get("LogicalId"))

    cfn_parsing.get_model_map.cache_clear()
    cfn_parsing.get_name_type_map.cache_clear()

    def get_cfn_attribute(self, attribute_name):  # type: ignore[no-untyped-def]
        if attribute_name == "Endpoint.Address":
            return self.endpoint
        if attribute_name == "Endpoint.Port":
            return str(self.port)
        if attribute_name == "ReadEndpoint.Address":
            return self.reader_endpoint
        if attribute_name == "DBClusterArn":
            return self.db_cluster_arn
        if attribute_name == "DBClusterResourceId":
            return self.db_cluster_resource_id
        raise UnformattedGetAttTemplateException()

    cluster_cls.get_cfn_attribute = get_cfn_attribute
    cluster_cls.has_cfn_attr = DBClusterTemplateModel.has_cfn_attr
    # The identifier CloudFormation recorded at creation (a rename does not move the resource).
    cluster_cls.physical_resource_id = property(
        lambda self: self.__dict__.get("_envclone_cfn_id") or self.db_cluster_identifier
    )
    # The stack waits for the cluster as for its instances.
    cluster_cls.is_created = lambda self: self.status != "creating"

    # Conditions: moto reads the short form `!Condition X` as {"Fn::Condition": X}, which its
    # condition evaluator does not know, so `!Not [!Condition X]` was always true.
    orig_parse_condition = cfn_parsing.parse_condition

    def normalise(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::Condition"}:
                return {"Condition": node["Fn::Condition"]}
            return {key: normalise(value) for key, value in node.items()}
        if isinstance(node, list):
            return [normalise(item) for item in node]
        return node

    @functools.wraps(orig_parse_condition)
    def parse_condition(condition, resources_map, condition_map):  # type: ignore[no-untyped-def]
        return orig_parse_condition(normalise(condition), resources_map, condition_map)

    cfn_parsing.parse_condition = parse_condition


def _install_cloudformation() -> None:
    db_cls = rds_models.DBInstance
    orig_db_from_cfn = db_cls.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[no-untyped-def]
        properties = cloudformation_json.get("Properties") or {}
        if properties.get("DBClusterIdentifier") and not properties.get("DBSnapshotIdentifier"):
            return _create_cluster_instance_from_cloudformation(resource_name, properties, account_id, region_name, kwargs.get("LogicalId"))
        if properties.get("DBSnapshotIdentifier"):
            return _restore_from_cloudformation(resource_name, properties, account_id, region_name)
        if properties.get("SourceDBInstanceIdentifier") and (properties.get("RestoreTime") or _truthy(properties.get("UseLatestRestorableTime"))):
            return _restore_to_point_in_time_from_cloudformation(resource_name, properties, account_id, region_name)
        if isinstance(properties.get("AllocatedStorage"), str) and properties["AllocatedStorage"].isdigit():
            # RDS keeps storage as a number; moto keeps the template's string, which breaks a
            # later restore's size comparison.
            properties = dict(properties, AllocatedStorage=int(properties["AllocatedStorage"]))
            cloudformation_json = dict(cloudformation_json, Properties=properties)
        if properties.get("Port") in (None, "") and properties.get("Engine"):
            # moto's template path defaults every engine to 3306; RDS uses the engine's port.
            try:
                port = rds_models.DBInstance.default_port(str(properties["Engine"]).lower())
            except KeyError:
                port = None
            if port is not None:
                cloudformation_json = dict(cloudformation_json, Properties=dict(properties, Port=port))
        return orig_db_from_cfn(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)

    db_cls.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)

    # A stack is CREATE_COMPLETE on AWS only once its DB instances are available, and shows
    # its outputs only then.
    db_cls.is_created = lambda self: self.status != "creating"
    orig_outputs = cfn_models.Stack.outputs
    cfn_models.Stack.outputs = property(
        lambda self: None if self.status == "CREATE_IN_PROGRESS" else orig_outputs.fget(self)
    )

    # Remember which resource failed, for the stack events (the innermost failure wins: a
    # resource's Ref to another resource creates that one first).
    orig_parse_and_create = cfn_parsing.parse_and_create_resource

    @functools.wraps(orig_parse_and_create)
    def parse_and_create_resource(logical_id, resource_json, resources_map, account_id, region_name):  # type: ignore[no-untyped-def]
        # The stack being created, for what a resource takes from it (its tags).
        outer = getattr(_request_local, "resource_map", None)
        _request_local.resource_map = resources_map
        try:
            return orig_parse_and_create(logical_id, resource_json, resources_map, account_id, region_name)
        except Exception as exc:
            if not hasattr(exc, "_envclone_logical_id"):
                exc._envclone_logical_id = logical_id  # type: ignore[attr-defined]
                exc._envclone_resource_type = resource_json.get("Type")  # type: ignore[attr-defined]
            raise
        finally:
            _request_local.resource_map = outer

    cfn_parsing.parse_and_create_resource = parse_and_create_resource

    backend_cls = cfn_models.CloudFormationBackend
    orig_create_stack = backend_cls.create_stack

    @functools.wraps(orig_create_stack)
    def create_stack(self, name, template, parameters, *args, **kwargs):  # type: ignore[no-untyped-def]
        before = set(self.stacks)
        try:
            stack = orig_create_stack(self, name, template, parameters, *args, **kwargs)
        except Exception as exc:
            new_ids = [stack_id for stack_id in self.stacks if stack_id not in before]
            if not new_ids:
                # Failed before the stack existed (template or parameter errors): AWS answers
                # those synchronously too.
                raise
            stack = self.stacks[new_ids[0]]
            _fail_stack_creation(self, stack, exc, getattr(_request_local, "on_failure", "ROLLBACK"))
            return stack
        stack._envclone_created = True
        return stack

    backend_cls.create_stack = create_stack

    orig_execute = backend_cls.execute_change_set

    @functools.wraps(orig_execute)
    def execute_change_set(self, change_set_name, stack_name=None):  # type: ignore[no-untyped-def]
        change_set = self.change_sets.get(change_set_name) or next(
            (cs for cs in self.change_sets.values() if cs.change_set_name == change_set_name), None
        )
        try:
            orig_execute(self, change_set_name, stack_name)
        except Exception as exc:
            # The same as create_stack for a CREATE change set: the call succeeds and the stack
            # rolls back. (moto answered with the resource's error and left the stack in
            # REVIEW_IN_PROGRESS.) UPDATE change sets keep moto's behaviour.
            if change_set is None or change_set.change_set_type != "CREATE" or change_set.stack_id not in self.stacks:
                raise
            change_set.execution_status = "EXECUTE_FAILED"
            _fail_stack_creation(self, self.stacks[change_set.stack_id], exc, "ROLLBACK")
            return
        if change_set is not None and change_set.change_set_type == "CREATE" and change_set.stack_id in self.stacks:
            # moto marks it CREATE_COMPLETE at once; let it wait for its DBs like create_stack.
            stack = self.stacks[change_set.stack_id]
            stack._envclone_created = True
            if not stack.resource_map.creation_complete():
                stack.status = "CREATE_IN_PROGRESS"
                if stack.events and stack.events[-1].resource_status == "CREATE_COMPLETE":
                    stack.events.pop()

    backend_cls.execute_change_set = execute_change_set

    # moto settles a stack only when a resource reports back; ours settle with time, so every
    # read looks at the stacks still in progress first.
    for method in ("describe_stacks", "list_stacks", "get_stack"):
        original = getattr(backend_cls, method)

        def reader(self, *args, __original=original, **kwargs):  # type: ignore[no-untyped-def]
            _settle_stacks(self)
            return __original(self, *args, **kwargs)

        functools.update_wrapper(reader, original)
        setattr(backend_cls, method, reader)

    orig_resp_create = CloudFormationResponse.create_stack
    orig_from_s3 = CloudFormationResponse._get_stack_from_s3_url

    # CloudFormation's template size quotas ("CloudFormation quotas": a template body of at
    # most 51,200 bytes in a request, 1 MB from an S3 object); moto takes any size. A TemplateURL
    # whose object moto cannot find is CloudFormation's ValidationError, not moto's S3 error.
    @functools.wraps(orig_from_s3)
    def from_s3(self, template_url):  # type: ignore[no-untyped-def]
        from moto.cloudformation.exceptions import ValidationError as CfnValidationError

        try:
            body = orig_from_s3(self, template_url)
        except Exception as exc:  # moto's MissingBucket/MissingKey, or a URL it cannot split
            raise CfnValidationError(message=f"S3 error: Access Denied ({template_url}: {_error_code(exc)})") from exc
        if len(body.encode("utf-8")) > TEMPLATE_URL_MAX:
            raise CfnValidationError(message=f"Template may not exceed {TEMPLATE_URL_MAX} bytes in size.")
        return body

    CloudFormationResponse._get_stack_from_s3_url = from_s3

    @functools.wraps(orig_resp_create)
    def resp_create_stack(self):  # type: ignore[no-untyped-def]
        from moto.cloudformation.exceptions import ValidationError as CfnValidationError

        body = self._get_param("TemplateBody")
        if body is not None and len(body.encode("utf-8")) > TEMPLATE_BODY_MAX:
            raise CfnValidationError(
                message="1 validation error detected: Value at 'templateBody' failed to satisfy "
                f"constraint: Member must have length less than or equal to {TEMPLATE_BODY_MAX}"
            )
        name = self._get_param("StackName")
        token = self._get_param("ClientRequestToken")
        backend = self.cloudformation_backend
        if token:
            # A retried CreateStack (the SDK retries on a timeout or a 5xx) with the same token
            # is answered with the stack it created, as AWS does.
            for stack in list(backend.stacks.values()):
                if stack.name == name and getattr(stack, "_envclone_token", None) == token:
                    return ActionResult({"StackId": stack.stack_id})
        on_failure = self._get_param("OnFailure")
        if not on_failure:
            on_failure = "DO_NOTHING" if _truthy(self._get_param("DisableRollback")) else "ROLLBACK"
        _request_local.on_failure = on_failure
        try:
            result = orig_resp_create(self)
        finally:
            _request_local.on_failure = "ROLLBACK"
        if token:
            for stack in list(backend.stacks.values()) + list(backend.deleted_stacks.values()):
                if stack.name == name and getattr(stack, "_envclone_token", None) is None:
                    stack._envclone_token = token
        return result

    CloudFormationResponse.create_stack = resp_create_stack

    # DescribeStacks masks NoEcho values: see parameter_list in _install_public_templates.


def _settle_stacks(backend: Any) -> None:
    for stack in list(backend.stacks.values()):
        if stack.status == "DELETE_IN_PROGRESS":
            _settle_stack_delete(backend, stack)
            continue
        if stack.status == "CREATE_IN_PROGRESS" and getattr(stack, "_envclone_created", False):
            try:
                stack.verify_readiness()
            except Exception as exc:  # pragma: no cover - defensive: never break a read
                _log(f"settling stack {stack.name} failed: {exc!r}")


def _error_reason(exc: BaseException) -> str:
    """A resource's failure as CloudFormation words it: the service's message, then which
    service and error code."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    module = type(exc).__module__.split(".")
    service = module[1].capitalize() if len(module) > 1 and module[0] == "moto" else "Unknown"
    if isinstance(code, str):
        return f"{message} (Service: {service}, Error Code: {code})"
    return message


def _fail_stack_creation(backend: Any, stack: Any, exc: BaseException, on_failure: str) -> None:
    """What AWS does when a resource fails to create: CREATE_FAILED, then by default a rollback
    that deletes what was created, ending in ROLLBACK_COMPLETE (kept until deleted)."""
    logical_id = getattr(exc, "_envclone_logical_id", None)
    resource_type = getattr(exc, "_envclone_resource_type", None)
    reason = _error_reason(exc)
    _log(f"stack {stack.name}: resource {logical_id} failed: {reason}")

    def event(logical: str, rtype: str, status: str, why: str | None, physical: str = "") -> None:
        stack.events.append(
            cfn_models.Event(
                stack_id=stack.stack_id,
                stack_name=stack.name,
                logical_resource_id=logical,
                physical_resource_id=physical,
                resource_type=rtype,
                resource_status=status,
                resource_status_reason=why,
                resource_properties=None,
            )
        )

    if logical_id:
        event(logical_id, resource_type or "", "CREATE_FAILED", reason)
        stack_reason = f"The following resource(s) failed to create: [{logical_id}]. "
    else:
        stack_reason = reason + " "

    # Exports of a stack that failed are never published.
    for export_name, export in list(backend.exports.items()):
        if export.exporting_stack_id == stack.stack_id:
            backend.exports.pop(export_name, None)

    resource_map = stack.resource_map
    # moto's resource map creates a resource on first access, so a later read (outputs, the
    # resource list) would try the failed resource again: the stack keeps only what exists,
    # and no outputs, as a failed stack on AWS.
    stack.output_map._output_json_map = {}
    stack.output_map._parsed_outputs = {}
    resource_map._resource_json_map = {
        logical: resource_json
        for logical, resource_json in resource_map._resource_json_map.items()
        if resource_map._parsed_resources.get(logical) is not None
    }

    if on_failure == "DO_NOTHING":
        stack.status = "CREATE_FAILED"
        stack.status_reason = stack_reason.strip()
        stack._add_stack_event("CREATE_FAILED", resource_status_reason=stack.status_reason)
        return

    stack.status = "ROLLBACK_IN_PROGRESS"
    stack.status_reason = stack_reason + "Rollback requested by user."
    stack._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason=stack.status_reason)
    resource_map._envclone_rolling_back = True
    try:
        resource_map.delete()
    except Exception as delete_exc:
        _log(f"stack {stack.name}: rollback could not delete everything: {delete_exc!r}")
    # A ROLLBACK_COMPLETE stack has no resources left.
    resource_map._resource_json_map = {}
    stack.status = "ROLLBACK_COMPLETE"
    stack._add_stack_event("ROLLBACK_COMPLETE")
    if on_failure == "DELETE":
        if stack.enable_termination_protection:
            # The rollback's delete is refused like any other: the stack stays ROLLBACK_COMPLETE
            # (not checked against AWS; CreateStack itself still succeeds).
            _log(f"stack {stack.name}: termination protection enabled, not deleted after rollback")
            return
        backend.delete_stack(stack.stack_id)


# ================================================================ DynamoDB: BatchWriteItem limits


def _install_dynamodb() -> None:
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.responses import DynamoHandler

    orig = DynamoHandler.batch_write_item

    @functools.wraps(orig)
    def batch_write_item(self):  # type: ignore[no-untyped-def]
        # moto 5.2.5 writes any number of requests in one BatchWriteItem. DynamoDB takes 1 to
        # 25 ("BatchWriteItem": RequestItems, "a maximum of 25 items"; more is a
        # ValidationException) in at most 16 MB ("The total request size exceeds 16 MB").
        # Checked for issue 12 (DynamoDB tables): the engine's batches must hold here too.
        requests = sum(len(v) for v in (self.body.get("RequestItems") or {}).values())
        if requests < 1 or requests > 25:
            raise MockValidationException(
                "1 validation error detected: Value at 'requestItems' failed to satisfy "
                "constraint: Map value must satisfy constraint: [Member must have length "
                f"less than or equal to 25, Member must have length greater than or equal to 1] "
                f"({requests} given)"
            )
        if len(getattr(self, "raw_body", b"") or b"") > 16 * 1024 * 1024:
            raise MockValidationException("The total request size exceeds 16 MB")
        return orig(self)

    DynamoHandler.batch_write_item = batch_write_item


# ================================================================ S3 Inventory configurations


def _install_s3_inventory() -> None:
    # moto 5 stores an inventory configuration without its IncludedObjectVersions and lists
    # every configuration as "All" (ListBucketInventoryConfigurations). S3 keeps what was put
    # ("Configuring Amazon S3 Inventory": Current or All), and envclone's --manifest inventory
    # refuses an All-versions report: kept here and listed as put.
    orig_put = s3_models.S3Backend.put_bucket_inventory_configuration

    @functools.wraps(orig_put)
    def put(self, bucket_name, inventory_configuration):  # type: ignore[no-untyped-def]
        orig_put(self, bucket_name, inventory_configuration)
        config = self.get_bucket(bucket_name).inventory_configs[inventory_configuration["Id"]]
        config.included_versions = inventory_configuration.get("IncludedObjectVersions", "All")

    s3_models.S3Backend.put_bucket_inventory_configuration = put
    orig_list = S3Response.list_bucket_inventory_configurations

    @functools.wraps(orig_list)
    def list_configs(self):  # type: ignore[no-untyped-def]
        # moto's own answer to a bucket without configurations is not one the SDK parses: the
        # empty list is answered here too.
        configs = self.backend.list_bucket_inventory_configurations(bucket_name=self.bucket_name)
        body = "".join(_inventory_config_xml(c) for c in configs)
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListInventoryConfigurationsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"{body}<IsTruncated>false</IsTruncated></ListInventoryConfigurationsResult>"
        )
        return 200, {"Content-Type": "application/xml"}, xml

    S3Response.list_bucket_inventory_configurations = list_configs


def _inventory_config_xml(c: Any) -> str:
    e = _xml_escape
    s3 = (c.destination or {}).get("S3BucketDestination", {})
    prefix = f"<Prefix>{e(s3['Prefix'])}</Prefix>" if s3.get("Prefix") else ""
    filt = f"<Filter><Prefix>{e(c.filters['Prefix'])}</Prefix></Filter>" if c.filters and c.filters.get("Prefix") else ""
    enabled = str(c.is_enabled).lower()
    return (
        f"<InventoryConfiguration><Id>{e(c.id)}</Id><IsEnabled>{enabled}</IsEnabled>{filt}"
        f"<Destination><S3BucketDestination><Format>{e(s3.get('Format', 'CSV'))}</Format>"
        f"<Bucket>{e(s3.get('Bucket', ''))}</Bucket>{prefix}</S3BucketDestination></Destination>"
        f"<IncludedObjectVersions>{e(getattr(c, 'included_versions', 'All'))}</IncludedObjectVersions>"
        f"<Schedule><Frequency>{e((c.schedule or {}).get('Frequency', 'Daily'))}</Frequency></Schedule>"
        "</InventoryConfiguration>"
    )


def publish_inventory(bucket: str, config_id: str) -> str:
    """Delivers the inventory report of `bucket`'s configuration `config_id` now, as S3 does
    daily or weekly ("Locating your inventory list"): the current objects under its filter as
    gzip-compressed CSV (values quoted, keys URL-encoded) under <prefix>/<bucket>/<id>/data/,
    then <prefix>/<bucket>/<id>/<YYYY-MM-DDTHH-MMZ>/manifest.json naming them and
    manifest.checksum. Returns the manifest's key."""
    import gzip
    import hashlib

    account = "123456789012"
    backend = _s3_backend(account)
    with MOTO_LOCK:
        config = backend.get_bucket(bucket).inventory_configs[config_id]
        s3 = config.destination["S3BucketDestination"]
        destination = s3["Bucket"].split(":::", 1)[-1]
        prefix = (config.filters or {}).get("Prefix") or ""
        rows = io.StringIO()
        for key in backend.get_bucket(bucket).keys.values():
            if not key.name.startswith(prefix) or getattr(key, "is_latest", True) is False:
                continue
            rows.write(
                f'"{bucket}","{urllib.parse.quote(key.name, safe="")}","{key.size}",'
                f'"{_rfc3339(key.last_modified)}","{key.etag.strip(chr(34))}"\n'
            )
        data = gzip.compress(rows.getvalue().encode())
        base = f"{s3['Prefix'].rstrip('/')}/{bucket}/{config_id}" if s3.get("Prefix") else f"{bucket}/{config_id}"
        now = datetime.datetime.now(datetime.timezone.utc)
        data_key = f"{base}/data/{hashlib.md5(data).hexdigest()}.csv.gz"
        backend.put_object(destination, data_key, data)
        manifest = json.dumps({
            "sourceBucket": bucket,
            "destinationBucket": f"arn:aws:s3:::{destination}",
            "version": "2016-11-30",
            "creationTimestamp": str(int(now.timestamp() * 1000)),
            "fileFormat": "CSV",
            "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag",
            "files": [{"key": data_key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()}],
        }).encode()
        key = f"{base}/{now.strftime('%Y-%m-%dT%H-%MZ')}/manifest.json"
        backend.put_object(destination, key, manifest)
        backend.put_object(destination, key.replace("manifest.json", "manifest.checksum"), hashlib.md5(manifest).hexdigest().encode())
    return key


def _inventory_tasks(manifest: bytes, backend: Any) -> list[tuple[str, str]]:
    """The (bucket, key) rows of an inventory report, by its manifest.json
    (S3InventoryReport_CSV_20161130: the gzip CSV files it names, columns by its fileSchema)."""
    import gzip

    m = json.loads(manifest)
    if m.get("fileFormat") != "CSV":
        raise ValueError(f"the inventory report is {m.get('fileFormat')}, not CSV")
    schema = [c.strip() for c in m["fileSchema"].split(",")]
    b, k = schema.index("Bucket"), schema.index("Key")
    destination = m["destinationBucket"].split(":::", 1)[-1]
    tasks = []
    for f in m["files"]:
        with MOTO_LOCK:
            obj = backend.get_object(destination, f["key"])
            data = obj.value if obj is not None else None
        if data is None:
            raise ValueError(f"inventory file s3://{destination}/{f['key']} does not exist")
        for row in csv.reader(io.StringIO(gzip.decompress(data).decode("utf-8"))):
            if row:
                tasks.append((row[b], urllib.parse.unquote(row[k])))
    return tasks


# ================================================================ S3: parts of multipart objects


def _install_s3() -> None:
    multipart_cls = s3_models.FakeMultipart
    orig_complete = multipart_cls.complete

    @functools.wraps(orig_complete)
    def complete(self, body):  # type: ignore[no-untyped-def]
        # moto keeps every uploaded part but only the listed ones make the object; remember
        # the sizes of those, in order, for PartNumber reads.
        body = list(body)
        result = orig_complete(self, iter(body))
        self._envclone_part_sizes = [self.parts[part_number].size for part_number, _ in body]
        return result

    multipart_cls.complete = complete

    # moto 5.2.5 gives an SSE-KMS object the MD5 of its bytes as its ETag, and its copies the
    # same ETag. S3 does not: "Objects created by the PUT Object, POST Object, or Copy
    # operation ... that are encrypted by SSE-C or SSE-KMS, have ETags that are not an MD5
    # digest of their object data" (S3 API Reference, Object: ETag), and an object's copy has
    # another one. Each SSE-KMS write (a FakeKey) gets its own random ETag here, keeping a
    # multipart upload's `-<parts>` suffix. Checked for issue 11 item 5.
    key_cls = s3_models.FakeKey
    orig_etag = key_cls.etag

    def kms_etag(self):  # type: ignore[no-untyped-def]
        value = orig_etag.fget(self)
        if not str(self.encryption or "").startswith("aws:kms"):
            return value
        mine = getattr(self, "_envclone_kms_etag", None)
        if mine is None:
            _, dash, parts = value.strip('"').rpartition("-")
            suffix = f"-{parts}" if dash and parts.isdigit() else ""
            mine = f'"{uuid.uuid4().hex}{suffix}"'
            self._envclone_kms_etag = mine
        return mine

    key_cls.etag = property(kms_etag)

    backend_cls = s3_models.S3Backend
    orig_copy = backend_cls.copy_object

    @functools.wraps(orig_copy)
    def copy_object(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs):  # type: ignore[no-untyped-def]
        # CopyObject writes a single-part object on AWS (its ETag is a plain MD5, which moto
        # gets right), but moto lets the copy share the source's multipart record, which would
        # make PartNumber reads of the copy describe the source's parts.
        result = orig_copy(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs)
        bucket = self.get_bucket(dest_bucket_name)
        new_key = bucket.keys.get(dest_key_name)
        if new_key is not None and new_key is not src_key:
            new_key.multipart = None
        return result

    backend_cls.copy_object = copy_object

    orig_head = S3Response.head_object

    @functools.wraps(orig_head)
    def head_object(self, bucket_name, query, key_name, headers):  # type: ignore[no-untyped-def]
        part = _part_request(self, bucket_name, key_name, query)
        if part is None:
            return orig_head(self, bucket_name, query, key_name, headers)
        status, response_headers, _ = orig_head(self, bucket_name, _without_part(query), key_name, headers)
        return _part_response(status, response_headers, part, b"")

    S3Response.head_object = head_object

    orig_get = S3Response.get_object

    @functools.wraps(orig_get)
    def get_object(self):  # type: ignore[no-untyped-def]
        part = _part_request(self, self.bucket_name, self.parse_key_name(), self.querystring)
        if part is None:
            return orig_get(self)
        saved = self.querystring
        self.querystring = _without_part(saved)
        try:
            status, response_headers, body = orig_get(self)
        finally:
            self.querystring = saved
        if status == 200:
            start, end = part[1], part[2]
            body = body[start : end + 1]
        return _part_response(status, response_headers, part, body)

    S3Response.get_object = get_object

    # moto 5.2.5 names the root element of these two answers after the operation
    # (<GetBucketVersioningResponse>, <GetBucketNotificationResponse>); S3 answers
    # <VersioningConfiguration> and <NotificationConfiguration> (S3 API Reference,
    # GetBucketVersioning and GetBucketNotificationConfiguration, "Response Syntax"), and the
    # Rust SDK refuses any other root. Checked for issue 11 item 9.
    for method, moto_root, s3_root in [
        ("get_bucket_versioning", "GetBucketVersioningResponse", "VersioningConfiguration"),
        ("get_bucket_notification", "GetBucketNotificationResponse", "NotificationConfiguration"),
    ]:
        _rename_root(method, moto_root, s3_root)


def _rename_root(method: str, moto_root: str, s3_root: str) -> None:
    original = getattr(S3Response, method)

    @functools.wraps(original)
    def renamed(self):  # type: ignore[no-untyped-def]
        status, headers, body = original(self)
        if isinstance(body, bytes):
            body = body.replace(f"<{moto_root}".encode(), f"<{s3_root}".encode()).replace(
                f"</{moto_root}>".encode(), f"</{s3_root}>".encode()
            )
        elif isinstance(body, str):
            body = body.replace(f"<{moto_root}", f"<{s3_root}").replace(f"</{moto_root}>", f"</{s3_root}>")
        return status, headers, body

    setattr(S3Response, method, renamed)


def _without_part(query: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in query.items() if k != "partNumber"}


def _part_request(response: Any, bucket_name: str, key_name: str, query: dict[str, Any]) -> tuple[int, int, int, int, int] | None:
    """For a PartNumber read of a completed multipart object: (part, first byte, last byte,
    object size, parts count). None leaves the request to moto (plain objects: moto already
    answers part 1 as the whole object and refuses higher parts)."""
    raw = (query.get("partNumber") or [None])[0]
    if not raw:
        return None
    try:
        part_number = int(raw)
        bucket = response.backend.get_bucket(bucket_name)
    except Exception:
        return None
    version_id = (query.get("versionId") or [None])[0]
    key = None
    if version_id is None:
        key = bucket.keys.get(key_name)
    else:
        for candidate in bucket.keys.getlist(key_name, default=[]):
            if str(getattr(candidate, "version_id", None)) == str(version_id):
                key = candidate
    sizes = getattr(getattr(key, "multipart", None), "_envclone_part_sizes", None)
    if not isinstance(key, s3_models.FakeKey) or not sizes:
        return None
    if part_number < 1 or part_number > len(sizes):
        # S3 answers 416 for a part number past the last part; moto does the same for plain
        # objects with this exception.
        raise s3_exceptions.RangeNotSatisfiable()
    first = sum(sizes[: part_number - 1])
    last = first + sizes[part_number - 1] - 1
    return part_number, first, last, key.size, len(sizes)


def _part_response(status: int, headers: dict[str, Any], part: tuple[int, int, int, int, int], body: bytes) -> Any:
    if status != 200:
        return status, headers, body
    _, first, last, total, count = part
    # As S3: 206, the part's length and range, the whole object's ETag, and the parts count.
    for name in list(headers):
        if name.lower() in ("content-length", "content-range"):
            headers.pop(name)
    headers["content-length"] = str(last - first + 1)
    headers["content-range"] = f"bytes {first}-{last}/{total}"
    headers["x-amz-mp-parts-count"] = str(count)
    return 206, headers, body


# ============================================================================ Auto Scaling rules


def _install_autoscaling() -> None:
    backend_cls = AutoScalingBackend
    orig_enter = backend_cls.enter_standby_instances

    def group_or_fail(backend: Any, group_name: str) -> Any:
        group = backend.autoscaling_groups.get(group_name)
        if group is None:
            raise AsgValidationError(f"AutoScalingGroup name not found - {group_name}")
        return group

    @functools.wraps(orig_enter)
    def enter_standby_instances(self, group_name, instance_ids, should_decrement):  # type: ignore[no-untyped-def]
        group = group_or_fail(self, group_name)
        states = {s.instance.id: s.lifecycle_state for s in group.instance_states}
        for instance_id in instance_ids:
            if instance_id not in states:
                raise AsgValidationError(
                    f"The instance {instance_id} is not part of Auto Scaling group {group_name}."
                )
            if states[instance_id] != "InService":
                raise AsgValidationError(f"The instance {instance_id} is not in InService.")
        if should_decrement:
            desired = group.desired_capacity or 0
            if desired - len(instance_ids) < group.min_size:
                raise AsgValidationError(
                    f"AutoScalingGroup {group_name} has min-size={group.min_size}, "
                    f"max-size={group.max_size}, and desired-capacity={desired}. You don't have "
                    f"enough instances in the Auto Scaling group to decrement the desired "
                    f"capacity by {len(instance_ids)}."
                )
        return orig_enter(self, group_name, instance_ids, should_decrement)

    backend_cls.enter_standby_instances = enter_standby_instances

    orig_exit = backend_cls.exit_standby_instances

    @functools.wraps(orig_exit)
    def exit_standby_instances(self, group_name, instance_ids):  # type: ignore[no-untyped-def]
        group = group_or_fail(self, group_name)
        states = {s.instance.id: s.lifecycle_state for s in group.instance_states}
        for instance_id in instance_ids:
            if states.get(instance_id) != "Standby":
                raise AsgValidationError(f"The instance {instance_id} is not in Standby.")
        desired = group.desired_capacity or 0
        if desired + len(instance_ids) > group.max_size:
            raise AsgValidationError(
                f"AutoScalingGroup {group_name} has min-size={group.min_size}, "
                f"max-size={group.max_size}, and desired-capacity={desired}. Exiting "
                f"{len(instance_ids)} instance(s) from Standby would exceed the max-size."
            )
        return orig_exit(self, group_name, instance_ids)

    backend_cls.exit_standby_instances = exit_standby_instances

    orig_resp_enter = AutoScalingResponse.enter_standby

    @functools.wraps(orig_resp_enter)
    def resp_enter_standby(self):  # type: ignore[no-untyped-def]
        if self._get_param("ShouldDecrementDesiredCapacity") is None:
            raise AsgValidationError(
                "1 validation error detected: Value null at 'shouldDecrementDesiredCapacity' "
                "failed to satisfy constraint: Member must not be null"
            )
        return orig_resp_enter(self)

    AutoScalingResponse.enter_standby = resp_enter_standby


# ======================================================================= Route 53 record names


def _install_route53() -> None:
    # Route 53 answers fully qualified names ("www.example.com."). moto adds the dot to records
    # written through ChangeResourceRecordSets but not to those a CloudFormation
    # AWS::Route53::RecordSet creates, so one name could exist twice and an UPSERT would miss
    # the record the stack made. Store every name with its dot; keep the physical id (the Ref)
    # as moto gives it.
    from moto.route53 import models as r53_models

    record_cls = r53_models.RecordSet
    orig_init = record_cls.__init__

    @functools.wraps(orig_init)
    def __init__(self, kwargs):  # type: ignore[no-untyped-def]
        orig_init(self, kwargs)
        if self.name and not self.name.endswith("."):
            self.name += "."

    record_cls.__init__ = __init__
    record_cls.physical_resource_id = property(lambda self: self.name.rstrip("."))

    orig_delete = r53_models.FakeZone.delete_rrset

    @functools.wraps(orig_delete)
    def delete_rrset(self, rrset):  # type: ignore[no-untyped-def]
        name = rrset.get("Name")
        if name and not name.endswith("."):
            rrset = dict(rrset, Name=name + ".")
        return orig_delete(self, rrset)

    r53_models.FakeZone.delete_rrset = delete_rrset


# ================================================== ELBv2: the load balancer's hosted zone id


def _install_elbv2() -> None:
    # An alias record to a load balancer names the load balancer's canonical hosted zone id,
    # which templates get with `Fn::GetAtt [LoadBalancer, CanonicalHostedZoneID]` (AWS::Elastic
    # LoadBalancingV2::LoadBalancer return values). moto 5.2.5 lists the attribute and raises
    # NotImplementedError for it (the stack fails); answer what its own DescribeLoadBalancers
    # reports for the load balancer.
    from moto.elbv2 import models as elbv2_models

    cls = elbv2_models.FakeLoadBalancer
    orig = cls.get_cfn_attribute

    @functools.wraps(orig)
    def get_cfn_attribute(self, attribute_name):  # type: ignore[no-untyped-def]
        if attribute_name == "CanonicalHostedZoneID":
            return self.canonical_hosted_zone_id
        return orig(self, attribute_name)

    cls.get_cfn_attribute = get_cfn_attribute


# ====================================================== CloudFormation: deleting stacks as AWS


class _DeletedResource:
    """What a stack keeps of a resource it has deleted: ListStackResources still shows it
    (DELETE_COMPLETE, as AWS does for a DELETE_FAILED stack), and moto's lazy resource map finds
    it instead of creating the resource again."""

    def __init__(self, logical_id: str, physical_id: Any, resource_type: str) -> None:
        self.logical_resource_id = logical_id
        self.physical_resource_id = physical_id
        self.cf_resource_type = resource_type


# DeletionPolicy values that keep the resource when its stack is deleted.
_RETAIN_POLICIES = ("Retain", "RetainExceptOnCreate")


def _error_code(exc: BaseException) -> str:
    for attr in ("error_type", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            return value
    return ""


def _is_not_found(exc: BaseException) -> bool:
    # CloudFormation counts a resource that is already gone as deleted.
    code = _error_code(exc)
    message = str(getattr(exc, "message", None) or exc).lower()
    return "NotFound" in code or code.startswith("NoSuch") or " not found" in message


def _ec2_backend(resource_map: Any) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[resource_map._account_id][resource_map._region_name]


def _elbv2_backend(resource_map: Any) -> Any:
    from moto.elbv2.models import elbv2_backends

    return elbv2_backends[resource_map._account_id][resource_map._region_name]


def _delete_db_instance(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    # CloudFormation deletes the identifier it recorded when it created the instance: a rename
    # since (envclone migrate's swap) does not take the resource along. moto deleted whatever
    # the Python object is now called. DeletionPolicy Snapshot (the default of a DB instance
    # outside a cluster) is DeleteDBInstance with a final snapshot; deletion protection refuses
    # the whole call (moto's own check), so no snapshot is left behind then.
    backend = rds_models.rds_backends[resource_map._account_id][resource_map._region_name]
    identifier = parsed.physical_resource_id
    if identifier not in backend.databases:
        return
    properties = resource_json.get("Properties") or {}
    in_cluster = bool(properties.get("DBClusterIdentifier"))
    policy = resource_json.get("DeletionPolicy") or ("Delete" if in_cluster else "Snapshot")
    final = None
    if policy == "Snapshot" and not in_cluster and not getattr(resource_map, "_envclone_rolling_back", False):
        stack_name = str(resource_map["AWS::StackName"])
        final = f"{stack_name}-snapshot-{parsed.logical_resource_id}-{uuid.uuid4().hex[:12]}".lower()
    backend.delete_db_instance(identifier, final_db_snapshot_identifier=final, skip_final_snapshot=final is None)


def _delete_db_cluster(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    # DeleteDBCluster of the identifier recorded at creation. DeletionPolicy Snapshot (AWS's
    # default for a cluster) takes a final cluster snapshot, which keeps the cluster's tags when
    # CopyTagsToSnapshot is on; Delete takes none; Retain never gets here. Deletion protection
    # and instances still in the cluster (one that failed to delete or was retained) refuse the
    # whole call, before any snapshot (moto's own checks).
    backend = rds_models.rds_backends[resource_map._account_id][resource_map._region_name]
    identifier = parsed.physical_resource_id
    if identifier not in backend.clusters:
        return
    policy = resource_json.get("DeletionPolicy") or "Snapshot"
    final = None
    if policy == "Snapshot" and not getattr(resource_map, "_envclone_rolling_back", False):
        stack_name = str(resource_map["AWS::StackName"])
        final = f"{stack_name}-snapshot-{parsed.logical_resource_id}-{uuid.uuid4().hex[:12]}".lower()
    backend.delete_db_cluster(identifier, final)


def _delete_bucket(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    # S3 refuses to delete a bucket that holds objects, so CloudFormation fails the resource
    # (moto returned quietly and kept the bucket).
    from moto.utilities.utils import get_partition

    backend = s3_models.s3_backends[resource_map._account_id][get_partition(resource_map._region_name)]
    bucket = backend.buckets.get(parsed.name)
    if bucket is None:
        return
    if bucket.keys:
        raise s3_exceptions.BucketNotEmpty(parsed.name)
    orig(resource_map, parsed, resource_json)


def _delete_autoscaling_group(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    # CloudFormation force-deletes the group: every instance is terminated, Standby ones
    # included (moto only scales the InService ones in and leaves the others running).
    instance_ids = [state.instance.id for state in getattr(parsed, "instance_states", [])]
    orig(resource_map, parsed, resource_json)
    ec2 = _ec2_backend(resource_map)
    alive = []
    for instance_id in instance_ids:
        try:
            instance = ec2.get_instance(instance_id)
        except Exception:
            continue
        if instance.instance_state.name not in ("terminated", "shutting-down"):
            alive.append(instance_id)
    if alive:
        ec2.terminate_instances(alive)


def _delete_route_table(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    _ec2_backend(resource_map).delete_route_table(parsed.id)


def _delete_route(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    prefix_list = getattr(parsed, "destination_prefix_list", None)
    _ec2_backend(resource_map).delete_route(
        parsed.route_table.id,
        parsed.destination_cidr_block,
        getattr(parsed, "destination_ipv6_cidr_block", None),
        getattr(prefix_list, "id", None),
    )


def _delete_subnet_association(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    ec2 = _ec2_backend(resource_map)
    ec2.subnet_associations.pop(f"{parsed.route_table_id}:{parsed.subnet_id}", None)
    table = ec2.route_tables.get(parsed.route_table_id)
    if table is not None:
        for association_id, subnet_id in list(table._associations.items()):
            if subnet_id == parsed.subnet_id:
                table._associations.pop(association_id, None)


def _delete_internet_gateway(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    _ec2_backend(resource_map).delete_internet_gateway(parsed.id)


def _delete_gateway_attachment(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    gateway = getattr(parsed, "gateway_id", None) or ""
    if gateway.startswith("igw-"):
        _ec2_backend(resource_map).detach_internet_gateway(gateway, parsed.vpc_id)


def _delete_target_group(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    _elbv2_backend(resource_map).delete_target_group(parsed.arn)


def _delete_listener(resource_map: Any, parsed: Any, resource_json: dict[str, Any], orig: Any) -> None:
    _elbv2_backend(resource_map).delete_listener(parsed.arn)


# Resource types whose deletion moto gets wrong: AWS::RDS::DBInstance and AWS::S3::Bucket
# behave differently; the others moto does not delete at all (a no-op), which left, e.g., a
# VPC with a second route table that EC2 refuses to delete.
_DELETE_HANDLERS: dict[str, Callable[..., None]] = {
    "AWS::RDS::DBInstance": _delete_db_instance,
    "AWS::RDS::DBCluster": _delete_db_cluster,
    "AWS::S3::Bucket": _delete_bucket,
    "AWS::AutoScaling::AutoScalingGroup": _delete_autoscaling_group,
    "AWS::EC2::RouteTable": _delete_route_table,
    "AWS::EC2::Route": _delete_route,
    "AWS::EC2::SubnetRouteTableAssociation": _delete_subnet_association,
    "AWS::EC2::InternetGateway": _delete_internet_gateway,
    "AWS::EC2::VPCGatewayAttachment": _delete_gateway_attachment,
    "AWS::ElasticLoadBalancingV2::TargetGroup": _delete_target_group,
    "AWS::ElasticLoadBalancingV2::Listener": _delete_listener,
}


def _resource_references(node: Any, names: set[str], found: set[str]) -> None:
    """Adds to found the resources of names that node refers to (Ref, Fn::GetAtt, Fn::Sub)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str) and value in names:
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) and value else value.split(".", 1)[0] if isinstance(value, str) else None
                if isinstance(target, str) and target in names:
                    found.add(target)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) and value else value
                if isinstance(text, str):
                    for match in re.finditer(r"\$\{([^}!][^}]*)\}", text):
                        target = match.group(1).split(".", 1)[0].strip()
                        if target in names:
                            found.add(target)
            _resource_references(value, names, found)
    elif isinstance(node, list):
        for item in node:
            _resource_references(item, names, found)


def _resource_dependencies(resource_json_map: dict[str, Any]) -> dict[str, set[str]]:
    names = set(resource_json_map)
    dependencies: dict[str, set[str]] = {}
    for logical_id, resource_json in resource_json_map.items():
        found: set[str] = set()
        _resource_references(resource_json, names, found)
        depends_on = resource_json.get("DependsOn") or []
        if isinstance(depends_on, str):
            depends_on = [depends_on]
        found.update(d for d in depends_on if d in names)
        found.discard(logical_id)
        dependencies[logical_id] = found
    return dependencies


def _resource_event(stack: Any, logical_id: str, resource_type: str, status: str, reason: str | None = None, physical_id: Any = "") -> None:
    stack.events.append(
        cfn_models.Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=logical_id,
            physical_resource_id=physical_id or "",
            resource_type=resource_type,
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
    )


def _delete_stack_resources(stack: Any, retain: set[str]) -> tuple[list[str], bool]:
    """Deletes a stack's resources as CloudFormation does: dependents before what they depend
    on; a resource that fails is DELETE_FAILED and what it depends on is left alone; the rest
    goes on. Returns the failed logical ids and whether a DB instance was among the deletes."""
    resource_map = stack.resource_map
    json_map = resource_map._resource_json_map
    statuses = stack.__dict__.setdefault("_envclone_resource_status", {})
    dependencies = _resource_dependencies(json_map)
    dependents = {name: {other for other in json_map if name in dependencies[other]} for name in json_map}
    done: set[str] = set()
    failed: list[str] = []
    touched_db = False
    # Reverse template order: with no dependency between them, later resources go first.
    remaining = list(reversed(list(json_map)))
    while remaining:
        ready = [name for name in remaining if dependents[name] <= done]
        if not ready:
            if failed:
                break  # the rest depends on a resource that failed: left as it is
            ready = list(remaining)  # a dependency cycle (invalid template): just go on
        for logical_id in ready:
            remaining.remove(logical_id)
            resource_json = json_map[logical_id]
            resource_type = resource_json.get("Type", "")
            parsed = resource_map._parsed_resources.get(logical_id)
            if parsed is None or isinstance(parsed, (str, _DeletedResource)):
                done.add(logical_id)  # never created (condition false) or deleted before
                continue
            physical_id = getattr(parsed, "physical_resource_id", "")
            if logical_id in retain or resource_json.get("DeletionPolicy") in _RETAIN_POLICIES:
                statuses[logical_id] = ("DELETE_SKIPPED", None)
                _resource_event(stack, logical_id, resource_type, "DELETE_SKIPPED", None, physical_id)
                done.add(logical_id)
                continue
            if resource_type in ("AWS::RDS::DBInstance", "AWS::RDS::DBCluster"):
                touched_db = True
            _resource_event(stack, logical_id, resource_type, "DELETE_IN_PROGRESS", None, physical_id)
            try:
                resource_map._delete_resource(parsed, resource_json)
            except Exception as exc:
                reason = _error_reason(exc)
                _log(f"stack {stack.name}: resource {logical_id} failed to delete: {reason}")
                statuses[logical_id] = ("DELETE_FAILED", reason)
                _resource_event(stack, logical_id, resource_type, "DELETE_FAILED", reason, physical_id)
                failed.append(logical_id)
                continue
            resource_map._parsed_resources[logical_id] = _DeletedResource(logical_id, physical_id, resource_type)
            statuses[logical_id] = ("DELETE_COMPLETE", None)
            _resource_event(stack, logical_id, resource_type, "DELETE_COMPLETE", None, physical_id)
            done.add(logical_id)
    return failed, touched_db


def _start_stack_delete(backend: Any, stack: Any, retain: set[str]) -> None:
    if "_envclone_frozen_outputs" not in stack.__dict__:
        # Outputs are worked out from the resources; a DELETE_FAILED stack keeps showing them.
        try:
            outputs = stack.outputs
        except Exception:
            outputs = None
        stack._envclone_frozen_outputs = outputs
    stack.status = "DELETE_IN_PROGRESS"
    stack.status_reason = None
    stack._add_stack_event("DELETE_IN_PROGRESS", resource_status_reason="User Initiated")
    failed, touched_db = _delete_stack_resources(stack, retain)
    if failed:
        stack._envclone_delete_outcome = ("DELETE_FAILED", f"The following resource(s) failed to delete: [{', '.join(failed)}].")
    else:
        stack._envclone_delete_outcome = ("DELETE_COMPLETE", None)
    # Deleting a DB instance takes minutes on AWS: the stack stays DELETE_IN_PROGRESS for the
    # RDS delay. Other deletes are instant, like the stand-in's other stack operations.
    stack._envclone_delete_since = time.monotonic() if touched_db else None
    if not touched_db:
        _finish_stack_delete(backend, stack)


def _finish_stack_delete(backend: Any, stack: Any) -> None:
    outcome = stack.__dict__.pop("_envclone_delete_outcome", None)
    if outcome is None:
        return
    status, reason = outcome
    stack.status = status
    stack.status_reason = reason
    stack._add_stack_event(status, resource_status_reason=reason)
    if status != "DELETE_COMPLETE":
        return
    for export_name, export in list(backend.exports.items()):
        if export.exporting_stack_id == stack.stack_id:
            backend.exports.pop(export_name, None)
    backend.stacks.pop(stack.stack_id, None)
    backend.deleted_stacks[stack.stack_id] = stack


def _settle_stack_delete(backend: Any, stack: Any) -> None:
    if stack.status == "DELETE_IN_PROGRESS" and "_envclone_delete_outcome" in stack.__dict__:
        since = stack.__dict__.get("_envclone_delete_since")
        if since is None or time.monotonic() - since >= SETTINGS.rds_delay:
            _finish_stack_delete(backend, stack)


def _install_stack_delete() -> None:
    from moto.cloudformation.exceptions import ValidationError as CfnValidationError
    from moto.core.responses import EmptyResult

    # The identifier CloudFormation recorded for a DB instance is the one it created; ListStackResources
    # and the stack delete keep using it after a rename (moto followed the live object).
    orig_parse_and_create = cfn_parsing.parse_and_create_resource

    @functools.wraps(orig_parse_and_create)
    def parse_and_create_resource(*args, **kwargs):  # type: ignore[no-untyped-def]
        resource = orig_parse_and_create(*args, **kwargs)
        if isinstance(resource, rds_models.DBInstance):
            resource.__dict__["_envclone_cfn_id"] = resource.db_instance_identifier
        elif isinstance(resource, rds_models.DBCluster):
            resource.__dict__["_envclone_cfn_id"] = resource.db_cluster_identifier
        return resource

    cfn_parsing.parse_and_create_resource = parse_and_create_resource
    rds_models.DBInstance.physical_resource_id = property(
        lambda self: self.__dict__.get("_envclone_cfn_id") or self.db_instance_identifier
    )

    # A DB subnet group still used by an instance cannot be deleted (moto deleted it).
    orig_delete_subnet_group = rds_models.RDSBackend.delete_subnet_group

    @functools.wraps(orig_delete_subnet_group)
    def delete_subnet_group(self, subnet_name):  # type: ignore[no-untyped-def]
        for database in list(self.databases.values()):
            group = database.__dict__.get("_db_subnet_group_name")  # the property is write-only
            if group is not None and str(group).lower() == str(subnet_name).lower():
                raise RDSClientError(
                    "InvalidDBSubnetGroupStateFault",
                    f"Cannot delete the subnet group '{subnet_name}' because at least one database "
                    f"instance: {database.db_instance_identifier} is still using it.",
                )
        return orig_delete_subnet_group(self, subnet_name)

    rds_models.RDSBackend.delete_subnet_group = delete_subnet_group

    orig_delete_resource = cfn_parsing.ResourceMap._delete_resource

    @functools.wraps(orig_delete_resource)
    def _delete_resource(self, parsed_resource, resource_json):  # type: ignore[no-untyped-def]
        if isinstance(parsed_resource, _DeletedResource):
            return
        handler = _DELETE_HANDLERS.get(resource_json.get("Type", ""))
        try:
            if handler is None:
                orig_delete_resource(self, parsed_resource, resource_json)
            else:
                handler(self, parsed_resource, resource_json, orig_delete_resource)
        except Exception as exc:
            if _is_not_found(exc):
                return
            raise

    cfn_parsing.ResourceMap._delete_resource = _delete_resource

    # A stack being deleted or DELETE_FAILED keeps the outputs it had.
    outputs_property = cfn_models.Stack.outputs

    def outputs(self):  # type: ignore[no-untyped-def]
        if "_envclone_frozen_outputs" in self.__dict__:
            return self.__dict__["_envclone_frozen_outputs"]
        return outputs_property.fget(self)

    cfn_models.Stack.outputs = property(outputs)

    backend_cls = cfn_models.CloudFormationBackend

    def delete_stack(self, name_or_stack_id, retain_resources=None, deletion_mode=None):  # type: ignore[no-untyped-def]
        _settle_stacks(self)
        stack = self.stacks.get(name_or_stack_id) or next(
            (s for s in list(self.stacks.values()) if s.name == name_or_stack_id), None
        )
        if stack is None or stack.status == "DELETE_IN_PROGRESS":
            return  # AWS answers success for a stack that is not there or already going
        retain = list(retain_resources or [])
        if deletion_mode not in (None, "", "STANDARD", "FORCE_DELETE_STACK"):
            raise CfnValidationError(message=f"Invalid DeletionMode {deletion_mode}")
        if stack.enable_termination_protection:
            # Refused before anything is touched: status, resources and events stay as they were
            # (moto stored the flag and ignored it).
            raise CfnValidationError(
                message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled"
            )
        forced = deletion_mode == "FORCE_DELETE_STACK"
        if (retain or forced) and stack.status != "DELETE_FAILED":
            what = "RetainResources" if retain else "DeletionMode FORCE_DELETE_STACK"
            raise CfnValidationError(
                message=f"Invalid operation on stack [{stack.stack_id}]: {what} can only be used "
                f"when the stack is in DELETE_FAILED state (it is {stack.status})"
            )
        statuses = stack.__dict__.get("_envclone_resource_status", {})
        if forced:
            retain += [name for name, (status, _) in statuses.items() if status == "DELETE_FAILED"]
        if any(statuses.get(name, ("",))[0] == "DELETE_COMPLETE" for name in retain):
            raise CfnValidationError(
                message="The specified resources to retain must be in a valid state. Do not "
                "specify resources that are in the DELETE_COMPLETE state."
            )
        _start_stack_delete(self, stack, set(retain))

    functools.update_wrapper(delete_stack, backend_cls.delete_stack)
    backend_cls.delete_stack = delete_stack

    def resp_delete_stack(self):  # type: ignore[no-untyped-def]
        retain = self._get_param("RetainResources") or []
        if isinstance(retain, str):
            retain = [retain]
        self.cloudformation_backend.delete_stack(
            self._get_param("StackName"),
            retain_resources=retain,
            deletion_mode=self._get_param("DeletionMode"),
        )
        return EmptyResult()

    functools.update_wrapper(resp_delete_stack, CloudFormationResponse.delete_stack)
    CloudFormationResponse.delete_stack = resp_delete_stack

    # UpdateTerminationProtection (moto 5.2.5 has no such action: 500 NotImplementedError).
    # DescribeStacks already renders the stack's enable_termination_protection.
    def update_termination_protection(self, name_or_stack_id, enable):  # type: ignore[no-untyped-def]
        _settle_stacks(self)
        stack = self.stacks.get(name_or_stack_id) or next(
            (s for s in list(self.stacks.values()) if s.name == name_or_stack_id), None
        )
        if stack is None:
            raise CfnValidationError(message=f"Stack [{name_or_stack_id}] does not exist")
        if stack.status == "DELETE_IN_PROGRESS":
            # AWS: "any status except DELETE_IN_PROGRESS or DELETE_COMPLETE" (stand-in's wording).
            raise CfnValidationError(
                message=f"Stack [{stack.name}] is in DELETE_IN_PROGRESS state; termination "
                "protection cannot be updated"
            )
        stack.enable_termination_protection = bool(enable)
        return stack

    backend_cls.update_termination_protection = update_termination_protection

    def resp_update_termination_protection(self):  # type: ignore[no-untyped-def]
        name = self._get_param("StackName")
        enable = self._get_param("EnableTerminationProtection")
        for param, value in (("stackName", name), ("enableTerminationProtection", enable)):
            if value is None or value == "":
                raise CfnValidationError(
                    message=f"1 validation error detected: Value null at '{param}' failed to "
                    "satisfy constraint: Member must not be null"
                )
        stack = self.cloudformation_backend.update_termination_protection(name, _truthy(enable))
        return ActionResult({"StackId": stack.stack_id})

    CloudFormationResponse.update_termination_protection = resp_update_termination_protection

    # Each resource's own status (moto: CREATE_COMPLETE, or the stack's status, for all).
    def statuses_of(response: Any) -> dict[str, tuple[str, str | None]]:
        try:
            stack = response.cloudformation_backend.get_stack(response._get_param("StackName"))
        except Exception:
            return {}
        return stack.__dict__.get("_envclone_resource_status", {})

    orig_list_resources = CloudFormationResponse.list_stack_resources

    @functools.wraps(orig_list_resources)
    def list_stack_resources(self):  # type: ignore[no-untyped-def]
        result = orig_list_resources(self)
        statuses = statuses_of(self)
        summaries = [s for s in result.result["StackResourceSummaries"] if s.get("LogicalResourceId")]
        for summary in summaries:
            status = statuses.get(summary["LogicalResourceId"])
            if status:
                summary["ResourceStatus"] = status[0]
                if status[1]:
                    summary["ResourceStatusReason"] = status[1]
        result.result["StackResourceSummaries"] = summaries
        return result

    CloudFormationResponse.list_stack_resources = list_stack_resources

    for method, key in (("describe_stack_resources", "StackResources"), ("describe_stack_resource", "StackResourceDetail")):
        original = getattr(CloudFormationResponse, method)

        def describe(self, __original=original, __key=key):  # type: ignore[no-untyped-def]
            result = __original(self)
            statuses = statuses_of(self)
            items = result.result[__key]
            if isinstance(items, list):
                # moto listed a resource whose condition is false as an empty entry.
                items = result.result[__key] = [item for item in items if item.logical_resource_id]
            for item in items if isinstance(items, list) else [items]:
                status = statuses.get(item.logical_resource_id)
                if status:
                    item.resource_status = status[0]
                elif str(item.resource_status).startswith("DELETE_"):
                    item.resource_status = "CREATE_COMPLETE"
            return result

        functools.update_wrapper(describe, original)
        setattr(CloudFormationResponse, method, describe)


# ========================================================= identifying a request's operation

_S3_BUCKET_SUBRESOURCES = {
    "tagging": "BucketTagging",
    "versioning": "BucketVersioning",
    "policy": "BucketPolicy",
    "acl": "BucketAcl",
    "encryption": "BucketEncryption",
    "lifecycle": "BucketLifecycleConfiguration",
    "cors": "BucketCors",
    "website": "BucketWebsite",
    "notification": "BucketNotificationConfiguration",
    "ownershipControls": "BucketOwnershipControls",
    "publicAccessBlock": "PublicAccessBlock",
    "logging": "BucketLogging",
    "replication": "BucketReplication",
    "object-lock": "ObjectLockConfiguration",
    "accelerate": "BucketAccelerateConfiguration",
    "requestPayment": "BucketRequestPayment",
}
_S3_OBJECT_SUBRESOURCES = {
    "tagging": "ObjectTagging",
    "acl": "ObjectAcl",
    "retention": "ObjectRetention",
    "legal-hold": "ObjectLegalHold",
}
_VERB = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}


def s3_operation(method: str, host: str, path: str, query: dict[str, list[str]], copy_source: bool) -> str:
    """The S3 operation name of a request, from method, bucket/key shape, query and headers.

    Path-style (http://127.0.0.1:PORT/bucket/key, what the SDKs use with an IP endpoint) and
    virtual-hosted style (bucket.localhost:PORT/key) are both understood.
    """
    if query.get("x-id"):
        # The Rust SDK names the operation itself on several calls (?x-id=UploadPart).
        return query["x-id"][0]
    hostname = host.split(":")[0]
    segments = path.lstrip("/").split("/", 1)
    virtual = hostname.endswith(".localhost") or (".s3." in hostname and not hostname.startswith("s3."))
    if virtual:
        bucket, key = hostname.split(".")[0], path.lstrip("/")
    else:
        bucket = segments[0]
        key = segments[1] if len(segments) > 1 else ""
    q = set(query)
    if not bucket:
        return "ListBuckets" if method == "GET" else "Unknown"
    if not key:
        if method == "HEAD":
            return "HeadBucket"
        if method == "POST" and "delete" in q:
            return "DeleteObjects"
        for sub, name in _S3_BUCKET_SUBRESOURCES.items():
            if sub in q and method in _VERB:
                return _VERB[method] + name
        if method == "GET":
            if "location" in q:
                return "GetBucketLocation"
            if "uploads" in q:
                return "ListMultipartUploads"
            if "versions" in q:
                return "ListObjectVersions"
            if query.get("list-type") == ["2"]:
                return "ListObjectsV2"
            return "ListObjects"
        return {"PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, "Unknown")
    if method == "HEAD":
        return "HeadObject"
    for sub, name in _S3_OBJECT_SUBRESOURCES.items():
        if sub in q and method in _VERB:
            return _VERB[method] + name
    if method == "GET":
        if "uploadId" in q:
            return "ListParts"
        if "attributes" in q:
            return "GetObjectAttributes"
        return "GetObject"
    if method == "PUT":
        if "uploadId" in q and "partNumber" in q:
            return "UploadPartCopy" if copy_source else "UploadPart"
        return "CopyObject" if copy_source else "PutObject"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
        if "restore" in q:
            return "RestoreObject"
        return "PostObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    return "Unknown"


class _RestOperations:
    """REST services other than S3 (Route 53...): match method + path against the request
    URIs of botocore's service model, most literal match first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, tuple[str, list[tuple[str, re.Pattern[str], set[str], int, str]]] | None] = {}

    def _load(self, service: str) -> tuple[str, list[tuple[str, re.Pattern[str], set[str], int, str]]] | None:
        import botocore.session

        try:
            model = botocore.session.get_session().get_service_model(service)
        except Exception:
            return None
        table = []
        for op_name in model.operation_names:
            http = model.operation_model(op_name).http
            uri = http.get("requestUri", "/")
            path, _, query = uri.partition("?")
            literal = len(re.sub(r"\{[^}]*\}", "", path))
            pattern = re.sub(r"\\\{[^}]*?\\\+\\\}", ".+", re.escape(path))
            pattern = re.sub(r"\\\{[^}]*?\\\}", "[^/]+", pattern)
            keys = {part.split("=")[0] for part in query.split("&") if part}
            table.append((http.get("method", "POST"), re.compile(f"^{pattern}/?$"), keys, literal + 100 * len(keys), op_name))
        table.sort(key=lambda row: -row[3])
        return model.metadata.get("protocol", ""), table

    def lookup(self, service: str, method: str, path: str, query: dict[str, list[str]]) -> tuple[str | None, str | None]:
        with self._lock:
            if service not in self._models:
                self._models[service] = self._load(service)
            entry = self._models[service]
        if entry is None:
            return None, None
        protocol, table = entry
        for verb, pattern, keys, _, op_name in table:
            if verb == method and pattern.match(path) and keys <= set(query):
                return protocol, op_name
        return protocol, None


REST_OPERATIONS = _RestOperations()


class RequestInfo:
    """Service, operation and wire protocol of an AWS request, as far as can be told."""

    def __init__(self, service: str, operation: str, protocol: str) -> None:
        self.service = service
        self.operation = operation
        self.protocol = protocol  # "s3", "query", "ec2", "json", "rest-json", "rest-xml"

    @property
    def label(self) -> str:
        return f"{self.service}:{self.operation}"


def identify(environ: dict[str, Any]) -> RequestInfo:
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "") or "/"
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    auth = environ.get("HTTP_AUTHORIZATION", "")
    match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
    service = match.group(1).lower() if match else ""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if not service and "X-Amz-Credential" in query:
        parts = query["X-Amz-Credential"][0].split("/")
        service = parts[3].lower() if len(parts) > 3 else ""
    if service == "s3" or (not service and not target):
        if service == "s3" or not _form_action(environ):
            copy_source = "HTTP_X_AMZ_COPY_SOURCE" in environ
            return RequestInfo("s3", s3_operation(method, environ.get("HTTP_HOST", ""), path, query, copy_source), "s3")
    if target:
        return RequestInfo(service or target.split(".")[0].lower(), target.rsplit(".", 1)[-1], "json")
    action = (query.get("Action") or [None])[0] or _form_action(environ)
    if action:
        return RequestInfo(service, action, "ec2" if service == "ec2" else "query")
    protocol, operation = REST_OPERATIONS.lookup(service, method, path, query)
    return RequestInfo(service, operation or "Unknown", protocol or "rest-xml")


def _form_action(environ: dict[str, Any]) -> str | None:
    # Query-protocol calls (RDS, CloudFormation, Auto Scaling...) carry Action= in a form body.
    # Read it and put the bytes back for moto, as moto's own dispatcher does.
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return None
    cached = environ.get("envclone.form_action")
    if cached is not None:
        return cached or None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    action = (parse_qs(body.decode("utf-8", "replace")).get("Action") or [""])[0]
    environ["envclone.form_action"] = action
    return action or None


# ================================================================================ fault rules


class FaultRule:
    """One rule of POST /envclone-standin/faults. See tests/it/STANDIN.md for the fields."""

    def __init__(self, rule_id: int, spec: dict[str, Any]) -> None:
        known = {"match", "latency_ms", "error_rate", "status", "code", "message", "count", "skip"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        self.id = rule_id
        match = spec.get("match") or []
        self.patterns = [match] if isinstance(match, str) else [str(m) for m in match]
        self.latency_ms = float(spec.get("latency_ms") or 0)
        # A rule that only names latency only slows requests down; any other rule fails every
        # matching request unless it gives a rate.
        latency_only = self.latency_ms > 0 and all(spec.get(k) is None for k in ("status", "code", "message", "count", "skip"))
        self.error_rate = float(spec["error_rate"]) if spec.get("error_rate") is not None else (0.0 if latency_only else 1.0)
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        self.status = int(spec.get("status") or 503)
        self.code = spec.get("code")
        self.message = spec.get("message")
        self.count = None if spec.get("count") is None else int(spec["count"])
        self.skip = int(spec.get("skip") or 0)
        self.matched = 0
        self.injected = 0

    def matches(self, info: RequestInfo) -> bool:
        service, operation = info.service.lower(), info.operation.lower()
        if service == "health":
            # The stand-in's own health endpoint is hit only by rules that name it, so that a
            # rule slowing down "everything" does not also fail the verify step.
            return any(p.lower().split(":")[0] == "health" for p in self.patterns) and any(
                fnmatch.fnmatchcase(operation, p.lower().partition(":")[2] or "*")
                for p in self.patterns
                if p.lower().split(":")[0] == "health"
            )
        if not self.patterns:
            return True
        for pattern in self.patterns:
            pattern = pattern.lower()
            if ":" in pattern:
                svc, _, op = pattern.partition(":")
                if fnmatch.fnmatchcase(service, svc or "*") and fnmatch.fnmatchcase(operation, op or "*"):
                    return True
            elif fnmatch.fnmatchcase(service, pattern) or fnmatch.fnmatchcase(operation, pattern):
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "match": self.patterns,
            "latency_ms": self.latency_ms,
            "error_rate": self.error_rate,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "count": self.count,
            "skip": self.skip,
            "matched": self.matched,
            "injected": self.injected,
        }


def _default_code(info: RequestInfo, status: int) -> str:
    if info.protocol == "s3":
        return {503: "SlowDown", 500: "InternalError", 400: "InvalidRequest", 403: "AccessDenied"}.get(status, "ServiceUnavailable")
    return {503: "ServiceUnavailable", 500: "InternalFailure", 400: "Throttling", 429: "TooManyRequestsException", 403: "AccessDenied"}.get(status, "ServiceUnavailable")


_XML_NS = {
    "rds": "http://rds.amazonaws.com/doc/2014-10-31/",
    "cloudformation": "http://cloudformation.amazonaws.com/doc/2010-05-15/",
    "autoscaling": "http://autoscaling.amazonaws.com/doc/2011-01-01/",
    "route53": "https://route53.amazonaws.com/doc/2013-04-01/",
}


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error_response(info: RequestInfo, method: str, status: int, code: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """An error as the service's protocol spells it, so SDKs parse the code and classify it
    (the SDKs retry Throttling/SlowDown codes and 500/502/503/504 statuses)."""
    request_id = str(uuid.uuid4())
    code_x, message_x = _xml_escape(code), _xml_escape(message)
    headers = [("x-amzn-RequestId", request_id), ("x-amz-request-id", request_id)]
    if info.protocol == "plain":
        body = f"{code}: {message}\n"
        content_type = "text/plain"
    elif info.protocol == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code_x}</Code><Message>{message_x}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>envclone-standin</HostId></Error>"
        )
        content_type = "application/xml"
    elif info.protocol == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code_x}</Code><Message>{message_x}</Message></Error>"
            f"</Errors><RequestID>{request_id}</RequestID></Response>"
        )
        content_type = "text/xml"
    elif info.protocol in ("json", "rest-json"):
        body = json.dumps({"__type": code, "message": message})
        content_type = "application/x-amz-json-1.1" if info.protocol == "json" else "application/json"
        headers.append(("x-amzn-ErrorType", code))
    else:
        fault = "Sender" if status < 500 else "Receiver"
        xmlns = _XML_NS.get(info.service)
        attr = f' xmlns="{xmlns}"' if xmlns else ""
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse{attr}><Error><Type>{fault}</Type>'
            f"<Code>{code_x}</Code><Message>{message_x}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        content_type = "text/xml"
    data = b"" if method == "HEAD" else body.encode("utf-8")
    headers += [("Content-Type", content_type), ("Content-Length", str(len(data)))]
    return f"{status} {_REASONS.get(status, 'Error')}", headers, data


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 416: "Requested Range Not Satisfiable", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def decide_fault(info: RequestInfo) -> tuple[float, FaultRule | None]:
    """Total latency to add and the rule (if any) whose error this request gets."""
    latency = 0.0
    chosen: FaultRule | None = None
    with SETTINGS.lock:
        for rule in SETTINGS.faults:
            if not rule.matches(info):
                continue
            rule.matched += 1
            latency += rule.latency_ms
            if chosen is not None or rule.error_rate <= 0.0 or rule.matched <= rule.skip:
                continue
            if rule.count is not None and rule.injected >= rule.count:
                continue
            if rule.error_rate >= 1.0 or random.random() < rule.error_rate:
                rule.injected += 1
                chosen = rule
    return latency / 1000.0, chosen


# ==================================================================================== control


def _json_reply(start_response: Callable[..., Any], status: str, payload: Any) -> list[bytes]:
    data = (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _text_reply(start_response: Callable[..., Any], status: str, text: str, method: str) -> list[bytes]:
    data = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [] if method == "HEAD" else [data]


def _read_json(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length else b""
    return json.loads(raw or b"{}")


def control(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "")[len(CONTROL_PREFIX) :].strip("/")
    try:
        if path == "ready" or path.startswith("health/") or path == "health":
            return _text_reply(start_response, "200 OK", "ok\n", method)
        if path == "faults":
            if method == "GET":
                with SETTINGS.lock:
                    return _json_reply(start_response, "200 OK", {"rules": [r.to_json() for r in SETTINGS.faults]})
            if method == "DELETE":
                with SETTINGS.lock:
                    SETTINGS.faults.clear()
                return _json_reply(start_response, "200 OK", {"rules": []})
            if method in ("POST", "PUT"):
                spec = _read_json(environ)
                specs = spec if isinstance(spec, list) else [spec]
                with SETTINGS.lock:
                    if method == "PUT":
                        SETTINGS.faults.clear()
                    added = []
                    for one in specs:
                        rule = FaultRule(SETTINGS.next_fault_id, one)
                        SETTINGS.next_fault_id += 1
                        SETTINGS.faults.append(rule)
                        added.append(rule.id)
                    rules = [r.to_json() for r in SETTINGS.faults]
                return _json_reply(start_response, "200 OK", {"added": added, "rules": rules})
        if path.startswith("faults/") and method == "DELETE":
            rule_id = int(path.split("/", 1)[1])
            with SETTINGS.lock:
                SETTINGS.faults[:] = [r for r in SETTINGS.faults if r.id != rule_id]
                rules = [r.to_json() for r in SETTINGS.faults]
            return _json_reply(start_response, "200 OK", {"rules": rules})
        # Delays set at run time: endpoint -> the setting it changes.
        delay_settings = {"rds-delay": "rds_delay", "snapshot-delay": "snapshot_delay", "rename-delay": "rename_delay", "rename-start-delay": "rename_start_delay", "restorable-lag": "restorable_lag"}
        if path in delay_settings:
            name = delay_settings[path]
            if method in ("POST", "PUT"):
                seconds = float(_read_json(environ)["seconds"])
                if seconds < 0:
                    raise ValueError("seconds must be >= 0")
                setattr(SETTINGS, name, seconds)
            return _json_reply(start_response, "200 OK", {"seconds": getattr(SETTINGS, name)})
        if path == "rds/restored" and method == "GET":
            return _json_reply(start_response, "200 OK", restored_instances())
        if path == "rds/restored-clusters" and method == "GET":
            return _json_reply(start_response, "200 OK", restored_clusters())
        if path == "batch":
            # S3 Batch Operations knobs: {"copy_limit": bytes, "fail_keys": [...],
            # "task_seconds": s, "start_seconds": s}; GET also lists the jobs.
            if method in ("POST", "PUT"):
                spec = _read_json(environ)
                with BATCH_LOCK:
                    if "copy_limit" in spec:
                        BATCH.copy_limit = int(spec["copy_limit"])
                    if "fail_keys" in spec:
                        BATCH.fail_keys = set(spec["fail_keys"])
                    if "task_seconds" in spec:
                        BATCH.task_seconds = float(spec["task_seconds"])
                    if "start_seconds" in spec:
                        BATCH.start_seconds = float(spec["start_seconds"])
            with BATCH_LOCK:
                jobs = [{k: j[k] for k in ("id", "token", "status", "total", "succeeded", "failed", "description", "manifest_format", "manifest_key")} for j in BATCH_JOBS.values()]
                return _json_reply(start_response, "200 OK", {**BATCH.to_json(), "jobs": jobs})
        if path == "inventory" and method == "POST":
            # Delivers an S3 Inventory report now: {"bucket": B, "id": CONFIG_ID}.
            spec = _read_json(environ)
            return _json_reply(start_response, "200 OK", {"manifest": publish_inventory(spec["bucket"], spec["id"])})
        if path == "reset" and method == "POST":
            # Everything back to a fresh start: moto's state, the fault rules, the RDS delay.
            from moto.moto_api import _internal as moto_api_internal

            with MOTO_LOCK:
                moto_api_internal.moto_api_backend.reset()
                _reset_renames()
            with SETTINGS.lock:
                SETTINGS.faults.clear()
            with BATCH_LOCK:
                BATCH_JOBS.clear()
                BATCH.reset()
            SETTINGS.rename_delay = float(os.environ.get("ENVCLONE_STANDIN_RENAME_DELAY", "4"))
            SETTINGS.rename_start_delay = float(os.environ.get("ENVCLONE_STANDIN_RENAME_START_DELAY", "1.5"))
            SETTINGS.rds_delay = float(os.environ.get("ENVCLONE_STANDIN_RDS_DELAY", "2.0"))
            SETTINGS.snapshot_delay = float(os.environ.get("ENVCLONE_STANDIN_SNAPSHOT_DELAY", "3.0"))
            SETTINGS.restorable_lag = float(os.environ.get("ENVCLONE_STANDIN_RESTORABLE_LAG", "3"))
            return _json_reply(start_response, "200 OK", {"reset": True})
    except (ValueError, KeyError, TypeError) as exc:
        return _json_reply(start_response, "400 Bad Request", {"error": f"{type(exc).__name__}: {exc}"})
    return _json_reply(start_response, "404 Not Found", {"error": f"no control endpoint {method} {CONTROL_PREFIX}{path}"})


# ============================================================== S3 Batch Operations (S3 Control)
#
# moto has no S3 Batch Operations. The S3 Control API's job calls (REST-XML under
# /v20180820/jobs, account in the x-amz-account-id header; "Amazon S3 API Reference", S3
# Control: CreateJob, DescribeJob, ListJobs, UpdateJobStatus) are answered here over moto's
# own S3: a job goes New -> Preparing -> Ready -> Active -> Complete (or Cancelling ->
# Cancelled, Failing -> Failed) in a background thread, copying the manifest's objects with
# moto's CopyObject over a few seconds, and writes its completion report as AWS does
# ("Examples: S3 Batch Operations completion reports": <prefix>/job-<id>/manifest.json and the
# failed tasks' CSV under <prefix>/job-<id>/results/). The manifest's rows have the fields
# Manifest.Spec.Fields lists ("Specifying a manifest": Bucket, Key and optionally VersionId; with
# a version ID the task copies that version, and a manifest with the field gives one on every
# row); a task whose version does not exist fails as CopyObject would (404 NoSuchVersion; a delete
# marker's version id, 400 InvalidRequest). Knobs (environment, or the control API
# /envclone-standin/batch): ENVCLONE_STANDIN_BATCH_COPY_LIMIT (the largest object a task copies,
# AWS: 5 GiB, CopyObject's limit), ENVCLONE_STANDIN_BATCH_FAIL_KEYS (comma-separated keys whose
# task fails with AccessDenied), ENVCLONE_STANDIN_BATCH_TASK_SECONDS (per task),
# ENVCLONE_STANDIN_BATCH_START_SECONDS (New to Active).

BATCH_LOCK = threading.Lock()
BATCH_JOBS: dict[str, dict[str, Any]] = {}
_S3C_NS = "http://awss3control.amazonaws.com/doc/2018-08-20/"


class BatchSettings:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.copy_limit = int(os.environ.get("ENVCLONE_STANDIN_BATCH_COPY_LIMIT", str(5 * 1024**3)))
        keys = os.environ.get("ENVCLONE_STANDIN_BATCH_FAIL_KEYS", "")
        self.fail_keys = {k for k in keys.split(",") if k}
        self.task_seconds = float(os.environ.get("ENVCLONE_STANDIN_BATCH_TASK_SECONDS", "0.002"))
        self.start_seconds = float(os.environ.get("ENVCLONE_STANDIN_BATCH_START_SECONDS", "1.5"))

    def to_json(self) -> dict[str, Any]:
        return {
            "copy_limit": self.copy_limit,
            "fail_keys": sorted(self.fail_keys),
            "task_seconds": self.task_seconds,
            "start_seconds": self.start_seconds,
        }


BATCH = BatchSettings()


def _s3c_reply(start_response: Callable[..., Any], status: str, root: str, inner: str) -> list[bytes]:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{_S3C_NS}">{inner}</{root}>'.encode()
    request_id = str(uuid.uuid4())
    start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body))), ("x-amz-request-id", request_id)])
    return [body]


def _s3c_error(start_response: Callable[..., Any], status: int, code: str, message: str) -> list[bytes]:
    info = RequestInfo("s3control", "Jobs", "rest-xml")
    status_line, headers, body = error_response(info, "POST", status, code, message)
    start_response(status_line, headers)
    return [body]


def _s3_backend(account: str) -> Any:
    return s3_models.s3_backends[account]["aws"]


def _copy_source_changed(environ: dict[str, Any]) -> str | None:
    """`x-amz-copy-source-if-match` of a CopyObject or UploadPartCopy whose source's ETag is
    another: AWS answers 412 PreconditionFailed (CopyObject, UploadPartCopy API); moto ignores
    the header on UploadPartCopy. None: no such header, or the source matches (or is missing,
    which moto answers itself). Called with MOTO_LOCK held."""
    wanted = environ.get("HTTP_X_AMZ_COPY_SOURCE_IF_MATCH")
    source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
    if not wanted or not source:
        return None
    source, _, query = urllib.parse.unquote(source).lstrip("/").partition("?")
    bucket, _, key = source.partition("/")
    version = (parse_qs(query).get("versionId") or [None])[0]
    try:
        obj = _s3_backend("123456789012").get_object(bucket, key, version_id=version)
    except Exception:
        return None
    if obj is None or wanted.strip().strip('"') == obj.etag.strip('"'):
        return None
    return "At least one of the pre-conditions you specified did not hold"


def _job_xml(job: dict[str, Any]) -> str:
    e = _xml_escape
    progress = ""
    if job["total"] is not None:
        progress = (
            f"<ProgressSummary><TotalNumberOfTasks>{job['total']}</TotalNumberOfTasks>"
            f"<NumberOfTasksSucceeded>{job['succeeded']}</NumberOfTasksSucceeded>"
            f"<NumberOfTasksFailed>{job['failed']}</NumberOfTasksFailed></ProgressSummary>"
        )
    reasons = "".join(
        f"<member><FailureCode>{e(code)}</FailureCode><FailureReason>{e(reason)}</FailureReason></member>"
        for code, reason in job["failure_reasons"]
    )
    return (
        f"<JobId>{job['id']}</JobId><ConfirmationRequired>{str(job['confirmation_required']).lower()}</ConfirmationRequired>"
        f"<Description>{e(job['description'])}</Description>"
        f"<JobArn>arn:aws:s3:us-east-1:{job['account']}:job/{job['id']}</JobArn>"
        f"<Status>{job['status']}</Status><Priority>{job['priority']}</Priority>{progress}"
        + (f"<FailureReasons>{reasons}</FailureReasons>" if reasons else "")
        + f"<Report><Bucket>{e(job['report_bucket_arn'])}</Bucket><Format>Report_CSV_20180820</Format>"
        f"<Enabled>true</Enabled><Prefix>{e(job['report_prefix'])}</Prefix><ReportScope>{job['report_scope']}</ReportScope></Report>"
        f"<CreationTime>{job['created']}</CreationTime><RoleArn>{e(job['role'])}</RoleArn>"
    )


def _set_job(job_id: str, **changes: Any) -> dict[str, Any]:
    with BATCH_LOCK:
        job = BATCH_JOBS[job_id]
        job.update(changes)
        return dict(job)


def _run_job(job_id: str) -> None:
    """The job's life, in a thread: start-up, the manifest, each task, the report."""
    with BATCH_LOCK:
        job = dict(BATCH_JOBS[job_id])
        settings = BATCH.to_json()
    backend = _s3_backend(job["account"])
    fail_keys = set(settings["fail_keys"])
    for status in ("Preparing", "Ready", "Active"):
        time.sleep(settings["start_seconds"] / 3)
        if BATCH_JOBS[job_id]["cancel"]:
            _set_job(job_id, status="Cancelled")
            return
        if status == "Ready":
            # Preparing reads the manifest: it must exist with the ETag CreateJob named.
            try:
                with MOTO_LOCK:
                    manifest = backend.get_object(job["manifest_bucket"], job["manifest_key"])
                    data = manifest.value if manifest is not None else None
                    etag = manifest.etag.strip('"') if manifest is not None else None
            except Exception as exc:  # noqa: BLE001 - a missing bucket fails the job
                data, etag = None, str(exc)
            if data is None or etag != job["manifest_etag"].strip('"'):
                why = "the manifest does not exist" if data is None else f"the manifest's ETag is {etag}, not {job['manifest_etag']}"
                _set_job(job_id, status="Failed", failure_reasons=[("ManifestReadFailure", why)])
                return
            tasks: list[tuple[str, str, str | None]] = []
            if job["manifest_format"] == "S3InventoryReport_CSV_20161130":
                try:
                    # An inventory report's rows name current objects (no version column here).
                    tasks = [(bucket, key, None) for bucket, key in _inventory_tasks(data, backend)]
                except (ValueError, KeyError) as exc:
                    _set_job(job_id, status="Failed", failure_reasons=[("ManifestReadFailure", str(exc))])
                    return
            else:
                fields = job["manifest_fields"]
                bad_row = None
                for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
                    if not line.strip():
                        continue
                    columns = line.split(",")
                    if len(columns) != len(fields) or ("VersionId" in fields and not columns[fields.index("VersionId")]):
                        bad_row = n
                        break
                    row = dict(zip(fields, columns))
                    tasks.append((row["Bucket"], urllib.parse.unquote(row["Key"]), row.get("VersionId")))
                if bad_row is not None:
                    why = f"line {bad_row} does not have the fields {', '.join(fields)}"
                    _set_job(job_id, status="Failed", failure_reasons=[("InvalidManifest", why)])
                    return
            _set_job(job_id, total=len(tasks))
        _set_job(job_id, status=status)
    failures: list[tuple[str, str, str | None, int, str, str]] = []
    done = failed = 0
    end = "Complete"
    for bucket, key, version in tasks:
        if BATCH_JOBS[job_id]["cancel"]:
            end = "Cancelled"
            _set_job(job_id, status="Cancelling")
            break
        time.sleep(settings["task_seconds"])
        outcome: tuple[int, str, str] | None = None
        try:
            with MOTO_LOCK:
                src = backend.get_object(bucket, key, version_id=version, return_delete_marker=True)
                if key in fail_keys:
                    outcome = (403, "AccessDenied", "Access Denied")
                elif src is None and version is not None:
                    outcome = (404, "NoSuchVersion", "The specified version does not exist.")
                elif src is None:
                    outcome = (404, "NoSuchKey", "The specified key does not exist.")
                elif isinstance(src, s3_models.FakeDeleteMarker):
                    outcome = (400, "InvalidRequest", "The source of a copy request may not specifically refer to a delete marker by version id.")
                elif src.size > settings["copy_limit"]:
                    # S3PutObjectCopy is a CopyObject: "objects up to 5 GB in size".
                    outcome = (400, "InvalidRequest", f"The specified copy source is larger than the maximum allowable size for a copy source: {settings['copy_limit']}")
                else:
                    backend.copy_object(src, job["target_bucket"], job["target_prefix"] + key)
        except Exception as exc:  # noqa: BLE001 - the task fails, the job goes on
            outcome = (500, "InternalError", str(exc))
        done += 1
        with BATCH_LOCK:
            if outcome is None:
                BATCH_JOBS[job_id]["succeeded"] += 1
            else:
                BATCH_JOBS[job_id]["failed"] += 1
                failed += 1
                failures.append((bucket, key, version, *outcome))
        # "If the job's task failure rate exceeds 50 percent after at least 1,000 tasks have
        # been attempted, the job fails."
        if done >= 1000 and failed * 2 > done:
            end = "Failed"
            _set_job(job_id, status="Failing", failure_reasons=[("JobFailureThresholdExceeded", f"{failed} of {done} tasks failed")])
            break
    if done > 0:
        _write_report(job, job_id, failures, backend)
    _set_job(job_id, status=end, terminated=_rfc3339(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)))


def _write_report(job: dict[str, Any], job_id: str, failures: list[tuple[str, str, str | None, int, str, str]], backend: Any) -> None:
    bucket = job["report_bucket_arn"].split(":::", 1)[-1]
    base = f"{job['report_prefix'].rstrip('/')}/job-{job_id}"
    results = []
    import hashlib

    if failures:
        rows = io.StringIO()
        for b, k, version, status, code, message in failures:
            quoted = message.replace('"', '""')
            rows.write(f"{b},{urllib.parse.quote(k, safe='')},{version or ''},failed,{status},{code},\"{quoted}\"\n")
        data = rows.getvalue().encode()
        md5 = hashlib.md5(data).hexdigest()
        key = f"{base}/results/{hashlib.sha1(data).hexdigest()}.csv"
        with MOTO_LOCK:
            backend.put_object(bucket, key, data)
        results.append({"TaskExecutionStatus": "failed", "Bucket": bucket, "MD5Checksum": md5, "Key": key})
    manifest = {
        "Format": "Report_CSV_20180820",
        "ReportCreationDate": _rfc3339(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)),
        "Results": results,
        "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
    }
    with MOTO_LOCK:
        backend.put_object(bucket, f"{base}/manifest.json", json.dumps(manifest).encode())


def s3_control_jobs(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    import xml.etree.ElementTree as ET

    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    account = environ.get("HTTP_X_AMZ_ACCOUNT_ID", "")
    if not re.fullmatch(r"\d{12}", account):
        return _s3c_error(start_response, 400, "InvalidRequest", "x-amz-account-id must be a 12-digit account id")
    rest = path[len("/v20180820/jobs") :].strip("/")
    if rest == "" and method == "POST":
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        root = ET.fromstring(raw)
        ns = {"c": _S3C_NS}

        def text(p: str) -> str | None:
            return _find(root, p, ns)

        token = text("ClientRequestToken") or ""
        with BATCH_LOCK:
            # CreateJob is idempotent on ClientRequestToken.
            for job in BATCH_JOBS.values():
                if job["account"] == account and job["token"] == token:
                    return _s3c_reply(start_response, "200 OK", "CreateJobResult", f"<JobId>{job['id']}</JobId>")
        copy = "Operation/S3PutObjectCopy"
        if _find(root, copy + "/TargetResource", ns) is None:
            return _s3c_error(start_response, 400, "InvalidRequest", "the stand-in runs S3PutObjectCopy jobs only")
        role = text("RoleArn")
        priority = text("Priority")
        if not role or priority is None or int(priority) < 0:
            return _s3c_error(start_response, 400, "InvalidRequest", "RoleArn and a Priority of 0 or more are required")
        manifest_arn = text("Manifest/Location/ObjectArn") or ""
        manifest_bucket, _, manifest_key = manifest_arn.split(":::", 1)[-1].partition("/")
        fields_node = root.find("c:Manifest/c:Spec/c:Fields", ns)
        if fields_node is None:
            fields_node = root.find("Manifest/Spec/Fields")
        manifest_fields = [m.text or "" for m in fields_node] if fields_node is not None else []
        manifest_format = text("Manifest/Spec/Format") or "S3BatchOperations_CSV_20180820"
        # An inventory report's manifest.json names its own columns ("Specifying a manifest":
        # Fields only for S3BatchOperations_CSV_20180820).
        if manifest_format != "S3InventoryReport_CSV_20161130" and manifest_fields not in (["Bucket", "Key"], ["Bucket", "Key", "VersionId"]):
            return _s3c_error(start_response, 400, "InvalidRequest", f"the stand-in reads CSV manifests of the fields Bucket, Key[, VersionId], not {manifest_fields}")
        job_id = str(uuid.uuid4())
        job = {
            "id": job_id,
            "account": account,
            "token": token,
            "description": text("Description") or "",
            "priority": int(priority),
            "role": role,
            "confirmation_required": (text("ConfirmationRequired") or "true") == "true",
            "status": "New",
            "total": None,
            "succeeded": 0,
            "failed": 0,
            "failure_reasons": [],
            "manifest_bucket": manifest_bucket,
            "manifest_key": manifest_key,
            "manifest_etag": text("Manifest/Location/ETag") or "",
            "manifest_fields": manifest_fields,
            "manifest_format": manifest_format,
            "target_bucket": (text(copy + "/TargetResource") or "").split(":::", 1)[-1],
            "target_prefix": text(copy + "/TargetKeyPrefix") or "",
            "report_bucket_arn": text("Report/Bucket") or "",
            "report_prefix": text("Report/Prefix") or "",
            "report_scope": text("Report/ReportScope") or "AllTasks",
            "created": _rfc3339(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)),
            "cancel": False,
        }
        if job["confirmation_required"]:
            return _s3c_error(start_response, 400, "InvalidRequest", "the stand-in runs jobs created with ConfirmationRequired=false only")
        with BATCH_LOCK:
            BATCH_JOBS[job_id] = job
        threading.Thread(target=_run_job, args=(job_id,), daemon=True, name=f"batch-{job_id}").start()
        _log(f"batch job {job_id} created ({token})")
        return _s3c_reply(start_response, "200 OK", "CreateJobResult", f"<JobId>{job_id}</JobId>")
    if rest == "" and method == "GET":
        with BATCH_LOCK:
            jobs = sorted((dict(j) for j in BATCH_JOBS.values() if j["account"] == account), key=lambda j: j["created"])
        wanted = set(query.get("jobStatuses", []))
        members = "".join(
            f"<member><JobId>{j['id']}</JobId><Description>{_xml_escape(j['description'])}</Description>"
            f"<Operation>S3PutObjectCopy</Operation><Priority>{j['priority']}</Priority><Status>{j['status']}</Status>"
            f"<CreationTime>{j['created']}</CreationTime></member>"
            for j in jobs
            if not wanted or j["status"] in wanted
        )
        return _s3c_reply(start_response, "200 OK", "ListJobsResult", f"<Jobs>{members}</Jobs>")
    job_id, _, action = rest.partition("/")
    with BATCH_LOCK:
        job = BATCH_JOBS.get(job_id)
        job = dict(job) if job is not None and job["account"] == account else None
    if job is None:
        return _s3c_error(start_response, 404, "NotFoundException", f"Job {job_id} not found in account {account}")
    if action == "" and method == "GET":
        return _s3c_reply(start_response, "200 OK", "DescribeJobResult", f"<Job>{_job_xml(job)}</Job>")
    if action == "status" and method == "POST":
        requested = (query.get("requestedJobStatus") or [""])[0]
        if requested != "Cancelled":
            return _s3c_error(start_response, 400, "InvalidRequest", "the stand-in supports requestedJobStatus=Cancelled only")
        if job["status"] in ("Complete", "Cancelled", "Failed"):
            return _s3c_error(start_response, 400, "JobStatusException", f"Job {job_id} is {job['status']} and cannot be cancelled")
        job = _set_job(job_id, cancel=True)
        return _s3c_reply(start_response, "200 OK", "UpdateJobStatusResult", f"<JobId>{job_id}</JobId><Status>{job['status']}</Status>")
    return _s3c_error(start_response, 400, "InvalidRequest", f"the stand-in does not answer {method} {path}")


def _find(root: Any, path: str, ns: dict[str, str]) -> str | None:
    node = root.find("/".join(f"c:{x}" for x in path.split("/")), ns)
    if node is None:
        # Requests without the namespace.
        node = root.find(path)
    return None if node is None else (node.text or "")


class StandinApp:
    """WSGI app in front of moto's dispatcher: the control API, then faults, then moto."""

    def __init__(self, moto_app: Any) -> None:
        self.moto_app = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        # Control calls are unsigned; a signed request to /envclone-standin/... is an S3 call
        # on a bucket of that name and goes to moto.
        if path.startswith(CONTROL_PREFIX) and "HTTP_AUTHORIZATION" not in environ:
            health = path[len(CONTROL_PREFIX) :]
            if health.startswith("health/") and SETTINGS.faults:
                # Fault rules matching "health:<path glob>" make the application look slow
                # or down, e.g. {"match": "health:green/*", "status": 503}.
                response = self._fault(RequestInfo("health", health[len("health/") :], "plain"), environ, start_response)
                if response is not None:
                    return response
            return control(environ, start_response)
        if not path.startswith("/moto-api") and SETTINGS.faults:
            response = self._fault(identify(environ), environ, start_response)
            if response is not None:
                return response
        if path.startswith("/v20180820/jobs"):
            return s3_control_jobs(environ, start_response)
        with MOTO_LOCK:
            _settle_renames()
            changed = _copy_source_changed(environ)
            if changed is not None:
                info = identify(environ)
                status, headers, body = error_response(info, "PUT", 412, "PreconditionFailed", changed)
                start_response(status, headers)
                return [body]
            return self.moto_app(environ, start_response)

    @staticmethod
    def _fault(info: RequestInfo, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes] | None:
        """Sleeps the rules' latency; answers with a rule's error, or None to go on."""
        latency, rule = decide_fault(info)
        if latency > 0:
            time.sleep(latency)
        if rule is None:
            return None
        code = rule.code or _default_code(info, rule.status)
        message = rule.message or f"Injected by the envclone stand-in into {info.label}"
        _log(f"fault rule {rule.id}: {info.label} -> {rule.status} {code}")
        status, headers, body = error_response(info, environ.get("REQUEST_METHOD", "GET").upper(), rule.status, code, message)
        start_response(status, headers)
        return [body]


# ======================================================================================= main


def _warm_up(dispatcher: DomainDispatcherApplication) -> None:
    # moto builds a Flask app per service on first use (the first CloudFormation call takes
    # about a second); build the ones envclone uses before announcing the port, so that
    # latency measured by tests is the injected one.
    for service in ("s3", "rds", "cloudformation", "autoscaling", "route53", "ec2", "elbv2", "sts"):
        with dispatcher.lock:
            if service not in dispatcher.app_instances:
                dispatcher.app_instances[service] = dispatcher.create_app(service)  # type: ignore[arg-type]


# Resources of types moto's CloudFormation skips and no moto backend here creates (moto's
# CloudFront and WAFv2 backends take their API's XML/JSON shapes, not CloudFormation's):
# recorded here by (account, region) and physical id, with their logical id and properties, so a
# stack delete removes them and a test can list them. Each gets the Ref and GetAtt values the
# CloudFormation resource reference documents (page "<type>", Return values).
PLACEHOLDERS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


def _random_id(length: int, alphabet: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") -> str:
    return "".join(random.choice(alphabet) for _ in range(length))


def _install_webapp_types(base: Any) -> None:
    """AWS::Cognito::UserPool/UserPoolDomain/UserPoolClient in moto's Cognito backend, and
    placeholders for AWS::CloudFront::Distribution/OriginAccessControl, AWS::WAFv2::WebACL,
    AWS::ApiGateway::Authorizer/Stage (AWS's WebApp sample reads their attributes)."""
    from moto.cognitoidp.models import cognitoidp_backends

    def properties(cloudformation_json: Any) -> dict[str, Any]:
        return dict(cloudformation_json.get("Properties") or {})

    # CloudFormation, "AWS::Cognito::UserPool": Ref is the pool id; GetAtt Arn, ProviderName,
    # ProviderURL, UserPoolId.
    class UserPoolModel(base):  # type: ignore[misc, valid-type]
        __module__ = "moto.cognitoidp.models"

        def __init__(self, pool: Any) -> None:
            self.pool = pool

        @property
        def physical_resource_id(self) -> str:
            return self.pool.id

        @staticmethod
        def cloudformation_name_type() -> str:
            return "UserPoolName"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Cognito::UserPool"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in ("Arn", "ProviderName", "ProviderURL", "UserPoolId")

        def get_cfn_attribute(self, attribute_name: str) -> str:
            provider = f"cognito-idp.{self.pool.region}.amazonaws.com/{self.pool.id}"
            return {
                "Arn": self.pool.arn,
                "ProviderName": provider,
                "ProviderURL": f"https://{provider}",
                "UserPoolId": self.pool.id,
            }[attribute_name]

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[no-untyped-def]
            props = properties(cloudformation_json)
            name = props.pop("UserPoolName", None) or resource_name
            return cls(cognitoidp_backends[account_id][region_name].create_user_pool(name, props))

        def delete(self, account_id: str, region_name: str) -> None:
            cognitoidp_backends[account_id][region_name].delete_user_pool(self.pool.id)

    # "AWS::Cognito::UserPoolDomain": Ref is the domain (prefix); it is unique in the region.
    class UserPoolDomainModel(base):  # type: ignore[misc, valid-type]
        __module__ = "moto.cognitoidp.models"

        def __init__(self, domain: str) -> None:
            self.domain = domain

        @property
        def physical_resource_id(self) -> str:
            return self.domain

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Cognito::UserPoolDomain"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[no-untyped-def]
            props = properties(cloudformation_json)
            backend = cognitoidp_backends[account_id][region_name]
            domain = str(props["Domain"])
            if backend.describe_user_pool_domain(domain) is not None:
                # CreateUserPoolDomain: "InvalidParameterException: Domain already associated
                # with another user pool."
                raise ValueError(f"Domain {domain} already associated with another user pool.")
            backend.create_user_pool_domain(str(props["UserPoolId"]), domain, props.get("CustomDomainConfig"))
            return cls(domain)

        def delete(self, account_id: str, region_name: str) -> None:
            cognitoidp_backends[account_id][region_name].delete_user_pool_domain(self.domain)

    # "AWS::Cognito::UserPoolClient": Ref is the client id; GetAtt ClientId, Name.
    class UserPoolClientModel(base):  # type: ignore[misc, valid-type]
        __module__ = "moto.cognitoidp.models"

        def __init__(self, client: Any) -> None:
            self.client = client

        @property
        def physical_resource_id(self) -> str:
            return self.client.id

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Cognito::UserPoolClient"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in ("ClientId", "Name")

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return self.client.id if attribute_name == "ClientId" else self.client.extended_config.get("ClientName", "")

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[no-untyped-def]
            props = properties(cloudformation_json)
            pool = str(props.pop("UserPoolId"))
            secret = _truthy(props.pop("GenerateSecret", False))
            return cls(cognitoidp_backends[account_id][region_name].create_user_pool_client(pool, secret, props))

        def delete(self, account_id: str, region_name: str) -> None:
            cognitoidp_backends[account_id][region_name].delete_user_pool_client(self.client.user_pool_id, self.client.id)

    def placeholder(type_name: str, make: Callable[[str, str, str, dict[str, Any]], tuple[str, dict[str, str]]]) -> None:
        """A recorded placeholder of type_name: make(account, region, name, properties) gives
        its Ref value and its GetAtt attributes."""

        def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[no-untyped-def]
            props = properties(cloudformation_json)
            ref, attributes = make(account_id, region_name, resource_name, props)
            key = f"{type_name}/{uuid.uuid4()}"
            PLACEHOLDERS.setdefault((account_id, region_name), {})[key] = {
                "Ref": ref,
                "Properties": props,
                "Attributes": attributes,
            }
            return cls(key, ref, attributes)

        def delete(self, account_id: str, region_name: str) -> None:  # type: ignore[no-untyped-def]
            PLACEHOLDERS.get((account_id, region_name), {}).pop(self.key, None)

        def get_cfn_attribute(self, attribute_name: str) -> str:  # type: ignore[no-untyped-def]
            from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

            if attribute_name not in self.attributes:
                raise UnformattedGetAttTemplateException()
            return self.attributes[attribute_name]

        def init(self, key: str, ref: str, attributes: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
            self.key, self.ref, self.attributes = key, ref, attributes

        attrs = {
            "__module__": "moto.core.common_models",
            "__init__": init,
            "physical_resource_id": property(lambda self: self.ref),
            "cloudformation_type": staticmethod(lambda: type_name),
            "has_cfn_attr": classmethod(lambda cls, attr: True),
            "get_cfn_attribute": get_cfn_attribute,
            "create_from_cloudformation_json": classmethod(create),
            "delete": delete,
        }
        type(type_name.replace("::", "") + "Placeholder", (base,), attrs)

    def distribution(account: str, region: str, name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
        # "AWS::CloudFront::Distribution": Ref is the distribution id (E…); GetAtt DomainName
        # (d111111abcdef8.cloudfront.net), Id.
        ident = "E" + _random_id(13)
        return ident, {"Id": ident, "DomainName": f"d{_random_id(13, 'abcdef0123456789')}.cloudfront.net"}

    def origin_access_control(account: str, region: str, name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
        # "AWS::CloudFront::OriginAccessControl": Ref and GetAtt Id are the OAC id.
        ident = "E" + _random_id(13)
        return ident, {"Id": ident}

    def web_acl(account: str, region: str, name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
        # "AWS::WAFv2::WebACL": Ref is "name|id|scope"; GetAtt Arn, Id. A CLOUDFRONT-scoped ACL
        # lives in us-east-1 under "global".
        acl_name = str(props.get("Name") or name)
        ident = str(uuid.uuid4())
        scope = str(props.get("Scope", "REGIONAL"))
        where = "global" if scope == "CLOUDFRONT" else "regional"
        arn = f"arn:aws:wafv2:{region}:{account}:{where}/webacl/{acl_name}/{ident}"
        return f"{acl_name}|{ident}|{scope}", {"Arn": arn, "Id": ident}

    def authorizer(account: str, region: str, name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
        # "AWS::ApiGateway::Authorizer": Ref and GetAtt AuthorizerId are the authorizer id.
        ident = _random_id(6, "abcdefghijklmnopqrstuvwxyz0123456789")
        return ident, {"AuthorizerId": ident}

    def stage(account: str, region: str, name: str, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
        # "AWS::ApiGateway::Stage": Ref is the stage name (unique per REST API only).
        return str(props.get("StageName")), {}

    placeholder("AWS::CloudFront::Distribution", distribution)
    placeholder("AWS::CloudFront::OriginAccessControl", origin_access_control)
    placeholder("AWS::WAFv2::WebACL", web_acl)
    placeholder("AWS::ApiGateway::Authorizer", authorizer)
    placeholder("AWS::ApiGateway::Stage", stage)


def _install_public_templates() -> None:
    """What public templates (tests/fixtures/real/) need of CloudFormation and RDS that moto
    does differently from AWS."""
    # RDS takes the engine name in any case and reports it lowercase (CreateDBInstance,
    # "Engine": "Valid Values: ... mysql ..."; AWS's own samples write `Engine: MySQL`); moto
    # refuses any other case ("engine MySQL not supported").
    orig_create_instance = rds_models.RDSBackend.create_db_instance

    @functools.wraps(orig_create_instance)
    def create_db_instance(self, db_kwargs):  # type: ignore[no-untyped-def]
        if isinstance(db_kwargs.get("engine"), str):
            db_kwargs = dict(db_kwargs, engine=db_kwargs["engine"].lower())
        return orig_create_instance(self, db_kwargs)

    rds_models.RDSBackend.create_db_instance = create_db_instance

    # `Ref` of an AWS::RDS::DBParameterGroup is its name (CloudFormation, "AWS::RDS::DBParameterGroup",
    # Return values); moto handed the model object on (DBParameterGroupName: !Ref Group failed).
    rds_models.DBParameterGroup.physical_resource_id = property(lambda self: self.name)

    # `Ref` of an AWS::EFS::AccessPoint is its access point id, `fsap-…` (CloudFormation,
    # "AWS::EFS::AccessPoint", Return values); moto's model had no physical id, so the stack
    # listed the access point with an empty PhysicalResourceId and `!Ref AccessPoint` was "".
    from moto.efs import models as efs_models

    efs_models.AccessPoint.physical_resource_id = property(lambda self: self.access_point_id)

    # AWS::SecretsManager::Secret, which moto's CloudFormation skipped (a template's
    # `!Ref Secret` then named nothing). CloudFormation, "AWS::SecretsManager::Secret": Ref is
    # the secret's ARN; GenerateSecretString makes a random password (put under
    # GenerateStringKey into SecretStringTemplate when both are given); a stack delete deletes
    # it at once, without a recovery window. Dynamic references
    # ({{resolve:secretsmanager:...}}) are still passed through unresolved.
    from moto.core.common_models import CloudFormationModel
    from moto.secretsmanager.models import secretsmanager_backends

    class SecretTemplateModel(CloudFormationModel):
        __module__ = "moto.secretsmanager.models"

        def __init__(self, arn: str, name: str) -> None:
            self.arn = arn
            self.name = name

        @property
        def physical_resource_id(self) -> str:
            return self.arn

        @staticmethod
        def cloudformation_name_type() -> str:
            return "Name"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::SecretsManager::Secret"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr == "Id"

        def get_cfn_attribute(self, attribute_name: str) -> str:
            from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

            if attribute_name == "Id":
                return self.arn
            raise UnformattedGetAttTemplateException()

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[no-untyped-def]
            properties = cloudformation_json.get("Properties") or {}
            backend = secretsmanager_backends[account_id][region_name]
            secret_string = properties.get("SecretString")
            generate = properties.get("GenerateSecretString")
            if secret_string is None and isinstance(generate, dict):
                password = json.loads(
                    backend.get_random_password(
                        password_length=int(generate.get("PasswordLength", 32)),
                        exclude_characters=generate.get("ExcludeCharacters", ""),
                        exclude_numbers=_truthy(generate.get("ExcludeNumbers", False)),
                        exclude_punctuation=_truthy(generate.get("ExcludePunctuation", False)),
                        exclude_uppercase=_truthy(generate.get("ExcludeUppercase", False)),
                        exclude_lowercase=_truthy(generate.get("ExcludeLowercase", False)),
                        include_space=_truthy(generate.get("IncludeSpace", False)),
                        require_each_included_type=_truthy(generate.get("RequireEachIncludedType", True)),
                    )
                )["RandomPassword"]
                template, key = generate.get("SecretStringTemplate"), generate.get("GenerateStringKey")
                secret_string = json.dumps(dict(json.loads(template), **{key: password})) if template and key else password
            name = properties.get("Name") or resource_name
            backend.create_secret(
                name=name,
                secret_string=secret_string,
                secret_binary=None,
                description=properties.get("Description"),
                tags=properties.get("Tags"),
                kms_key_id=properties.get("KmsKeyId"),
                client_request_token=None,
                replica_regions=[],
                force_overwrite=False,
            )
            return cls(backend.secrets[name].arn, name)

        def delete(self, account_id: str, region_name: str) -> None:
            secretsmanager_backends[account_id][region_name].delete_secret(self.arn, None, True)

    _install_webapp_types(CloudFormationModel)

    cfn_parsing.get_model_map.cache_clear()
    cfn_parsing.get_name_type_map.cache_clear()

    # A nested stack (AWS::CloudFormation::Stack) that fails fails its parent's resource, and
    # the parent rolls back ("Embedded stack ... was not successfully created: ..."). moto's
    # nested stack rolled back alone and the parent was CREATE_COMPLETE without it.
    stack_model = cfn_models.Stack
    nested_from_cfn = stack_model.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_nested_stack(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[no-untyped-def]
        nested = nested_from_cfn(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        if nested.status not in ("CREATE_COMPLETE", "CREATE_IN_PROGRESS"):
            raise ValueError(
                f"Embedded stack {nested.stack_id} was not successfully created: "
                f"{getattr(nested, 'status_reason', None) or nested.status}"
            )
        return nested

    stack_model.create_from_cloudformation_json = classmethod(create_nested_stack)

    # Template values reach a resource with the type its schema gives them: CloudFormation
    # turns a parameter's "600" into the integer AWS::EC2::FlowLog MaxAggregationInterval is
    # (moto refused the string: "Invalid Flow Log Max Aggregation Interval").
    from moto.ec2.models.flow_logs import FlowLogs

    flow_log_from_cfn = FlowLogs.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_flow_log(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[no-untyped-def]
        properties = cloudformation_json.get("Properties") or {}
        interval = properties.get("MaxAggregationInterval")
        if isinstance(interval, str) and interval.isdigit():
            properties = dict(properties, MaxAggregationInterval=int(interval))
            cloudformation_json = dict(cloudformation_json, Properties=properties)
        return flow_log_from_cfn(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)

    FlowLogs.create_from_cloudformation_json = classmethod(create_flow_log)

    # DescribeStacks: a NoEcho parameter's value is "****" (CloudFormation, "Parameters",
    # NoEcho: "the parameter value is masked as asterisks (*****) for any calls that describe
    # the stack", defaults included); moto compared the value, not the key, with its list of
    # NoEcho keys and showed every secret. A List<...>/CommaDelimitedList value is the comma-separated string it was
    # given; moto showed Python's repr of its list ("['subnet-1', 'subnet-2']"), which a clone
    # cannot pass back.
    def parameter_list(self):  # type: ignore[no-untyped-def]
        declared = self.resource_map._template.get("Parameters") or {}
        masked = {k for k, d in declared.items() if isinstance(d, dict) and _truthy(d.get("NoEcho"))}
        given = self.resource_map.input_parameters
        out = []
        for key, value in self.resource_map.resolved_parameters.items():
            declaration = declared.get(key) or {}
            entry = {"ParameterKey": key}
            if key in masked:
                value = "****"
            elif isinstance(value, bool):
                # A YAML boolean default (`Default: No`) is the string CloudFormation makes of
                # it, "false" (moto showed Python's "False", which AllowedValues then refuses).
                value = "true" if value else "false"
            elif isinstance(value, list):
                value = ",".join(str(v) for v in value)
            if str(declaration.get("Type", "")).startswith("AWS::SSM::Parameter::"):
                # An SSM-typed parameter's value is the SSM parameter's name; what it resolved to
                # is ResolvedValue (DescribeStacks, Parameter.ResolvedValue). moto showed the
                # resolved value as the value, which a clone passing it back cannot resolve.
                entry["ResolvedValue"] = value
                value = given.get(key, declaration.get("Default"))
            entry["ParameterValue"] = value
            out.append(entry)
        return out

    cfn_models.Stack.parameter_list = property(parameter_list)

    # Short-form intrinsics as CloudFormation reads them ("Intrinsic function reference",
    # Fn::GetAtt: "!GetAtt logicalNameOfResource.attributeName"; the attribute name itself may
    # hold a dot, e.g. Endpoint.Address). moto split `!GetAtt Db.Endpoint.Address` at every dot,
    # left `!GetAtt [Db, Endpoint.Address]` and any tag over a mapping (`!Base64 {Fn::Sub: ...}`)
    # as unconstructed YAML nodes, and `${Db.Endpoint.Address}` in Fn::Sub split at every dot.
    def yaml_tag_constructor(loader, tag, node):  # type: ignore[no-untyped-def]
        import yaml

        if isinstance(node, yaml.SequenceNode):
            value: Any = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:
            value = loader.construct_scalar(node)
            if tag == "!GetAtt":
                value = value.split(".", 1)
        return {"Ref" if tag == "!Ref" else f"Fn::{tag[1:]}": value}

    cfn_models.yaml_tag_constructor = yaml_tag_constructor

    import moto.cloudformation.responses as cfn_responses

    cfn_responses.yaml_tag_constructor = yaml_tag_constructor

    orig_clean_json = cfn_parsing.clean_json

    @functools.wraps(orig_clean_json)
    def clean_json(resource_json, resources_map):  # type: ignore[no-untyped-def]
        if isinstance(resource_json, dict) and set(resource_json) == {"Fn::GetAtt"}:
            target = resource_json["Fn::GetAtt"]
            if isinstance(target, str):
                target = target.split(".", 1)
            if isinstance(target, list) and len(target) > 2 and all(isinstance(t, str) for t in target):
                target = [target[0], ".".join(target[1:])]
            resource_json = {"Fn::GetAtt": target}
        return orig_clean_json(resource_json, resources_map)

    cfn_parsing.clean_json = clean_json


def install_corrections() -> None:
    _install_rds_time()
    _install_rds_point_in_time()
    _install_rds_clusters()
    _install_cloudformation_clusters()
    _install_cloudformation()
    _install_stack_delete()
    _install_s3()
    _install_s3_inventory()
    _install_dynamodb()
    _install_autoscaling()
    _install_route53()
    _install_elbv2()
    _install_public_templates()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--port-file", help="write the port here once ready to serve")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    parser.add_argument("--print-exports", action="store_true", help="print shell exports once ready")
    parser.add_argument("--quiet", action="store_true", default=os.environ.get("ENVCLONE_STANDIN_QUIET") == "1", help="no per-request log lines")
    args = parser.parse_args(argv)

    import werkzeug.serving
    from werkzeug.serving import make_server

    # Plain request lines in a log file (werkzeug colours status codes with ANSI escapes).
    werkzeug.serving._log_add_style = sys.stderr.isatty()  # type: ignore[attr-defined]

    install_corrections()
    dispatcher = DomainDispatcherApplication(create_backend_app)
    _warm_up(dispatcher)

    handler = MotoRequestHandler
    if args.quiet:
        class QuietHandler(MotoRequestHandler):
            def log_request(self, *a: Any, **k: Any) -> None:
                pass

        handler = QuietHandler

    server = make_server(args.host, args.port, StandinApp(dispatcher), threaded=True, request_handler=handler)
    port = server.server_port
    # moto generates URLs pointing back at itself from this.
    os.environ["MOTO_PORT"] = str(port)

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.parent_pid:
        def watch_parent() -> None:
            while True:
                time.sleep(1.0)
                try:
                    os.kill(args.parent_pid, 0)
                except ProcessLookupError:
                    _log(f"parent {args.parent_pid} is gone; stopping")
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                except PermissionError:
                    pass

        threading.Thread(target=watch_parent, daemon=True).start()

    if args.port_file:
        # Written atomically and only now that the socket listens: its existence means ready.
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    url = f"http://{args.host}:{port}"
    _log(f"moto {PINNED_MOTO_VERSION} with envclone corrections listening on {url} (pid {os.getpid()}, RDS delay {SETTINGS.rds_delay}s, restorable lag {SETTINGS.restorable_lag}s)")
    if args.print_exports:
        print(
            f"export AWS_ENDPOINT_URL={url}\n"
            "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing\n"
            "export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1\n"
            f"export ENVCLONE_STANDIN_URL={url} ENVCLONE_STANDIN_PID={os.getpid()}\n"
            "unset AWS_PROFILE AWS_SESSION_TOKEN",
            flush=True,
        )
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()
        if args.port_file:
            try:
                os.unlink(args.port_file)
            except OSError:
                pass
        _log("stopped")


if __name__ == "__main__":
    main()
