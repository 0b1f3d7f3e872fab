//! The vault's 401 challenge parser, fed what a hostile vault or network could send: never
//! panics, and what it accepts names a tenant that is safe in a URL path, the key's own token
//! scope, and an authority on the key's cloud's login host, or in the public cloud Entra's
//! older alias `login.windows.net` (byok never calls the authority; this checks that the
//! parser could not be talked into another cloud).
#![no_main]
use byok_core::kms::azure::{Cloud, KeyUrl};
use byok_core::kms::azure::challenge::{login_host, parse_challenge, tenant_ok};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = core::str::from_utf8(data) else {
        return;
    };
    for key in [
        "https://acme.vault.azure.net/keys/k",
        "https://acme.managedhsm.usgovcloudapi.net/keys/k",
    ] {
        let key = KeyUrl::parse(key).unwrap();
        let Ok(c) = parse_challenge(&key, header) else {
            continue;
        };
        assert!(tenant_ok(&c.tenant), "{header:?}");
        assert!(!c.tenant.contains('/') && !c.tenant.contains('?'), "{header:?}");
        assert_eq!(c.scope, key.token_scope());
        // The cloud's own login host, or (public cloud only) Entra's older alias.
        let own = header.contains(&format!("https://{}/{}", login_host(key.cloud()), c.tenant));
        let alias = key.cloud() == Cloud::Public
            && header.contains(&format!("https://login.windows.net/{}", c.tenant));
        assert!(own || alias, "{header:?}");
    }
});
