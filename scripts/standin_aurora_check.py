#!/usr/bin/env python3
"""Drive the local stand-in through envclone's Aurora flows with boto3 and check that it
behaves as tests/it/STANDIN.md says (a check of scripts/standin.py, not of envclone).

    .venv/bin/python scripts/standin_aurora_check.py [--keep-going] [--no-webapp]

Starts its own stand-in (scripts/standin.py on a free 127.0.0.1 port, RDS delay 1 s, restorable
lag 2 s), stops it at the end. Exit status 0 when every check passed.

1. stacks/aurora.yaml deployed as "prod" by scripts/seed_demo.py: cluster creating -> available,
   LatestRestorableTime present and advancing, the writer a member, tags, outputs resolved;
2. a copy-on-write clone stack (SourceClusterIdentifier only: the template restores with
   UseLatestRestorableTime), made once LatestRestorableTime has passed the moment "writes
   stopped", completes with its writer, outputs and the clone group, and is recorded at the
   source's LatestRestorableTime of that moment (also with UseLatestRestorableTime as the string
   "true"); an unknown source cluster rolls the stack back with the RDS error; through the RDS
   API, RestoreToTime with copy-on-write is refused (InvalidParameterCombination, as AWS
   documents) and a full-copy RestoreToTime is checked against LatestRestorableTime;
3. cluster snapshots: refused while the cluster is not available, a stack from a snapshot that
   is still being created fails, then completes once it is available;
4. deleting stacks: instances before the cluster, a final cluster snapshot (tags copied) for
   DeletionPolicy Snapshot, none for Delete, the cluster kept for Retain, DELETE_FAILED for a
   protected cluster and RetainResources after that;
5. `!Not [!Condition X]` conditions; the API's DeleteDBCluster final-snapshot rule; a cluster
   rename; the 15-clone limit of a copy-on-write family;
6. stacks/webapp.yaml (a stand-alone DB instance) deployed, cloned from a DB snapshot and deleted.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AURORA = os.path.join(ROOT, "stacks", "aurora.yaml")
WEBAPP = os.path.join(ROOT, "stacks", "webapp.yaml")

RESULTS: list[tuple[bool, str]] = []


class CheckFailed(Exception):
    pass


def check(condition: Any, what: str) -> None:
    RESULTS.append((bool(condition), what))
    print(("ok    " if condition else "FAIL  ") + what, flush=True)
    if not condition and not KEEP_GOING:
        raise CheckFailed(what)


KEEP_GOING = False


def start_standin(tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    port_file = os.path.join(tmp, "port")
    env = dict(os.environ, ENVCLONE_STANDIN_RDS_DELAY="1.0", ENVCLONE_STANDIN_RESTORABLE_LAG="2", ENVCLONE_STANDIN_QUIET="1")
    log = open(os.path.join(tmp, "log"), "wb")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "scripts", "standin.py"), "--port", "0", "--port-file", port_file, "--parent-pid", str(os.getpid())],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )
    for _ in range(600):
        if os.path.exists(port_file) and open(port_file).read().strip():
            return proc, f"http://127.0.0.1:{open(port_file).read().strip()}"
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("stand-in did not start:\n" + open(os.path.join(tmp, "log")).read()[-3000:])


def stop_standin(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out waiting for {what}")
        time.sleep(interval)


def main() -> int:
    global KEEP_GOING
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep-going", action="store_true", help="go on after a failed check")
    ap.add_argument("--no-webapp", action="store_true", help="skip the webapp.yaml checks")
    args = ap.parse_args()
    KEEP_GOING = args.keep_going

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    with tempfile.TemporaryDirectory(prefix="envclone-aurora-check.") as tmp:
        proc, url = start_standin(tmp)
        os.environ["AWS_ENDPOINT_URL"] = url
        print(f"stand-in at {url} (pid {proc.pid})", flush=True)
        try:
            run_checks(url, args.no_webapp)
        except CheckFailed as exc:
            print(f"stopped at: {exc}", flush=True)
        except Exception:
            traceback.print_exc()
            RESULTS.append((False, "unexpected error"))
        finally:
            stop_standin(proc)
            log = open(os.path.join(tmp, "log")).read()
            if "Traceback" in log:
                print("--- the stand-in logged tracebacks:\n" + log[-4000:])
    failed = [what for ok, what in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def run_checks(url: str, skip_webapp: bool) -> None:
    import boto3
    import json

    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import seed_demo

    rds = boto3.client("rds")
    cf = boto3.client("cloudformation")
    ec2 = boto3.client("ec2")
    health = f"{url}/envclone-standin/health"
    aurora_body = open(AURORA).read()

    def control(path: str) -> Any:
        with urllib.request.urlopen(f"{url}/envclone-standin/{path}") as response:
            return json.loads(response.read())

    def cluster(cluster_id: str) -> dict[str, Any] | None:
        try:
            return rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
        except rds.exceptions.DBClusterNotFoundFault:
            return None

    def instance(instance_id: str) -> dict[str, Any] | None:
        try:
            return rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
        except rds.exceptions.DBInstanceNotFoundFault:
            return None

    def stack(name: str) -> dict[str, Any] | None:
        try:
            return cf.describe_stacks(StackName=name)["Stacks"][0]
        except cf.exceptions.ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise

    def settled(name: str, timeout: float = 30.0) -> dict[str, Any]:
        return wait_for(f"stack {name} to settle", lambda: (lambda s: s if s and not s["StackStatus"].endswith("_IN_PROGRESS") else None)(stack(name)), timeout)

    def gone(name: str, timeout: float = 30.0) -> None:
        wait_for(f"stack {name} to be deleted", lambda: stack(name) is None or stack(name)["StackStatus"] == "DELETE_FAILED", timeout)

    def outputs(s: dict[str, Any]) -> dict[str, str]:
        return {o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs") or []}

    def failure_reasons(name: str) -> list[str]:
        return [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
            for e in cf.describe_stack_events(StackName=name)["StackEvents"]
            if e["ResourceStatus"].endswith("_FAILED")
        ]

    def params(**values: str) -> list[dict[str, str]]:
        return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]

    def tags_of(resource: dict[str, Any]) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in resource.get("TagList") or []}

    def utc(moment: datetime.datetime) -> str:
        return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def rds_error(call: Callable[[], Any]) -> str:
        try:
            call()
        except rds.exceptions.ClientError as exc:
            return exc.response["Error"]["Code"] + ": " + exc.response["Error"]["Message"]
        return ""

    # ---------------------------------------------------------------- 1. the source, "prod"
    print("== 1. seed_demo.py deploys stacks/aurora.yaml as prod", flush=True)
    summary = seed_demo.seed("prod", AURORA, health_base=health, log=lambda *a: print("   seed:", *a, flush=True))
    check(summary["stack_status"] == "CREATE_COMPLETE", "prod: CREATE_COMPLETE")
    prod = cluster("prod-cluster")
    check(prod is not None and prod["Status"] == "available", f"prod-cluster available ({prod and prod['Status']})")
    check(prod["EngineMode"] == "provisioned" and prod["Engine"] == "aurora-postgresql" and prod["EngineVersion"] == "16.4",
          f"engine {prod['Engine']} {prod['EngineVersion']} mode {prod.get('EngineMode')}")
    check(prod.get("DatabaseName") == "webapp" and prod.get("MasterUsername") == "webadmin", "new cluster: DatabaseName/MasterUsername from the template")
    members = prod.get("DBClusterMembers") or []
    check([m["DBInstanceIdentifier"] for m in members] == ["prod-cluster-1"] and members[0]["IsClusterWriter"],
          f"writer prod-cluster-1 is the cluster's writer ({members})")
    writer = instance("prod-cluster-1")
    check(writer and writer.get("DBClusterIdentifier") == "prod-cluster" and writer["Engine"] == "aurora-postgresql" and writer["Endpoint"]["Port"] == 5432,
          "DescribeDBInstances: prod-cluster-1 in prod-cluster, port 5432")
    tags = tags_of(prod)
    check(tags.get("Environment") == "prod" and tags.get("aws:cloudformation:stack-name") == "prod" and tags.get("aws:cloudformation:logical-id") == "Cluster",
          f"cluster tags {tags}")
    out = summary["outputs"]
    check(out.get("DatabaseEndpoint") == prod["Endpoint"] and out.get("ClusterIdentifier") == "prod-cluster",
          f"outputs DatabaseEndpoint={out.get('DatabaseEndpoint')} ClusterIdentifier={out.get('ClusterIdentifier')}")
    resources = {r["LogicalResourceId"]: r for r in cf.list_stack_resources(StackName="prod")["StackResourceSummaries"]}
    check(resources.get("Cluster", {}).get("PhysicalResourceId") == "prod-cluster" and resources["Cluster"]["ResourceType"] == "AWS::RDS::DBCluster",
          "ListStackResources: Cluster -> prod-cluster")
    lt_id = resources["WebLaunchTemplate"]["PhysicalResourceId"]
    import base64
    data = ec2.describe_launch_template_versions(LaunchTemplateId=lt_id)["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    check(f"DB_HOST={prod['Endpoint']}" in base64.b64decode(data["UserData"]).decode(), "launch template user data: DB_HOST is the cluster endpoint")
    first = prod.get("LatestRestorableTime")
    time.sleep(1.2)
    second = cluster("prod-cluster").get("LatestRestorableTime")
    now = datetime.datetime.now(datetime.timezone.utc)
    check(first and second and second > first, f"LatestRestorableTime advances ({first} -> {second})")
    check(now - datetime.timedelta(seconds=4) < second <= now - datetime.timedelta(seconds=1.5), f"LatestRestorableTime ~2 s behind now ({second} vs {now})")

    # Timed status through the API as well.
    rds.create_db_cluster(DBClusterIdentifier="api-one", Engine="aurora-postgresql", MasterUsername="admin1", MasterUserPassword="password1")
    fresh = cluster("api-one")
    check(fresh["Status"] == "creating" and "LatestRestorableTime" not in fresh, f"CreateDBCluster: creating, no LatestRestorableTime yet ({fresh['Status']})")
    err = rds_error(lambda: rds.create_db_cluster_snapshot(DBClusterIdentifier="api-one", DBClusterSnapshotIdentifier="api-one-early"))
    check(err.startswith("InvalidDBClusterStateFault"), f"CreateDBClusterSnapshot of a creating cluster refused: {err}")
    wait_for("api-one available", lambda: cluster("api-one")["Status"] == "available", 10)
    check(True, "api-one available after the delay")
    err = rds_error(lambda: rds.delete_db_cluster(DBClusterIdentifier="api-one"))
    check(err.startswith("InvalidParameterCombination"), f"DeleteDBCluster without a final-snapshot decision refused: {err}")
    rds.modify_db_cluster(DBClusterIdentifier="api-one", NewDBClusterIdentifier="api-two", ApplyImmediately=True)
    # As on AWS: pending under the old identifier (renaming), then only the new one answers.
    check(cluster("api-one") and cluster("api-one")["Status"] == "renaming" and cluster("api-two") is None,
          "ModifyDBCluster rename: pending under the old identifier, renaming")
    wait_for("api-two renamed", lambda: cluster("api-two") is not None, 15)
    check(cluster("api-one") is None and cluster("api-two")["Status"] == "available", "ModifyDBCluster rename: effective, available")
    rds.delete_db_cluster(DBClusterIdentifier="api-two", SkipFinalSnapshot=True)
    check(cluster("api-two") is None, "DeleteDBCluster with SkipFinalSnapshot: gone")
    check(not rds.describe_db_cluster_snapshots(DBClusterIdentifier="api-two")["DBClusterSnapshots"], "its automated snapshots gone with it")

    # --------------------------------------------------------------- 2. copy-on-write clone
    print("== 2. copy-on-write clone stack", flush=True)
    # envclone's order: writes stop (Standby), wait until LatestRestorableTime has passed that
    # moment, then create the clone stack with only the source cluster.
    writes_stopped = datetime.datetime.now(datetime.timezone.utc)
    wait_for("LatestRestorableTime past the moment writes stopped", lambda: cluster("prod-cluster")["LatestRestorableTime"] > writes_stopped, 10)
    names = {p["ParameterKey"] for p in stack("prod")["Parameters"]}
    check({"SourceClusterIdentifier", "ClusterSnapshotIdentifier"} <= names and "RestoreTime" not in names,
          f"aurora.yaml: SourceClusterIdentifier and ClusterSnapshotIdentifier, no RestoreTime ({sorted(names)})")
    lrt_before = cluster("prod-cluster")["LatestRestorableTime"]
    cf.create_stack(StackName="green", TemplateBody=aurora_body, Tags=[{"Key": "envclone:role", "Value": "clone"}],
                    Parameters=params(EnvironmentName="green", SourceClusterIdentifier="prod-cluster", HealthCheckBase=health))
    early = stack("green")
    check(early["StackStatus"] == "CREATE_IN_PROGRESS" and not early.get("Outputs"), "clone stack: CREATE_IN_PROGRESS, no outputs yet")
    green_stack = settled("green")
    lrt_after = cluster("prod-cluster")["LatestRestorableTime"]
    check(green_stack["StackStatus"] == "CREATE_COMPLETE", f"clone stack {green_stack['StackStatus']} {failure_reasons('green')}")
    green = cluster("green-cluster")
    check(green and green["Status"] == "available", "green-cluster available")
    check(green.get("DatabaseName") == "webapp" and green.get("MasterUsername") == "webadmin", "clone keeps the source's DatabaseName/MasterUsername")
    check(green.get("CloneGroupId") and green["CloneGroupId"] == cluster("prod-cluster").get("CloneGroupId"), f"CloneGroupId shared with the source ({green.get('CloneGroupId')})")
    check([m["DBInstanceIdentifier"] for m in green.get("DBClusterMembers") or []] == ["green-cluster-1"], "green-cluster-1 is a member")
    check(instance("green-cluster-1") and instance("green-cluster-1")["DBInstanceStatus"] == "available", "green-cluster-1 available")
    gtags = tags_of(green)
    check(gtags.get("Environment") == "green" and gtags.get("envclone:role") == "clone", f"clone tags: template + stack tags ({gtags})")
    check(not green.get("DeletionProtection"), "clone does not inherit deletion protection")
    check(outputs(green_stack).get("DatabaseEndpoint") == green["Endpoint"], "clone output DatabaseEndpoint resolved")
    restored = control("rds/restored-clusters").get("green-cluster") or {}
    check(restored.get("source_cluster") == "prod-cluster" and restored.get("restore_type") == "copy-on-write" and set(restored) == {"source_cluster", "restore_type", "restore_to_time"},
          f"/envclone-standin/rds/restored-clusters: {restored}")
    point = datetime.datetime.fromisoformat(restored.get("restore_to_time", "1970-01-01T00:00:00Z").replace("Z", "+00:00"))
    check(lrt_before.replace(microsecond=0) <= point <= lrt_after,
          f"restored at the source's LatestRestorableTime of the call ({utc(lrt_before)} <= {utc(point)} <= {utc(lrt_after)})")
    check(point >= writes_stopped.replace(microsecond=0), f"... which is past the moment writes stopped ({utc(point)} >= {utc(writes_stopped)})")

    # UseLatestRestorableTime as the string "true" (as a template may write it).
    quoted = aurora_body.replace("UseLatestRestorableTime: !If [IsClone, true,", 'UseLatestRestorableTime: !If [IsClone, "true",', 1)
    check(quoted != aurora_body, "template variant with UseLatestRestorableTime \"true\" (string)")
    cf.create_stack(StackName="teal", TemplateBody=quoted, Parameters=params(EnvironmentName="teal", SourceClusterIdentifier="prod-cluster", HealthCheckBase=health))
    teal_stack = settled("teal")
    teal = control("rds/restored-clusters").get("teal-cluster") or {}
    check(teal_stack["StackStatus"] == "CREATE_COMPLETE" and teal.get("restore_type") == "copy-on-write" and teal.get("restore_to_time"),
          f"clone with UseLatestRestorableTime \"true\": {teal_stack['StackStatus']} {teal} {failure_reasons('teal')}")
    cf.delete_stack(StackName="teal")
    gone("teal")
    check(stack("teal") is None and cluster("teal-cluster") is None, "teal deleted")

    cf.create_stack(StackName="orphan", TemplateBody=aurora_body,
                    Parameters=params(EnvironmentName="orphan", SourceClusterIdentifier="no-such-cluster"))
    reasons = failure_reasons("orphan")
    check(settled("orphan")["StackStatus"] == "ROLLBACK_COMPLETE" and any("DBClusterNotFoundFault" in r for r in reasons), f"unknown source cluster: {reasons[:1]}")
    check(cluster("orphan-cluster") is None and instance("orphan-cluster-1") is None, "nothing left of the failed clone")

    # RestoreDBClusterToPointInTime directly.
    latest = cluster("prod-cluster")["LatestRestorableTime"]
    err = rds_error(lambda: rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="cow-at", SourceDBClusterIdentifier="prod-cluster", RestoreType="copy-on-write", RestoreToTime=latest - datetime.timedelta(seconds=1)))
    check(err.startswith("InvalidParameterCombination") and cluster("cow-at") is None, f"RestoreToTime with copy-on-write refused: {err}")
    err = rds_error(lambda: rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="cow-both", SourceDBClusterIdentifier="prod-cluster", RestoreType="copy-on-write", RestoreToTime=latest, UseLatestRestorableTime=True))
    check(err.startswith("InvalidParameterCombination") and cluster("cow-both") is None, f"RestoreToTime and UseLatestRestorableTime refused: {err}")
    err = rds_error(lambda: rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="cow-none", SourceDBClusterIdentifier="prod-cluster", RestoreType="copy-on-write"))
    check(err.startswith("InvalidParameterCombination") and cluster("cow-none") is None, f"neither RestoreToTime nor UseLatestRestorableTime refused: {err}")
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    err = rds_error(lambda: rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="full-late", SourceDBClusterIdentifier="prod-cluster", RestoreType="full-copy", RestoreToTime=future))
    check(err.startswith("InvalidRestoreFault") and cluster("full-late") is None, f"full-copy RestoreToTime in the future refused: {err}")
    at = (latest - datetime.timedelta(seconds=1)).replace(microsecond=0)
    rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier="full-at", SourceDBClusterIdentifier="prod-cluster", RestoreType="full-copy", RestoreToTime=at)
    full = control("rds/restored-clusters").get("full-at")
    check(full == {"source_cluster": "prod-cluster", "restore_type": "full-copy", "restore_to_time": utc(at)} and not cluster("full-at").get("CloneGroupId"),
          f"full-copy RestoreToTime accepted and recorded: {full}")
    before = cluster("prod-cluster")["LatestRestorableTime"]
    rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier="cow-latest", SourceDBClusterIdentifier="prod-cluster", RestoreType="copy-on-write", UseLatestRestorableTime=True)
    after = cluster("prod-cluster")["LatestRestorableTime"]
    rec = control("rds/restored-clusters").get("cow-latest") or {}
    rec_time = datetime.datetime.fromisoformat(rec.get("restore_to_time", "1970-01-01T00:00:00Z").replace("Z", "+00:00"))
    check(rec.get("restore_type") == "copy-on-write" and before.replace(microsecond=0) <= rec_time <= after,
          f"API copy-on-write with UseLatestRestorableTime: recorded {rec}")
    for extra in ("full-at", "cow-latest"):
        wait_for(f"{extra} available", lambda: cluster(extra)["Status"] == "available", 10)
        rds.delete_db_cluster(DBClusterIdentifier=extra, SkipFinalSnapshot=True)

    # ----------------------------------------------------------------- 3. cluster snapshots
    print("== 3. cluster snapshot and a stack from it", flush=True)
    snap = rds.create_db_cluster_snapshot(DBClusterIdentifier="prod-cluster", DBClusterSnapshotIdentifier="prod-snap-1")["DBClusterSnapshot"]
    check(snap["Status"] == "creating", f"CreateDBClusterSnapshot: {snap['Status']}")
    cf.create_stack(StackName="early", TemplateBody=aurora_body, Parameters=params(EnvironmentName="early", ClusterSnapshotIdentifier="prod-snap-1"))
    reasons = failure_reasons("early")
    check(settled("early")["StackStatus"] == "ROLLBACK_COMPLETE" and any("InvalidDBClusterSnapshotStateFault" in r for r in reasons),
          f"stack from a snapshot still being created: {reasons[:1]}")
    rds.get_waiter("db_cluster_snapshot_available").wait(DBClusterSnapshotIdentifier="prod-snap-1", WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    check(True, "prod-snap-1 available (waiter)")
    cf.create_stack(StackName="blue", TemplateBody=aurora_body, Parameters=params(EnvironmentName="blue", ClusterSnapshotIdentifier="prod-snap-1", HealthCheckBase=health))
    blue_stack = settled("blue")
    check(blue_stack["StackStatus"] == "CREATE_COMPLETE", f"stack from the cluster snapshot: {blue_stack['StackStatus']} {failure_reasons('blue')}")
    blue = cluster("blue-cluster")
    check(blue and blue.get("DatabaseName") == "webapp" and not blue.get("CloneGroupId") and [m["DBInstanceIdentifier"] for m in blue["DBClusterMembers"]] == ["blue-cluster-1"],
          "blue-cluster restored from the snapshot with its writer")
    check(control("rds/restored-clusters").get("blue-cluster") == {"snapshot": "prod-snap-1"}, "restored-clusters: blue-cluster from prod-snap-1")
    cf.create_stack(StackName="nosnap", TemplateBody=aurora_body, Parameters=params(EnvironmentName="nosnap", ClusterSnapshotIdentifier="missing-snap"))
    reasons = failure_reasons("nosnap")
    check(settled("nosnap")["StackStatus"] == "ROLLBACK_COMPLETE" and any("DBClusterSnapshotNotFoundFault" in r for r in reasons), f"missing cluster snapshot: {reasons[:1]}")

    # ------------------------------------------------------------------- 4. deleting stacks
    print("== 4. deleting stacks", flush=True)
    cf.delete_stack(StackName="green")
    check(stack("green")["StackStatus"] == "DELETE_IN_PROGRESS", "green: DELETE_IN_PROGRESS")
    gone("green")
    check(stack("green") is None, "green deleted")
    check(cluster("green-cluster") is None and instance("green-cluster-1") is None, "green's cluster and writer gone")
    finals = [s for s in rds.describe_db_cluster_snapshots(DBClusterIdentifier="green-cluster")["DBClusterSnapshots"]]
    check(len(finals) == 1 and finals[0]["DBClusterSnapshotIdentifier"].startswith("green-snapshot-cluster-") and finals[0]["SnapshotType"] == "manual",
          f"one final cluster snapshot left: {[s['DBClusterSnapshotIdentifier'] for s in finals]}")
    check(tags_of(finals[0]).get("Environment") == "green", f"final snapshot has the cluster's tags ({tags_of(finals[0])})")
    check(not rds.describe_db_snapshots(DBInstanceIdentifier="green-cluster-1")["DBSnapshots"], "no DB snapshot of the writer")

    for policy in ("Delete", "Retain"):
        env = policy.lower() + "-env"
        body = aurora_body.replace("    DeletionPolicy: Snapshot\n", f"    DeletionPolicy: {policy}\n", 1)
        cf.create_stack(StackName=env, TemplateBody=body, Parameters=params(EnvironmentName=env, HealthCheckBase=health))
        check(settled(env)["StackStatus"] == "CREATE_COMPLETE", f"{env} (DeletionPolicy {policy}) created")
        cf.delete_stack(StackName=env)
        gone(env)
        snaps = [s["DBClusterSnapshotIdentifier"] for s in rds.describe_db_cluster_snapshots(DBClusterIdentifier=f"{env}-cluster")["DBClusterSnapshots"]]
        if policy == "Delete":
            check(stack(env) is None and cluster(f"{env}-cluster") is None and not snaps, f"DeletionPolicy Delete: cluster gone, no snapshot ({snaps})")
        else:
            st = stack(env)
            kept = cluster(f"{env}-cluster")
            check(kept is not None and instance(f"{env}-cluster-1") is None, "DeletionPolicy Retain: cluster kept, its writer deleted")
            # The subnet group is still used by the kept cluster: AWS refuses to delete it.
            check(st is not None and st["StackStatus"] == "DELETE_FAILED" and "DatabaseSubnetGroup" in (st.get("StackStatusReason") or ""),
                  f"... and the subnet group it uses cannot go: {st and st['StackStatus']} {st and st.get('StackStatusReason')}")

    rds.modify_db_cluster(DBClusterIdentifier="blue-cluster", DeletionProtection=True, ApplyImmediately=True)
    wait_for("blue-cluster available", lambda: cluster("blue-cluster")["Status"] == "available", 10)
    cf.delete_stack(StackName="blue")
    gone("blue")
    st = stack("blue")
    check(st["StackStatus"] == "DELETE_FAILED" and "[Cluster" in (st.get("StackStatusReason") or ""), f"protected cluster: {st['StackStatus']} {st.get('StackStatusReason')}")
    statuses = {r["LogicalResourceId"]: r["ResourceStatus"] for r in cf.list_stack_resources(StackName="blue")["StackResourceSummaries"]}
    check(statuses.get("Cluster") == "DELETE_FAILED" and statuses.get("ClusterWriter") == "DELETE_COMPLETE", f"Cluster DELETE_FAILED, ClusterWriter DELETE_COMPLETE ({statuses.get('Cluster')}, {statuses.get('ClusterWriter')})")
    check(cluster("blue-cluster") is not None and not [s for s in rds.describe_db_cluster_snapshots(DBClusterIdentifier="blue-cluster")["DBClusterSnapshots"] if s["SnapshotType"] == "manual"],
          "protected cluster kept, no final snapshot taken")
    cf.delete_stack(StackName="blue", RetainResources=["Cluster", "DatabaseSubnetGroup", "PublicSubnetA", "PublicSubnetB", "Vpc", "DatabaseSecurityGroup", "WebSecurityGroup", "LoadBalancerSecurityGroup"])
    gone("blue")
    check(stack("blue") is None and cluster("blue-cluster") is not None, "RetainResources=[Cluster, ...]: stack gone, cluster kept")

    # -------------------------------------------------------------------- 5. odds and ends
    print("== 5. conditions", flush=True)
    cond = """
