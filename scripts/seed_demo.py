#!/usr/bin/env python3
"""Seed a demo environment for envclone: deploy a stack from a template that carries an
envclone contract, and fill its buckets with awkward objects.

Run with the project's virtualenv (.venv/bin/python); the AWS side comes from the standard
environment (AWS_ENDPOINT_URL, AWS_REGION, credentials), e.g. the local stand-in:

    .venv/bin/python scripts/seed_demo.py --env prod --template stacks/webapp.yaml \\
        --health-base http://127.0.0.1:15000/envclone-standin/health
    .venv/bin/python scripts/seed_demo.py --env orders-prod --template tests/fixtures/foreign.yaml \\
        --health-base http://127.0.0.1:15000/envclone-standin/health \\
        --parameter LogLevel=debug --parameter WorkerThreads=8
    .venv/bin/python scripts/seed_demo.py --env prod --template stacks/aurora.yaml \\
        --health-base http://127.0.0.1:15000/envclone-standin/health

What it does, in order (each step is skipped when its result already exists, so re-running it
against a seeded environment is harmless):

1. reads the template's Metadata.envclone contract (environment parameter, buckets, entry DNS,
   verify outputs) -- nothing about a particular template is hard-coded;
2. creates each bucket the contract passes in by parameter (``bucket_parameter``), named
   ``<env>-<bucket name lowercased>-<account id>`` -- unless ``--parameter NAME=`` gives that
   parameter empty: then the template's stack creates the bucket itself (the pattern of a
   bucket production owns and hands to clones by parameter: a resource with the contract's
   logical id under a condition that holds when the parameter is empty), and it is found and
   filled as a stack-owned one in step 6;
3. creates the Route 53 hosted zone of ``entry_dns.zone`` when there is none;
4. creates stack ``<env>`` (environment parameter = env, bucket parameters = the buckets of
   step 2, the health-check base parameter = --health-base, DesiredCapacity=2 when the
   template has that parameter, then every --parameter K=V) and waits for CREATE_COMPLETE;
   only parameters the template declares are passed, so a template without bucket or DB
   snapshot parameters (stacks/aurora.yaml: an Aurora cluster, no Reports bucket) works as
   well; an existing stack is left as it is;
5. creates the entry DNS record (``entry_dns.name``): a CNAME to the value of
   ``entry_dns.target_output``. An existing record is left as it is (after a migrate it names
   the live environment), unless --force-dns;
6. fills every bucket of the contract (stack-owned ones, and those of step 2's empty
   parameters, found through the stack's resources)
   with the same set of objects: awkward keys, an empty object, a folder marker, nested
   prefixes, ~50 small objects, content types, user metadata, tags, and one object uploaded
   in three parts (5 MiB + 5 MiB + 1 MiB). Objects already present with the expected ETag and
   size are left alone.

Exit status: 0 done, 1 an AWS call or the stack failed, 2 bad arguments or template.
Importable: ``seed(...)``, ``load_template(...)``, ``read_contract(...)``, ``fill_bucket(...)``
and ``DEMO_OBJECTS`` are the building blocks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlencode

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError

MIB = 1024 * 1024


class BadInput(Exception):
    """The arguments or the template are wrong; nothing was changed."""


# --------------------------------------------------------------------------------------------
# Template and contract
# --------------------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that understands CloudFormation's short-form tags (!Ref, !Sub, ...)."""


