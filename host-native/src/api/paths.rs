//! The ids in request paths, described once for the OpenAPI document.
//!
//! Handlers still take `Path<String>` or `Path<(String, String)>` and parse the ids themselves
//! (`parse_id`), so a malformed id is refused with byok's own `invalid_request` body; these
//! types only say, in one place, what the `{org}` and `{scope}` segments are.

use utoipa::IntoParams;

/// `{org}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by the OpenAPI derive only
pub struct OrgPath {
    /// org id (32 hex digits)
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    org: String,
}

/// `{org}` and `{scope}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by the OpenAPI derive only
pub struct ScopePath {
    /// org id (32 hex digits)
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    org: String,
    /// scope id (32 hex digits)
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    scope: String,
}
