"""Drives the local Cloud KMS (tests/src/gcp_kms.rs) with Google's own client libraries, so that
its wire format is the real one: google-cloud-kms over its REST transport, authenticated by
google-auth, first as a service account (the OAuth JWT bearer grant), then through workload
identity federation (STS token exchange and service-account impersonation). A service account
is used twice: with a self-signed JWT as its token (the libraries' default) and through the
OAuth token endpoint (what byok does).

Usage: gcp_sdk_check.py PHASE CONFIG_JSON

CONFIG_JSON holds: url, key, service_account (a key file's fields), pool (the provider's
audience), subject_token_file, impersonate (an email). PHASE is one of:
  happy     get, encrypt and decrypt with CRC32C both ways, as a service account and federated
  refused   the errors the client raises: wrong AAD, bad checksum, missing key
  disabled  the primary version is disabled
  denied    the service account's binding was removed

Prints one JSON object: what each step saw.
"""

import base64
import json
import sys

import google_crc32c
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth import identity_pool
from google.cloud import kms
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceRestTransport,
)
from google.oauth2 import service_account

SCOPES = ["https://www.googleapis.com/auth/cloudkms"]


def crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def client(url, credentials):
    return kms.KeyManagementServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=url),
        credentials=credentials,
    )


def client_with_grant(url, credentials):
    """A client whose service account asks the token endpoint for an access token (the OAuth
    JWT bearer grant, as byok does) instead of sending a self-signed JWT (the default)."""
    scheme, host = url.split("://")
    transport = KeyManagementServiceRestTransport(
        host=host, url_scheme=scheme, credentials=credentials, always_use_jwt_access=False
    )
    return kms.KeyManagementServiceClient(transport=transport)


def as_service_account(cfg):
    info = dict(cfg["service_account"])
    return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)


def federated(cfg):
    url = cfg["url"]
    return identity_pool.Credentials(
        audience=cfg["pool"],
        subject_token_type="urn:ietf:params:oauth:token-type:jwt",
        token_url=f"{url}/v1/token",
        credential_source={"file": cfg["subject_token_file"]},
        service_account_impersonation_url=(
            f"{url}/v1/projects/-/serviceAccounts/{cfg['impersonate']}:generateAccessToken"
        ),
        scopes=SCOPES,
    )


def error(e):
    return {
        "class": type(e).__name__,
        "code": int(e.code) if e.code is not None else None,
        "message": e.message,
        "reason": getattr(e, "reason", None),
    }


def round_trip(c, key, plaintext, aad):
    key_info = c.get_crypto_key(name=key)
    enc = c.encrypt(
        request={
            "name": key,
            "plaintext": plaintext,
            "additional_authenticated_data": aad,
            "plaintext_crc32c": crc(plaintext),
            "additional_authenticated_data_crc32c": crc(aad),
        }
    )
    dec = c.decrypt(
        request={
            "name": key,
            "ciphertext": enc.ciphertext,
            "additional_authenticated_data": aad,
            "ciphertext_crc32c": crc(enc.ciphertext),
            "additional_authenticated_data_crc32c": crc(aad),
        }
    )
    return {
        "purpose": kms.CryptoKey.CryptoKeyPurpose(key_info.purpose).name,
        "primary_state": kms.CryptoKeyVersion.CryptoKeyVersionState(
            key_info.primary.state
        ).name,
        "labels": dict(key_info.labels),
        "version": enc.name,
        "verified_plaintext_crc32c": enc.verified_plaintext_crc32c,
        "verified_aad_crc32c": enc.verified_additional_authenticated_data_crc32c,
        "ciphertext_crc32c_ok": enc.ciphertext_crc32c == crc(enc.ciphertext),
        "plaintext_ok": dec.plaintext == plaintext,
        "plaintext_crc32c_ok": dec.plaintext_crc32c == crc(dec.plaintext),
        "used_primary": dec.used_primary,
        "ciphertext": base64.b64encode(enc.ciphertext).decode(),
    }


def main():
    phase, cfg = sys.argv[1], json.load(open(sys.argv[2]))
    url, key = cfg["url"], cfg["key"]
    out = {}
    sa = client(url, as_service_account(cfg))
    plaintext, aad = b"\x07" * 32, b"byok:org=00aa;byok:scope=00aa;byok:version=1"
    if phase == "happy":
        out["self_signed"] = round_trip(sa, key, plaintext, aad)
        out["service_account"] = round_trip(
            client_with_grant(url, as_service_account(cfg)), key, plaintext, aad
        )
        out["federated"] = round_trip(client(url, federated(cfg)), key, plaintext, aad)
    elif phase == "refused":
        enc = sa.encrypt(request={"name": key, "plaintext": plaintext, "additional_authenticated_data": aad})
        try:
            sa.decrypt(request={"name": key, "ciphertext": enc.ciphertext, "additional_authenticated_data": b"other"})
        except exceptions.GoogleAPICallError as e:
            out["wrong_aad"] = error(e)
        try:
            sa.encrypt(request={"name": key, "plaintext": plaintext, "plaintext_crc32c": crc(plaintext) ^ 1})
        except exceptions.GoogleAPICallError as e:
            out["bad_crc"] = error(e)
        try:
            sa.get_crypto_key(name=key + "-missing")
        except exceptions.GoogleAPICallError as e:
            out["missing"] = error(e)
    elif phase == "disabled":
        try:
            sa.encrypt(request={"name": key, "plaintext": plaintext})
        except exceptions.GoogleAPICallError as e:
            out["encrypt"] = error(e)
    elif phase == "denied":
        try:
            sa.encrypt(request={"name": key, "plaintext": plaintext})
        except exceptions.GoogleAPICallError as e:
            out["encrypt"] = error(e)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
