//! Where a request's credential is: `Authorization: Bearer <key or JWT>` or `X-API-Key: <key>`.

use pingora_http::RequestHeader;

use crate::jwt::looks_like_jwt;

/// A credential found in the request, with bearer JWTs told apart from API keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// An API key (`tg_…`), or anything that is not a JWT (it then fails as an API key).
    ApiKey(&'a str),
    /// A bearer value shaped like a JWT ([`looks_like_jwt`]): three base64url segments.
    Jwt(&'a str),
}

/// Why no usable credential was found (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Neither header is present.
    #[error(
        "send an API key or JWT in the Authorization header (Bearer), or an API key in X-API-Key"
    )]
    Missing,
    /// A header is present but unusable.
    #[error("the Authorization header must be \"Bearer <API key or JWT>\"")]
    Malformed,
    /// Both headers carry a credential: ambiguous, so refused.
    #[error("send the credential in only one of Authorization and X-API-Key")]
    Ambiguous,
}

impl CredentialError {
    /// Stable machine-readable code.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Missing => "missing_credential",
            Self::Malformed | Self::Ambiguous => "malformed_credential",
        }
    }
}

/// Finds the credential without allocating and tells a bearer JWT from an API key. `X-API-Key`
/// always carries an API key.
pub fn extract_credential(request: &RequestHeader) -> Result<Credential<'_>, CredentialError> {
    let bearer = request
        .headers
        .get("authorization")
        .map(|value| {
            let value = value.to_str().map_err(|_| CredentialError::Malformed)?;
            let (scheme, token) = value.split_once(' ').ok_or(CredentialError::Malformed)?;
            let token = token.trim();
            if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
                return Err(CredentialError::Malformed);
            }
            Ok(token)
        })
        .transpose()?;
    let header = request
        .headers
        .get("x-api-key")
        .map(|value| {
            value
                .to_str()
                .map(str::trim)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or(CredentialError::Malformed)
        })
        .transpose()?;
    match (bearer, header) {
        (Some(_), Some(_)) => Err(CredentialError::Ambiguous),
        (Some(token), None) if looks_like_jwt(token) => Ok(Credential::Jwt(token)),
        (Some(key), None) | (None, Some(key)) => Ok(Credential::ApiKey(key)),
        (None, None) => Err(CredentialError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &[u8])]) -> RequestHeader {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in headers {
            request.append_header(name.to_string(), *value).unwrap();
        }
        request
    }

    #[test]
    fn bearer_and_x_api_key_are_both_accepted() {
        assert_eq!(
            extract_credential(&request(&[("authorization", b"Bearer tg_abc")])),
            Ok(Credential::ApiKey("tg_abc"))
        );
        assert_eq!(
            extract_credential(&request(&[("authorization", b"bearer  tg_abc ")])),
            Ok(Credential::ApiKey("tg_abc"))
        );
        assert_eq!(
            extract_credential(&request(&[("x-api-key", b"tg_abc")])),
            Ok(Credential::ApiKey("tg_abc"))
        );
    }

    #[test]
    fn unusable_headers_are_refused_with_a_reason() {
        assert_eq!(
            extract_credential(&request(&[])),
            Err(CredentialError::Missing)
        );
        for bad in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Bearer",
            b"Bearer ",
            b"tg_abc",
            b"Bearer \xff\xfe",
        ] {
            assert_eq!(
                extract_credential(&request(&[("authorization", bad)])),
                Err(CredentialError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            extract_credential(&request(&[
                ("authorization", b"Bearer a"),
                ("x-api-key", b"b")
            ])),
            Err(CredentialError::Ambiguous)
        );
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkcCJ9.c2lnbmF0dXJl";

    #[test]
    fn a_bearer_jwt_is_told_apart_from_an_api_key() {
        let bearer = format!("Bearer {JWT}");
        let with_jwt = request(&[("authorization", bearer.as_bytes())]);
        assert_eq!(extract_credential(&with_jwt), Ok(Credential::Jwt(JWT)));
        assert_eq!(
            extract_credential(&request(&[("authorization", b"Bearer tg_live_a.b.c")])),
            Ok(Credential::ApiKey("tg_live_a.b.c"))
        );
        assert_eq!(
            extract_credential(&request(&[("authorization", b"bearer tg_abc")])),
            Ok(Credential::ApiKey("tg_abc"))
        );
    }

    #[test]
    fn an_unsigned_jwt_is_still_a_jwt_so_it_is_refused_as_one() {
        let unsigned = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.";
        let bearer = format!("Bearer {unsigned}");
        assert_eq!(
            extract_credential(&request(&[("authorization", bearer.as_bytes())])),
            Ok(Credential::Jwt(unsigned))
        );
    }

    #[test]
    fn values_not_shaped_like_a_jwt_stay_api_keys() {
        for value in [
            "a.b", "a.b.c.d", ".b.c", "a..c", "a.b+.c", "a.b.c=", "a b.c.d",
        ] {
            let bearer = format!("Bearer {value}");
            assert_eq!(
                extract_credential(&request(&[("authorization", bearer.as_bytes())])),
                Ok(Credential::ApiKey(value)),
                "{value}"
            );
        }
    }

    #[test]
    fn x_api_key_never_carries_a_jwt_and_both_headers_are_ambiguous() {
        assert_eq!(
            extract_credential(&request(&[("x-api-key", JWT.as_bytes())])),
            Ok(Credential::ApiKey(JWT))
        );
        let bearer = format!("Bearer {JWT}");
        let both = request(&[
            ("authorization", bearer.as_bytes()),
            ("x-api-key", b"tg_abc"),
        ]);
        assert_eq!(extract_credential(&both), Err(CredentialError::Ambiguous));
        assert_eq!(CredentialError::Ambiguous.code(), "malformed_credential");
        assert_eq!(
            extract_credential(&request(&[])),
            Err(CredentialError::Missing)
        );
        assert_eq!(CredentialError::Missing.code(), "missing_credential");
        assert_eq!(
            extract_credential(&request(&[("authorization", b"Basic a.b.c")])),
            Err(CredentialError::Malformed)
        );
    }
}