def _cfn_tag(loader: yaml.Loader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    if tag_suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: str) -> dict[str, Any]:
    """Parse a CloudFormation template (YAML with short-form tags, or JSON)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise BadInput(f"cannot read template {path}: {e.strerror}") from e
    try:
        doc = yaml.load(text, Loader=_CfnLoader)  # JSON is YAML too
    except yaml.YAMLError as e:
        raise BadInput(f"template {path} is not valid YAML/JSON: {e}") from e
    if not isinstance(doc, dict) or "Resources" not in doc:
        raise BadInput(f"template {path} has no Resources section")
    return doc


@dataclass
class Contract:
    environment_parameter: str
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    # logical name -> {} (stack-owned) or {"bucket_parameter": NAME}
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    entry_dns: dict[str, str] | None = None
    verify: list[dict[str, Any]] = field(default_factory=list)

    def stack_buckets(self) -> list[str]:
        return [b for b, spec in self.buckets.items() if not (spec or {}).get("bucket_parameter")]

    def parameter_buckets(self) -> dict[str, str]:
        """bucket name in the contract -> name of the parameter that passes it in."""
        return {
            b: spec["bucket_parameter"]
            for b, spec in self.buckets.items()
            if (spec or {}).get("bucket_parameter")
        }


def read_contract(template: dict[str, Any], path: str = "template") -> Contract:
    """The template's Metadata.envclone, checked against its Parameters and Resources."""
    meta = (template.get("Metadata") or {}).get("envclone")
    if not isinstance(meta, dict):
        raise BadInput(f"{path} has no Metadata.envclone contract")
    params = template.get("Parameters") or {}
    resources = template.get("Resources") or {}

    env_param = meta.get("environment_parameter")
    if not env_param or env_param not in params:
        raise BadInput(
            f"{path}: environment_parameter {env_param!r} is not a parameter of the template"
        )
    contract = Contract(
        environment_parameter=env_param,
        databases=dict(meta.get("databases") or {}),
        buckets={k: dict(v or {}) for k, v in (meta.get("buckets") or {}).items()},
        entry_dns=meta.get("entry_dns"),
        verify=list(meta.get("verify") or []),
    )
    for name in contract.stack_buckets():
        if resources.get(name, {}).get("Type") != "AWS::S3::Bucket":
            raise BadInput(f"{path}: bucket {name!r} is not an AWS::S3::Bucket resource")
    for name, param in contract.parameter_buckets().items():
        if param not in params:
            raise BadInput(f"{path}: bucket {name!r}: parameter {param!r} is not declared")
    if contract.entry_dns is not None:
        for key in ("zone", "name", "target_output"):
            if not contract.entry_dns.get(key):
                raise BadInput(f"{path}: entry_dns.{key} is missing")
        if contract.entry_dns["target_output"] not in (template.get("Outputs") or {}):
            raise BadInput(
                f"{path}: entry_dns.target_output {contract.entry_dns['target_output']!r} "
                "is not an output of the template"
            )
    return contract


def _referenced_names(node: Any) -> set[str]:
    """Names referenced by Ref and by ${...} inside Fn::Sub strings, anywhere under node."""
    found: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else (v[0] if isinstance(v, list) and v else "")
                if isinstance(text, str):
                    found.update(m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text))
                found |= _referenced_names(v)
            else:
                found |= _referenced_names(v)
    elif isinstance(node, list):
        for v in node:
            found |= _referenced_names(v)
    return found


def health_base_parameter(template: dict[str, Any], contract: Contract) -> str | None:
    """The parameter that lets a caller point the verify URL elsewhere: a parameter with an
    empty default referenced by a verify output (HealthCheckBase in webapp.yaml)."""
    params = template.get("Parameters") or {}
    outputs = template.get("Outputs") or {}
    candidates: list[str] = []
    for check in contract.verify:
        out = outputs.get(check.get("http_output", ""))
        if out is None:
            continue
        for name in sorted(_referenced_names(out.get("Value"))):
            spec = params.get(name)
            if (
                spec is not None
                and name != contract.environment_parameter
                and spec.get("Default") == ""
                and name not in candidates
            ):
                candidates.append(name)
    return candidates[0] if len(candidates) == 1 else None


