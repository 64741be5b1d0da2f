//! The JSON body extractor: size-limited, `application/json` only, and errors that name the
//! field (`` `scopes[1]`: invalid type: integer `3`, expected a string``) with stable codes.

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
        let (field, message) = describe(&path, &without_position(&inner));
        ApiError::InvalidField {
            field: Some(field).filter(|f| !f.is_empty()),
            message,
        }
    })?;
    deserializer.end().map_err(|e| ApiError::BadRequest {
        code: "invalid_json",
        field: None,
        message: format!("the body is not valid JSON: {e}"),
    })?;
    Ok(value)
}

/// serde_json's message without its " at line 1 column 155", which means nothing to a
/// client that sent one line of JSON.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    message
        .strip_suffix(&position)
        .map_or(message.clone(), str::to_owned)
}

/// The field a message is about and a message that names it. serde names a missing or
/// unknown field only in its message ("missing field `tiers`"), and the path then points at
/// the object that lacks it (`pricing`), so the two are joined: `pricing.tiers`.
fn describe(path: &str, message: &str) -> (String, String) {
    let parent = if path == "." { "" } else { path };
    // A missing field's path is its parent object; an unknown field's path already ends
    // with the field.
    let join = |name: &str| {
        if parent.is_empty() {
            name.to_owned()
        } else if parent == name || parent.ends_with(&format!(".{name}")) {
            parent.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    };
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((name, _)) = rest.split_once('`')
    {
        let field = join(name);
        let message = format!("`{field}` is required");
        return (field, message);
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((name, expected)) = rest.split_once('`')
    {
        let field = join(name);
        let expected = expected.trim_start_matches(',').trim();
        let message = if expected.is_empty() {
            format!("`{field}` is not a known field")
        } else {
            format!("`{field}` is not a known field ({expected})")
        };
        return (field, message);
    }
    if parent.is_empty() {
        (String::new(), message.to_owned())
    } else {
        (parent.to_owned(), format!("`{parent}`: {message}"))
    }
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
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        depth: u32,
    }

    #[test]
    fn messages_name_the_field_and_carry_no_parser_position() {
        let missing = message_of(r#"{"email":"a@b","scopes":[],"inner":{}}"#);
        assert_eq!(missing, "`inner.depth` is required");
        let unknown = message_of(r#"{"email":"a@b","scopes":[],"admin":true}"#);
        assert!(
            unknown.starts_with("`admin` is not a known field (expected"),
            "{unknown}"
        );
        let wrong_type = message_of(r#"{"email":"a@b","scopes":["x",3]}"#);
        assert_eq!(
            wrong_type,
            "`scopes[1]`: invalid type: integer `3`, expected a string"
        );
        for message in [missing, unknown, wrong_type] {
            assert!(!message.contains("line 1"), "{message}");
        }
    }

    fn message_of(json: &str) -> String {
        parse::<Body>(json.as_bytes()).unwrap_err().to_string()
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
            field_of(r#"{"email":"a@b","scopes":[],"inner":{}}"#),
            ("invalid_field".into(), Some("inner.depth".into()))
        );
        assert_eq!(
            field_of(r#"{"email":"a@b","scopes":[]} x"#).0,
            "invalid_json"
        );
    }
}
