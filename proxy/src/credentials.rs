//! Where a request's credential is: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

use pingora_http::RequestHeader;

/// A credential found in the request, borrowed from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// An API key (`tg_…`).
    ApiKey(&'a str),
}

/// Why no usable credential was found (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Neither header is present.
    #[error("send an API key in the Authorization header (Bearer) or in X-API-Key")]
    Missing,
    /// A header is present but unusable.
    #[error("the Authorization header must be \"Bearer <API key>\"")]
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

/// Finds the credential without allocating.
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
}
