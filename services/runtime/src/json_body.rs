//! Reading a JSON request body: the content type is checked (a cross-site
//! form cannot send `application/json` without a CORS preflight), and a
//! malformed body is an error that says what is wrong.

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonBodyError {
    #[error("expected Content-Type: application/json")]
    NotJson,
    #[error("bad JSON: {0}")]
    BadJson(String),
}

/// Parses `body` as `T` if `content_type` is `application/json`.
pub fn parse<T: DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, JsonBodyError> {
    let is_json = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(JsonBodyError::NotJson);
    }
    serde_json::from_slice(body).map_err(|err| JsonBodyError::BadJson(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        name: String,
    }

    #[test]
    fn parses_json_with_a_charset() {
        let body = parse::<Body>(Some("application/json; charset=utf-8"), br#"{"name":"a"}"#);
        assert_eq!(body, Ok(Body { name: "a".into() }));
    }

    #[test]
    fn other_content_types_and_bad_json_are_errors() {
        assert_eq!(
            parse::<Body>(Some("text/plain"), b"{}"),
            Err(JsonBodyError::NotJson)
        );
        assert_eq!(parse::<Body>(None, b"{}"), Err(JsonBodyError::NotJson));
        assert!(matches!(
            parse::<Body>(Some("application/json"), b"{"),
            Err(JsonBodyError::BadJson(_))
        ));
    }
}
