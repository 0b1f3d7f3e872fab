"""Drives the local Key Vault (tests/src/azure_kv.rs) with Microsoft's own client libraries, so
that its wire format is the real one: azure-keyvault-keys (KeyClient, CryptographyClient) over
HTTPS, authenticated by azure-identity (msal underneath) with a client secret, a certificate and
a client assertion (a federated credential), each through the vault's 401 challenge.

Usage: azure_sdk_check.py PHASE CONFIG_JSON   (REQUESTS_CA_BUNDLE names the test CA)

CONFIG_JSON holds: authority (host:port), tenant, vault (https://host:port), secret_app
{client_id, secret}, cert_app {client_id, pem}, federated_app {client_id, assertion}, rsa_key,
hsm_key (key names). PHASE is one of:
  happy     get both keys, wrap and unwrap with RSA-OAEP-256 and A256KW, under each credential
  refused   the errors the clients raise: a bad secret, a missing key, a tampered wrap
  disabled  the RSA key is disabled: unwrap is refused
  denied    the secret app's role on the RSA key was removed

Prints one JSON object: what each step saw.
"""

import json
import sys

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.identity import (
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
)
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

ROOT = bytes(range(32))


def credentials(cfg):
    common = dict(authority=cfg["authority"], disable_instance_discovery=True)
    s, c, f = cfg["secret_app"], cfg["cert_app"], cfg["federated_app"]
    return {
        "secret": ClientSecretCredential(cfg["tenant"], s["client_id"], s["secret"], **common),
        "certificate": CertificateCredential(
            cfg["tenant"], c["client_id"], certificate_path=c["pem"], **common
        ),
        "federated": ClientAssertionCredential(
            cfg["tenant"], f["client_id"], lambda: f["assertion"], **common
        ),
    }


def keys(cfg, credential):
    # The vault's host is 127.0.0.1, not a *.vault.azure.net name, so the challenge's resource
    # cannot be a suffix of it: the SDK's check is turned off here (byok's is tested elsewhere).
    return KeyClient(cfg["vault"], credential, verify_challenge_resource=False)


def crypto(cfg, credential, name, version=None):
    kid = f"{cfg['vault']}/keys/{name}" + (f"/{version}" if version else "")
    return CryptographyClient(kid, credential, verify_challenge_resource=False)


def text(v):
    """An SDK enum's wire value (`RSA-HSM`), or the string itself."""
    return getattr(v, "value", v)


def error(e):
    out = {"type": type(e).__name__, "status": getattr(e, "status_code", None)}
    err = getattr(e, "error", None)
    if err is not None:
        out["code"] = err.code
        out["message"] = err.message
    else:
        out["message"] = str(e)
    return out


def happy(cfg):
    seen = {}
    for how, cred in credentials(cfg).items():
        client = keys(cfg, cred)
        for name, alg in [
            (cfg["rsa_key"], KeyWrapAlgorithm.rsa_oaep_256),
            (cfg["hsm_key"], KeyWrapAlgorithm.aes_256),
        ]:
            key = client.get_key(name)
            c = crypto(cfg, cred, name, key.properties.version)
            wrapped = c.wrap_key(alg, ROOT)
            back = c.unwrap_key(alg, wrapped.encrypted_key)
            seen[f"{how}/{name}"] = {
                "kty": text(key.key_type),
                "ops": sorted(text(o) for o in key.key_operations),
                "enabled": key.properties.enabled,
                "recovery_level": key.properties.recovery_level,
                "tags": key.properties.tags,
                "kid": key.id,
                "wrap_kid": wrapped.key_id,
                "wrapped_len": len(wrapped.encrypted_key),
                "round_trip": back.key == ROOT,
            }
    return seen


def refused(cfg):
    seen = {}
    bad = dict(cfg["secret_app"], secret="not-the-secret")
    cred = ClientSecretCredential(
        cfg["tenant"], bad["client_id"], bad["secret"], authority=cfg["authority"],
        disable_instance_discovery=True,
    )
    try:
        keys(cfg, cred).get_key(cfg["rsa_key"])
        seen["bad_secret"] = "accepted"
    except ClientAuthenticationError as e:
        seen["bad_secret"] = error(e)
    good = credentials(cfg)["secret"]
    try:
        keys(cfg, good).get_key("no-such-key")
        seen["missing"] = "found"
    except ResourceNotFoundError as e:
        seen["missing"] = error(e)
    c = crypto(cfg, good, cfg["hsm_key"], keys(cfg, good).get_key(cfg["hsm_key"]).properties.version)
    wrapped = bytearray(c.wrap_key(KeyWrapAlgorithm.aes_256, ROOT).encrypted_key)
    wrapped[3] ^= 1
    try:
        c.unwrap_key(KeyWrapAlgorithm.aes_256, bytes(wrapped))
        seen["tampered"] = "unwrapped"
    except HttpResponseError as e:
        seen["tampered"] = error(e)
    return seen


def one_unwrap(cfg):
    """Wrap then unwrap with the RSA key as the secret app; the first refusal."""
    cred = credentials(cfg)["secret"]
    try:
        c = crypto(cfg, cred, cfg["rsa_key"])
        wrapped = c.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, ROOT)
        c.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
        return {"unwrap": "ok"}
    except HttpResponseError as e:
        return {"unwrap": error(e)}


def main():
    phase, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        cfg = json.load(f)
    run = {"happy": happy, "refused": refused, "disabled": one_unwrap, "denied": one_unwrap}
    print(json.dumps(run[phase](cfg)))


if __name__ == "__main__":
    main()
