#!/usr/bin/env python3
"""Deploy a public template of the corpus (tests/fixtures/real/) as an operator would: into a
network that exists before it, with a key pair, then fill the buckets that hold its data.

Run with the project's virtualenv; the AWS side comes from the standard environment
(AWS_ENDPOINT_URL, AWS_REGION, credentials), e.g. the local stand-in:

    .venv/bin/python scripts/seed_corpus.py --stack prod \\
        --template tests/fixtures/real/wordpress-multi-az.yaml \\
        --vpc-parameter VpcId --subnets-parameter Subnets --key-parameter KeyName \\
        --parameter DBUser=wpadmin --parameter DBPassword=wordpress2020

What it does, in order (each step reuses what already exists):

1. with --vpc-parameter/--subnets-parameter: a VPC (10.20.0.0/16, tagged
   ``envclone-corpus``) with one subnet in each of four Availability Zones, passed to the
   template as the VPC id and the comma-separated subnet ids (what the console passes for a
   ``List<AWS::EC2::Subnet::Id>``); with --subnet-parameter (repeated), one subnet each, in
   order (for templates taking ``AWS::EC2::Subnet::Id`` parameters one by one); with
   --security-group-parameter (repeated), a security group of that VPC each, named
   ``envclone-corpus-<parameter>``;
2. with --key-parameter: the key pair ``envclone-corpus``;
3. with --secret NAME=VALUE: a Secrets Manager secret the template resolves by name
   (``{{resolve:secretsmanager:NAME}}``);
4. with --template-bucket BUCKET --template-object KEY=FILE: objects a template reads from S3
   (nested stacks' TemplateURL, Lambda code), put before the stack is created;
5. the stack, with --parameter K=V, waited for until CREATE_COMPLETE (it fails with the
   resource's reason otherwise); a template over CreateStack's 51,200-byte TemplateBody quota
   is put in --template-bucket under ``templates/`` and created from its TemplateURL;
6. with --fill LOGICAL_ID: the stack's bucket of that logical id filled with seed_demo's set of
   awkward objects (keys, empty object, folder marker, metadata, tags, a multipart object).

Prints a JSON summary: parameters passed, outputs, resources (logical id -> physical id).
Exit status: 0 done, 1 an AWS call or the stack failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seed_demo import BadInput, _failure_reason, _parse_kv, _stack, ensure_bucket, fill_bucket  # noqa: E402

TAG = "envclone-corpus"


def ensure_network(ec2: Any, region: str) -> tuple[str, list[str]]:
    """The corpus VPC and its four subnets, created when missing."""
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [TAG]}])["Vpcs"]
    if vpcs:
        vpc = vpcs[0]["VpcId"]
    else:
        vpc = ec2.create_vpc(
            CidrBlock="10.20.0.0/16",
            TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": TAG}]}],
        )["Vpc"]["VpcId"]
    subnets = sorted(
        ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"],
        key=lambda s: s["CidrBlock"],
    )
    if not subnets:
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{region}{az}")["Subnet"]
            for i, az in enumerate("abcd")
        ]
    return vpc, [s["SubnetId"] for s in subnets]


def ensure_security_group(ec2: Any, vpc: str, name: str) -> str:
    """The corpus VPC's security group ``name``, created when missing."""
    found = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": [name]}]
    )["SecurityGroups"]
    if found:
        return found[0]["GroupId"]
    return ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]


def ensure_key_pair(ec2: Any) -> str:
    try:
        ec2.describe_key_pairs(KeyNames=[TAG])
    except ClientError:
        ec2.create_key_pair(KeyName=TAG)
    return TAG


# CreateStack's TemplateBody quota ("CloudFormation quotas": 51,200 bytes); a larger template
# is read from S3 through TemplateURL.
TEMPLATE_BODY_MAX = 51_200


