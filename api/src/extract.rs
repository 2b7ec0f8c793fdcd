//! Extractors whose rejections are [`ApiError`]s (so every failure has the
//! JSON envelope), and the conversion of a JSON filter object (presets,
//! exports) into the same query pairs a chart URL carries.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Path parameters; a path that does not decode is a 404.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathParams(t))
            .map_err(|_| ApiError::NotFound("route"))
    }
}

/// A JSON body of any content type: too large → 413, not the expected JSON → 400.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!("could not read the request body: {r}"))
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("the body is not the JSON this route takes: {e}")))
    }
}

/// The parameters a chart takes (api.md), the only keys a filter object may hold.
pub const FILTER_KEYS: &[&str] = &[
    "date_range",
    "start_date",
    "end_date",
    "granularity",
    "experiments",
    "channels",
    "timezone",
    "limit",
    "order_by",
    "order_dir",
    "page",
    "page_size",
];

/// Turns `{"date_range": "30", "experiments": [1, 2], ...}` into query pairs.
/// Strings and numbers are values, lists repeat the key, `null` is absent.
pub fn filter_pairs(filters: &Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for (key, value) in filters {
        if !FILTER_KEYS.contains(&key.as_str()) {
            return Err(ApiError::invalid(
                key,
                format!("unknown filter {key:?}; filters are {}", FILTER_KEYS.join(", ")),
            ));
        }
        let scalar = |v: &Value| match v {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Null => Ok(None),
            _ => Err(ApiError::invalid(
                key,
                format!("{key} must be a string, a number or a list of them"),
            )),
        };
        match value {
            Value::Array(items) => {
                for item in items {
                    if let Some(v) = scalar(item)? {
                        pairs.push((key.clone(), v));
                    }
                }
            }
            v => {
                if let Some(v) = scalar(v)? {
                    pairs.push((key.clone(), v));
                }
            }
        }
    }
    Ok(pairs)
}

/// The pairs of a raw query string (`None` = no query).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query.map_or_else(Vec::new, |q| {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filter_objects_become_query_pairs() {
        let f = json!({"date_range": "custom", "start_date": "2026-01-01", "experiments": [1, "2"], "channels": [], "limit": 5, "timezone": null});
        let pairs = filter_pairs(f.as_object().unwrap()).unwrap();
        let expect: Vec<(String, String)> = [
            ("date_range", "custom"),
            ("experiments", "1"),
            ("experiments", "2"),
            ("limit", "5"),
            ("start_date", "2026-01-01"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut got = pairs;
        got.sort();
        assert_eq!(got, expect);
    }

    #[test]
    fn unknown_keys_and_nested_values_are_refused_by_name() {
        for (f, param) in [
            (json!({"colour": "red"}), "colour"),
            (json!({"channels": [["web"]]}), "channels"),
            (json!({"page": true}), "page"),
        ] {
            match filter_pairs(f.as_object().unwrap()) {
                Err(ApiError::InvalidParameter { parameter, .. }) => assert_eq!(parameter, param),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn query_strings_decode() {
        assert_eq!(
            query_pairs(Some("timezone=Europe%2FBerlin&experiments=1,2")),
            vec![
                ("timezone".into(), "Europe/Berlin".into()),
                ("experiments".into(), "1,2".into())
            ]
        );
        assert!(query_pairs(None).is_empty());
    }
}
