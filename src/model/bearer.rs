//! The one parser of `Authorization: Bearer <token>` values, shared by the HTTP extractors and
//! the Argo CD webhook's token check.

/// The credentials of an `Authorization: Bearer <token>` header value. The scheme is matched
/// case-insensitively (RFC 9110 §11.1), so `bearer` and `BEARER` work too.
pub fn bearer_credentials(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