def create_and_wait(cf: Any, name: str, template: dict[str, str], parameters: dict[str, str]) -> dict[str, Any]:
    """Creates stack ``name`` from ``template`` (``{"TemplateBody": ...}`` or
    ``{"TemplateURL": ...}``) and waits for it."""
    if _stack(cf, name) is None:
        cf.create_stack(
            StackName=name,
            **template,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    deadline = time.monotonic() + 300
    while True:
        stack = _stack(cf, name)
        assert stack is not None
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"stack {name} still {stack['StackStatus']} after 300 s")
        time.sleep(0.3)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(
            f"stack {name} is {stack['StackStatus']}: {_failure_reason(cf, name) or 'no reason given'}"
        )
    return stack


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--parameter", action="append", default=[], metavar="K=V")
    ap.add_argument("--vpc-parameter", help="parameter that takes the VPC id")
    ap.add_argument("--subnets-parameter", help="parameter that takes the subnet ids, comma-separated")
    ap.add_argument("--subnet-parameter", action="append", default=[], help="takes one subnet id")
    ap.add_argument(
        "--security-group-parameter", action="append", default=[], help="takes one security group id"
    )
    ap.add_argument("--key-parameter", help="parameter that takes the key pair's name")
    ap.add_argument("--secret", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--template-bucket", help="bucket for --template-object")
    ap.add_argument("--template-object", action="append", default=[], metavar="KEY=FILE")
    ap.add_argument("--fill", action="append", default=[], metavar="LOGICAL_ID")
    args = ap.parse_args(argv)
    try:
        params = _parse_kv(args.parameter)
        secrets = _parse_kv(args.secret)
        objects = _parse_kv(args.template_object)
    except BadInput as e:
        print(f"seed_corpus: {e}", file=sys.stderr)
        return 2
    if objects and not args.template_bucket:
        print("seed_corpus: --template-object needs --template-bucket", file=sys.stderr)
        return 2

    session = boto3.session.Session()
    region = session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
    client = lambda service, **kw: session.client(service, region_name=region, **kw)  # noqa: E731
    ec2, cf = client("ec2"), client("cloudformation")
    s3 = client("s3", config=Config(s3={"addressing_style": "path"}))
    try:
        one_by_one = args.subnet_parameter + args.security_group_parameter
        if args.vpc_parameter or args.subnets_parameter or one_by_one:
            vpc, subnets = ensure_network(ec2, region)
            if args.vpc_parameter:
                params.setdefault(args.vpc_parameter, vpc)
            if args.subnets_parameter:
                params.setdefault(args.subnets_parameter, ",".join(subnets))
            if len(args.subnet_parameter) > len(subnets):
                raise RuntimeError(f"{len(args.subnet_parameter)} subnet parameters, {len(subnets)} subnets")
            for name, subnet in zip(args.subnet_parameter, subnets):
                params.setdefault(name, subnet)
            for name in args.security_group_parameter:
                params.setdefault(name, ensure_security_group(ec2, vpc, f"{TAG}-{name}"))
        if args.key_parameter:
            params.setdefault(args.key_parameter, ensure_key_pair(ec2))
        sm = client("secretsmanager") if secrets else None
        for name, value in secrets.items():
            try:
                sm.create_secret(Name=name, SecretString=value)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ResourceExistsException":
                    raise
        if args.template_bucket:
            ensure_bucket(s3, args.template_bucket, region)
            for key, path in objects.items():
                with open(path, "rb") as f:
                    s3.put_object(Bucket=args.template_bucket, Key=key, Body=f.read())
        with open(args.template, encoding="utf-8") as f:
            body = f.read()
        template = {"TemplateBody": body}
        if len(body.encode("utf-8")) > TEMPLATE_BODY_MAX:
            if not args.template_bucket:
                raise RuntimeError(
                    f"{args.template} is over {TEMPLATE_BODY_MAX} bytes: give --template-bucket to read it from S3"
                )
            key = f"templates/{os.path.basename(args.template)}"
            s3.put_object(Bucket=args.template_bucket, Key=key, Body=body.encode("utf-8"))
            template = {"TemplateURL": f"https://{args.template_bucket}.s3.{region}.amazonaws.com/{key}"}
        stack = create_and_wait(cf, args.stack, template, params)
        resources = {
            r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
            for page in cf.get_paginator("list_stack_resources").paginate(StackName=args.stack)
            for r in page["StackResourceSummaries"]
        }
        filled = {}
        for logical in args.fill:
            if not resources.get(logical):
                raise RuntimeError(f"stack {args.stack} has no resource {logical} to fill")
            filled[logical] = fill_bucket(s3, resources[logical])
    except (ClientError, RuntimeError) as e:
        print(f"seed_corpus: failed: {e}", file=sys.stderr)
        return 1
    summary = {
        "stack": args.stack,
        "region": region,
        "parameters": params,
        "outputs": {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])},
        "resources": resources,
        "filled": filled,
    }
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