def check_parameter_value(template: dict[str, Any], key: str, value: str) -> None:
    """The checks CloudFormation makes (moto does not): AllowedPattern, lengths, values."""
    spec = (template.get("Parameters") or {}).get(key)
    if spec is None:
        raise BadInput(f"parameter {key!r} is not declared in the template")
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, value):
        hint = spec.get("ConstraintDescription") or f"must match {pattern}"
        raise BadInput(f"parameter {key}={value!r}: {hint}")
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise BadInput(f"parameter {key}={value!r}: shorter than {spec['MinLength']}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise BadInput(f"parameter {key}={value!r}: longer than {spec['MaxLength']}")
    allowed = spec.get("AllowedValues")
    if allowed and value not in [str(a) for a in allowed]:
        raise BadInput(f"parameter {key}={value!r}: must be one of {allowed}")


# --------------------------------------------------------------------------------------------
# The objects every demo bucket gets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoObject:
    key: str
    body: bytes = b""
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    cache_control: str | None = None
    content_disposition: str | None = None
    parts: tuple[int, ...] = ()  # multipart upload: part sizes; body is generated from key

    def expected_etag(self) -> str:
        if self.parts:
            digests = b"".join(hashlib.md5(p).digest() for p in self.part_bodies())
            return f'"{hashlib.md5(digests).hexdigest()}-{len(self.parts)}"'
        return f'"{hashlib.md5(self.body).hexdigest()}"'

    def size(self) -> int:
        return sum(self.parts) if self.parts else len(self.body)

    def part_bodies(self) -> Iterable[bytes]:
        for n, size in enumerate(self.parts, start=1):
            block = hashlib.sha256(f"{self.key}#{n}".encode()).digest()  # 32 bytes
            yield (block * (size // len(block) + 1))[:size]


def _text(key: str, extra: str = "") -> bytes:
    return f"envclone demo object {key}\n{extra}".encode()


def _demo_objects() -> list[DemoObject]:
    objs: list[DemoObject] = []
    awkward = [
        "with space/monthly report 2024.txt",
        "  leading and trailing spaces  .txt",
        "données/été.txt",
        "日本語/ファイル名.txt",
        "emoji/🎉 party.txt",
        "plus/a+b=c.txt",
        "percent/100%.txt",
        "percent/%20-not-a-space.txt",
        "question/what?.txt",
        "hash/#1 first.txt",
        "punctuation/&$@=;:,'!()*~.txt",
        "brackets/[x]{y}<z>^`|.txt",
        "double//slash.txt",
        "nested/a/b/c/d/e/deep.txt",
        "nested/a/sibling.txt",
        "UPPER/MiXeD.Case.TXT",
    ]
    for key in awkward:
        objs.append(DemoObject(key, _text(key), content_type="text/plain; charset=utf-8"))
    objs.append(DemoObject("folder/"))  # folder marker (empty, trailing slash)
    objs.append(DemoObject("folder/inside.txt", _text("folder/inside.txt")))
    objs.append(DemoObject("empty.bin", b"", content_type="application/octet-stream"))
    for i in range(50):
        key = f"data/{i // 10:02d}/record-{i:03d}.json"
        body = json.dumps({"id": i, "key": key, "payload": "x" * (i * 7)}, sort_keys=True)
        objs.append(DemoObject(key, body.encode(), content_type="application/json"))
    objs.append(
        DemoObject(
            "media/logo.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n',
            content_type="image/svg+xml",
            metadata={"origin": "seed-demo", "owner-team": "web", "revision": "7"},
            cache_control="max-age=3600",
            tags={"classification": "public", "team": "web"},
        )
    )
    objs.append(
        DemoObject(
            "docs/Report Q3.html",
            b"<html><body>Q3</body></html>\n",
            content_type="text/html; charset=utf-8",
            metadata={"author": "reports-bot", "source-system": "erp"},
            content_disposition='attachment; filename="Report Q3.html"',
            tags={"retention": "7y"},
        )
    )
    objs.append(
        DemoObject(
            "exports/orders.csv",
            b"id,amount\n1,10.00\n2,12.50\n",
            content_type="text/csv",
            metadata={"rows": "2"},
            tags={"pii": "false", "dataset": "orders", "with space": "a value/with+chars"},
        )
    )
    objs.append(
        DemoObject(
            "large/multipart.bin",
            content_type="application/octet-stream",
            metadata={"upload": "multipart", "parts": "3"},
            tags={"size": "large"},
            parts=(5 * MIB, 5 * MIB, 1 * MIB),
        )
    )
    return objs


DEMO_OBJECTS: list[DemoObject] = _demo_objects()


def _tagging(tags: dict[str, str]) -> str:
    return urlencode(tags)


def _existing_objects(s3: Any, bucket: str) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out[o["Key"]] = (o["ETag"], o["Size"])
    return out


def fill_bucket(s3: Any, bucket: str, objects: list[DemoObject] = DEMO_OBJECTS) -> dict[str, int]:
    """Put every object that is not already there with the same ETag and size."""
    existing = _existing_objects(s3, bucket)
    written = skipped = 0
    for obj in objects:
        if existing.get(obj.key) == (obj.expected_etag(), obj.size()):
            skipped += 1
            continue
        extra: dict[str, Any] = {}
        if obj.content_type:
            extra["ContentType"] = obj.content_type
        if obj.metadata:
            extra["Metadata"] = obj.metadata
        if obj.cache_control:
            extra["CacheControl"] = obj.cache_control
        if obj.content_disposition:
            extra["ContentDisposition"] = obj.content_disposition
        if obj.tags:
            extra["Tagging"] = _tagging(obj.tags)
        if obj.parts:
            _multipart_put(s3, bucket, obj, extra)
        else:
            s3.put_object(Bucket=bucket, Key=obj.key, Body=obj.body, **extra)
        written += 1
    return {"written": written, "unchanged": skipped, "total": len(objects)}


def _multipart_put(s3: Any, bucket: str, obj: DemoObject, extra: dict[str, Any]) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=obj.key, **extra)
    upload_id = upload["UploadId"]
    try:
        parts = []
        for n, body in enumerate(obj.part_bodies(), start=1):
            r = s3.upload_part(Bucket=bucket, Key=obj.key, UploadId=upload_id, PartNumber=n, Body=body)
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        s3.complete_multipart_upload(
            Bucket=bucket, Key=obj.key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=obj.key, UploadId=upload_id)
        except ClientError:
            pass
        raise


# --------------------------------------------------------------------------------------------
# AWS steps
# --------------------------------------------------------------------------------------------


def _client_error_code(e: ClientError) -> str:
    return e.response.get("Error", {}).get("Code", "")


def ensure_bucket(s3: Any, name: str, region: str) -> bool:
    """Create the bucket unless it exists (and is ours). True when created."""
    try:
        s3.head_bucket(Bucket=name)
        return False
    except ClientError as e:
        if _client_error_code(e) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as e:
        if _client_error_code(e) != "BucketAlreadyOwnedByYou":
            raise
        return False
    return True


def ensure_hosted_zone(r53: Any, zone: str) -> tuple[str, bool]:
    """The id of the public hosted zone named zone, created when missing."""
    zone = zone if zone.endswith(".") else zone + "."
    r = r53.list_hosted_zones_by_name(DNSName=zone)
    for hz in r.get("HostedZones", []):
        if hz["Name"] == zone and not hz.get("Config", {}).get("PrivateZone", False):
            return hz["Id"].split("/")[-1], False
    created = r53.create_hosted_zone(
        Name=zone,
        CallerReference=f"envclone-seed-demo-{zone}",
        HostedZoneConfig={"Comment": "envclone demo entry zone", "PrivateZone": False},
    )
    return created["HostedZone"]["Id"].split("/")[-1], True


def _stack(cf: Any, name: str) -> dict[str, Any] | None:
    try:
        return cf.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as e:
        if "does not exist" in str(e):
            return None
        raise


def ensure_stack(
    cf: Any, name: str, template_body: str, parameters: dict[str, str]
) -> tuple[dict[str, Any], bool]:
    """Create the stack unless it exists; wait for it. Returns (stack, created)."""
    existing = _stack(cf, name)
    created = False
    if existing is None:
        cf.create_stack(
            StackName=name,
            TemplateBody=template_body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            OnFailure="ROLLBACK",
        )
        created = True
    status = (existing or {}).get("StackStatus", "CREATE_IN_PROGRESS")
    if status.endswith("_IN_PROGRESS"):
        waiter = "stack_create_complete" if status.startswith("CREATE") else "stack_update_complete"
        try:
            cf.get_waiter(waiter).wait(StackName=name, WaiterConfig={"Delay": 5, "MaxAttempts": 360})
        except WaiterError as e:
            raise RuntimeError(f"stack {name} did not complete: {_failure_reason(cf, name) or e}")
    stack = _stack(cf, name)
    assert stack is not None
    if stack["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"):
        raise RuntimeError(
            f"stack {name} is {stack['StackStatus']}: {_failure_reason(cf, name) or 'no reason given'}"
            " (delete it and run again)"
        )
    return stack, created


def _failure_reason(cf: Any, name: str) -> str | None:
    try:
        for ev in cf.describe_stack_events(StackName=name)["StackEvents"]:
            if ev.get("ResourceStatus", "").endswith("_FAILED") and ev.get("ResourceStatusReason"):
                return f"{ev['LogicalResourceId']}: {ev['ResourceStatusReason']}"
    except ClientError:
        pass
    return None


def current_record(r53: Any, zone_id: str, name: str) -> str | None:
    """The value of the CNAME record name, if there is one."""
    name = name if name.endswith(".") else name + "."
    r = r53.list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=name, StartRecordType="CNAME", MaxItems="1"
    )
    for rr in r.get("ResourceRecordSets", []):
        if rr["Name"].lower() == name.lower() and rr["Type"] == "CNAME":
            values = [v["Value"] for v in rr.get("ResourceRecords", [])]
            return values[0] if values else (rr.get("AliasTarget") or {}).get("DNSName")
    return None


def upsert_cname(r53: Any, zone_id: str, name: str, target: str) -> None:
    name = name if name.endswith(".") else name + "."
    r53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Comment": "envclone demo entry record",
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": "CNAME",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": target}],
                    },
                }
            ],
        },
    )