Conditions:
  A: !Equals [a, b]
  NotA: !Not [!Condition A]
  NotNotA: !Not [!Condition NotA]
  Both: !And [!Condition NotA, !Not [!Condition A]]
Resources:
  Yes1: {Type: AWS::SNS::Topic, Condition: NotA}
  Yes2: {Type: AWS::SNS::Topic, Condition: Both}
  No1: {Type: AWS::SNS::Topic, Condition: NotNotA}
"""
    cf.create_stack(StackName="conds", TemplateBody=cond)
    made = {r["LogicalResourceId"] for r in cf.list_stack_resources(StackName="conds")["StackResourceSummaries"]}
    check(made == {"Yes1", "Yes2"}, f"!Not [!Condition X] evaluates: {sorted(made)}")

    print("== 5b. at most 15 copy-on-write clones per family", flush=True)
    rds.create_db_cluster(DBClusterIdentifier="family", Engine="aurora-postgresql", MasterUsername="admin1", MasterUserPassword="password1")
    wait_for("family restorable", lambda: cluster("family").get("LatestRestorableTime"), 10)
    for n in range(16):
        rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier=f"family-{n}", SourceDBClusterIdentifier="family", RestoreType="copy-on-write", UseLatestRestorableTime=True)
    group = cluster("family")["CloneGroupId"]
    in_group = [c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"] if c.get("CloneGroupId") == group]
    check(len(in_group) == 16 and not cluster("family-15").get("CloneGroupId"), f"15 clones share the group, the 16th is a full copy ({len(in_group)} in the group)")

    # -------------------------------------------------------------------- 6. webapp.yaml
    if skip_webapp:
        return
    print("== 6. stacks/webapp.yaml (DB instance) still works", flush=True)
    summary = seed_demo.seed("web", WEBAPP, health_base=health, log=lambda *a: print("   seed:", *a, flush=True))
    check(summary["stack_status"] == "CREATE_COMPLETE", "web: CREATE_COMPLETE")
    db_id = summary["outputs"].get("DatabaseIdentifier")
    db = instance(db_id)
    check(db and db["DBInstanceStatus"] == "available" and not db.get("DBClusterIdentifier"), f"web DB {db_id} available, in no cluster")
    rds.create_db_snapshot(DBInstanceIdentifier=db_id, DBSnapshotIdentifier="web-snap")
    rds.get_waiter("db_snapshot_available").wait(DBSnapshotIdentifier="web-snap", WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    bucket = "web2-reports-123456789012"
    boto3.client("s3").create_bucket(Bucket=bucket)
    cf.create_stack(StackName="web2", TemplateBody=open(WEBAPP).read(),
                    Parameters=params(EnvironmentName="web2", DBSnapshotIdentifier="web-snap", ReportsBucketName=bucket, HealthCheckBase=health))
    web2 = settled("web2")
    check(web2["StackStatus"] == "CREATE_COMPLETE", f"web2 from web-snap: {web2['StackStatus']} {failure_reasons('web2')}")
    web2_db = outputs(web2).get("DatabaseIdentifier")
    check(control("rds/restored").get(web2_db) == "web-snap", f"web2's DB restored from web-snap ({control('rds/restored')})")
    cf.delete_stack(StackName="web2")
    gone("web2")
    check(stack("web2") is None and instance(web2_db) is None, "web2 deleted with its DB")
    finals = [s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots(DBInstanceIdentifier=web2_db, SnapshotType="manual")["DBSnapshots"]]
    check(len(finals) == 1 and finals[0].startswith("web2-snapshot-database-"), f"web2's final DB snapshot: {finals}")
    # The web stack's own bucket holds the demo objects: its delete fails on it, as on AWS.
    cf.delete_stack(StackName="web")
    gone("web")
    st = stack("web")
    check(st["StackStatus"] == "DELETE_FAILED" and "Uploads" in (st.get("StackStatusReason") or "") and instance(db_id) is None,
          f"web (non-empty bucket): {st['StackStatus']} {st.get('StackStatusReason')}, DB deleted")


if __name__ == "__main__":
    sys.exit(main())
