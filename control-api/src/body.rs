//! The JSON body extractor: size-limited, `application/json` only, and errors that name the
//! field (`scopes[1]: invalid type: integer, expected a string`) with stable codes.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        // The size limit is the `web::PayloadConfig` the application registers.
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let bytes = bytes.await.map_err(|e| {
                if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest {
                        code: "unreadable_body",
                        field: None,
                        message: "the request body could not be read".to_owned(),
                    }
                }
            })?;
            parse(&bytes).map(JsonBody)
        })
    }
}

/// Deserializes `bytes`, naming the failing field in the error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest {
                code: "invalid_json",
                field: None,
                message: format!("the body is not valid JSON: {inner}"),
            };
        }
        let message = inner.to_string();
        let field = if path == "." {
            named_in_message(&message)
        } else {
            Some(path)
        };
        ApiError::InvalidField { field, message }
    })?;
    deserializer.end().map_err(|e| ApiError::BadRequest {
        code: "invalid_json",
        field: None,
        message: format!("the body is not valid JSON: {e}"),
    })?;
    Ok(value)
}

/// serde names a missing or unknown field only in its message: "missing field `email`".
fn named_in_message(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        scopes: Vec<String>,
    }

    fn field_of(json: &str) -> (String, Option<String>) {
        let error = parse::<Body>(json.as_bytes()).unwrap_err();
        let field = match &error {
            ApiError::InvalidField { field, .. } | ApiError::BadRequest { field, .. } => {
                field.clone()
            }
            _ => None,
        };
        (error.code().to_owned(), field)
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field_of(r#"{"scopes":[]}"#),
            ("invalid_field".into(), Some("email".into()))
        );
        assert_eq!(
            field_of(r#"{"email":"a@b","scopes":["x",3]}"#),
            ("invalid_field".into(), Some("scopes[1]".into()))
        );
        assert_eq!(
            field_of(r#"{"email":"a@b","scopes":[],"admin":true}"#),
            ("invalid_field".into(), Some("admin".into()))
        );
        assert_eq!(field_of(r#"{"email": "#), ("invalid_json".into(), None));
        assert_eq!(
            field_of(r#"{"email":"a@b","scopes":[]} x"#).0,
            "invalid_json"
        );
    }
}