# --------------------------------------------------------------------------------------------
# The whole seed
# --------------------------------------------------------------------------------------------


def parameter_bucket_name(env: str, bucket: str, account: str) -> str:
    name = f"{env}-{bucket.lower()}-{account}"
    if not (3 <= len(name) <= 63) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", name):
        raise BadInput(f"bucket name {name!r} derived from environment {env!r} is not a valid S3 bucket name")
    return name


def seed(
    env: str,
    template_path: str,
    health_base: str | None = None,
    extra_parameters: dict[str, str] | None = None,
    health_base_param: str | None = None,
    desired_capacity: str = "2",
    force_dns: bool = False,
    session: boto3.session.Session | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Seed environment env from template_path; returns a summary (also printed via log)."""
    template = load_template(template_path)
    contract = read_contract(template, template_path)
    params_decl = template.get("Parameters") or {}
    extra_parameters = dict(extra_parameters or {})

    # Work out every parameter before touching anything.
    check_parameter_value(template, contract.environment_parameter, env)
    params: dict[str, str] = {contract.environment_parameter: env}
    if "DesiredCapacity" in params_decl:
        params["DesiredCapacity"] = desired_capacity
    if health_base:
        hb = health_base_param or health_base_parameter(template, contract)
        if hb is None:
            raise BadInput(
                "cannot tell which parameter takes --health-base in this template; "
                "give it with --health-base-parameter NAME"
            )
        if hb not in params_decl:
            raise BadInput(f"--health-base-parameter {hb!r} is not a parameter of the template")
        params[hb] = health_base.rstrip("/")
    for k in extra_parameters:
        if k == contract.environment_parameter:
            raise BadInput(f"{k} is the environment parameter: use --env")
    params.update(extra_parameters)

    session = session or boto3.session.Session()
    # botocore reads AWS_DEFAULT_REGION; the Rust SDK (and envclone) read AWS_REGION.
    region = session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
    s3 = session.client("s3", region_name=region, config=Config(s3={"addressing_style": "path"}))
    cf = session.client("cloudformation", region_name=region)
    r53 = session.client("route53", region_name=region)
    account = session.client("sts", region_name=region).get_caller_identity()["Account"]

    bucket_names: dict[str, str] = {}
    stack_owned = contract.stack_buckets()
    for bucket, param in contract.parameter_buckets().items():
        if extra_parameters.get(param) == "":
            # Given empty: the stack creates and owns this bucket (its resource is the
            # contract's logical id, under a condition on the parameter).
            if bucket not in (template.get("Resources") or {}):
                raise BadInput(
                    f"--parameter {param}= (empty) but the template has no resource {bucket} "
                    "to create that bucket"
                )
            stack_owned.append(bucket)
        elif param in extra_parameters:
            bucket_names[bucket] = extra_parameters[param]
        else:
            bucket_names[bucket] = parameter_bucket_name(env, bucket, account)
            params[param] = bucket_names[bucket]
    for k, v in params.items():
        check_parameter_value(template, k, v)

    summary: dict[str, Any] = {"environment": env, "stack": env, "region": region, "buckets": {}}

    # 1. Buckets passed in by parameter.
    for bucket, name in bucket_names.items():
        created = ensure_bucket(s3, name, region)
        log(f"bucket {bucket}: {name} ({'created' if created else 'exists'})")

    # 2. Hosted zone of the entry record.
    zone_id = None
    if contract.entry_dns:
        zone_id, created = ensure_hosted_zone(r53, contract.entry_dns["zone"])
        log(f"hosted zone {contract.entry_dns['zone']}: {zone_id} ({'created' if created else 'exists'})")

    # 3. The stack.
    with open(template_path, encoding="utf-8") as f:
        body = f.read()
    stack, created = ensure_stack(cf, env, body, params)
    log(f"stack {env}: {stack['StackStatus']} ({'created' if created else 'exists, left as it is'})")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    summary["stack_status"] = stack["StackStatus"]
    summary["outputs"] = outputs

    # 4. The entry record.
    if contract.entry_dns and zone_id:
        target = outputs.get(contract.entry_dns["target_output"])
        if not target:
            raise RuntimeError(f"stack {env} has no output {contract.entry_dns['target_output']}")
        name = contract.entry_dns["name"]
        current = current_record(r53, zone_id, name)
        if current is None or force_dns:
            upsert_cname(r53, zone_id, name, target)
            summary["entry_dns"] = {"name": name, "cname": target}
            log(f"entry record {name} CNAME {target} ({'created' if current is None else 'replaced'})")
        else:
            # Never re-point an existing entry (after a migrate it names the live environment).
            summary["entry_dns"] = {"name": name, "cname": current}
            note = "" if current.rstrip(".") == target.rstrip(".") else f" (not {target}; left as it is)"
            log(f"entry record {name} exists: CNAME {current}{note}")

    # 5. Fill every bucket of the contract.
    resources = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for page in cf.get_paginator("list_stack_resources").paginate(StackName=env)
        for r in page["StackResourceSummaries"]
    }
    for bucket in stack_owned:
        if not resources.get(bucket):
            raise RuntimeError(f"stack {env} has no resource {bucket}")
        bucket_names[bucket] = resources[bucket]
    for bucket, name in bucket_names.items():
        counts = fill_bucket(s3, name)
        summary["buckets"][bucket] = {"name": name, **counts}
        log(
            f"bucket {bucket} ({name}): {counts['total']} objects, "
            f"{counts['written']} written, {counts['unchanged']} already there"
        )
    return summary


def _parse_kv(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item or item.startswith("="):
            raise BadInput(f"--parameter {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", required=True, help="environment name (also the stack name)")
    ap.add_argument("--template", required=True, help="template with a Metadata.envclone contract")
    ap.add_argument(
        "--health-base",
        help="base URL for the verify check (the demo passes <stand-in>/envclone-standin/health)",
    )
    ap.add_argument(
        "--health-base-parameter",
        help="parameter that takes --health-base (default: found from the verify output)",
    )
    ap.add_argument("--desired-capacity", default="2", help="DesiredCapacity, when the template has it")
    ap.add_argument(
        "--force-dns",
        action="store_true",
        help="UPSERT the entry record even when it exists (it is otherwise only created)",
    )
    ap.add_argument("--parameter", action="append", default=[], metavar="K=V", help="extra stack parameter")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(argv)
    log = (lambda *_: None) if args.json else print
    try:
        summary = seed(
            args.env,
            args.template,
            health_base=args.health_base,
            extra_parameters=_parse_kv(args.parameter),
            health_base_param=args.health_base_parameter,
            desired_capacity=args.desired_capacity,
            force_dns=args.force_dns,
            log=log,
        )
    except BadInput as e:
        print(f"seed_demo: {e}", file=sys.stderr)
        return 2
    except (ClientError, RuntimeError) as e:
        print(f"seed_demo: failed: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(f"seeded {summary['environment']}: stack {summary['stack_status']}, "
              f"{len(summary['buckets'])} buckets filled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
