#!/usr/bin/env python3
"""Prepares a running moto server for byok's AWS tests, then switches authentication on.

    python tools/moto_setup.py http://127.0.0.1:PORT      # prints the setup as JSON

Creates, while moto still accepts unsigned setup calls: an IAM user `byok` allowed
kms:Encrypt/Decrypt/DescribeKey/GenerateDataKey, a user `no-decrypt` allowed everything but
kms:Decrypt, a user `sts-front` for the tests' STS front, access keys for all, roles
`byok-access` (AssumeRole with an external id) and `byok-oidc` (web identity, through the
front), a symmetric KMS key with the alias `alias/byok-root`, and a
second key that is then disabled. Then `POST /moto-api/reset-auth 0`: from here on moto checks
every request's SigV4 signature and IAM policy (kms-wire.md, section 3). moto matches IAM KMS
statements only with `Resource: "*"`, so the policies use it.
"""
import json
import sys
import urllib.request

import boto3


def policy(actions):
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})


def main(url: str) -> None:
    region = "us-east-1"
    kw = dict(endpoint_url=url, region_name=region, aws_access_key_id="setup", aws_secret_access_key="setup")
    iam = boto3.client("iam", **kw)
    kms = boto3.client("kms", **kw)
    users = {}
    for name, actions in {
        "byok": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "sts:AssumeRole"],
        "no-decrypt": ["kms:Encrypt", "kms:DescribeKey"],
        # The tests' STS front (moto cannot take an unsigned AssumeRoleWithWebIdentity with
        # auth on): after checking the token as STS would, it assumes the role as this user.
        "sts-front": ["sts:AssumeRole"],
        # Plays the customer's key administrator: disables and enables keys during tests.
        "kms-admin": ["kms:DisableKey", "kms:EnableKey", "kms:DescribeKey"],
        # Plays the customer's IAM administrator: removes and restores byok's grant.
        "iam-admin": ["iam:PutUserPolicy", "iam:DeleteUserPolicy", "iam:GetUserPolicy"],
    }.items():
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="byok", PolicyDocument=policy(actions))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users[name] = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    # A role in the "customer's" account that trusts user byok only with this external id.
    account_id = boto3.client("sts", **kw).get_caller_identity()["Account"]
    external_id = "byok-0123456789abcdef0123456789abcdef"
    trust = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:user/byok"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
        }],
    }
    role = iam.create_role(RoleName="byok-access", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    iam.put_role_policy(RoleName="byok-access", PolicyName="kms", PolicyDocument=policy(["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"]))
    oidc_trust = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:user/sts-front"},
            "Action": "sts:AssumeRole",
        }],
    }
    oidc_role = iam.create_role(RoleName="byok-oidc", AssumeRolePolicyDocument=json.dumps(oidc_trust))["Role"]
    iam.put_role_policy(RoleName="byok-oidc", PolicyName="kms", PolicyDocument=policy(["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"]))
    key = kms.create_key(Description="byok test root", KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]
    kms.create_alias(AliasName="alias/byok-root", TargetKeyId=key["KeyId"])
    second = kms.create_key(Description="byok second root", KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]
    disabled = kms.create_key(Description="byok disabled")["KeyMetadata"]
    kms.disable_key(KeyId=disabled["KeyId"])  # moto needs the bare id here
    pending = kms.create_key(Description="byok pending deletion")["KeyMetadata"]
    kms.schedule_key_deletion(KeyId=pending["KeyId"], PendingWindowInDays=7)
    # As text/plain: moto reads the raw body, which a form content type would hide from it.
    req = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(req) as r:
        r.read()
    account = key["Arn"].split(":")[4]
    print(json.dumps({
        "region": region,
        "byok_policy": policy(["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "sts:AssumeRole"]),
        "key_arn": key["Arn"],
        "alias_arn": f"arn:aws:kms:{region}:{account}:alias/byok-root",
        "second_key_arn": second["Arn"],
        "disabled_key_arn": disabled["Arn"],
        "pending_key_arn": pending["Arn"],
        "users": users,
        "role_arn": role["Arn"],
        "external_id": external_id,
        "oidc_role_arn": oidc_role["Arn"],
    }))


if __name__ == "__main__":
    main(sys.argv[1])
