//! Query parameters of list endpoints, checked with clear errors.

use std::collections::HashMap;
use std::str::FromStr;

use rill_domain::Position;
use rill_store::PageRequest;

use crate::error::ApiError;
use crate::settings::ApiLimits;

/// `0190f4c8-6a3e-7cc0-8a4c-7b1e0f3b2a11`.
const HYPHENATED_UUID_LEN: usize = 36;

/// The raw query parameters of a request.
#[derive(Debug, Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    /// `limit`: the page size; the default when absent.
    pub fn limit(&self, limits: &ApiLimits) -> Result<usize, ApiError> {
        let Some(raw) = self.0.get("limit") else {
            return Ok(limits.default_page_size);
        };
        // Digits only: `usize::from_str` also takes a sign ("+5"), which
        // the document's integer does not.
        let value: usize = Some(raw.as_str())
            .filter(|raw| !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|raw| raw.parse().ok())
            .ok_or_else(|| ApiError::BadQuery {
                name: "limit",
                reason: format!("{raw:?} is not a positive whole number"),
            })?;
        if value == 0 {
            return Err(ApiError::BadQuery {
                name: "limit",
                reason: "must be at least 1".into(),
            });
        }
        if value > limits.max_page_size {
            return Err(ApiError::OverLimit {
                field: "limit",
                value,
                max: limits.max_page_size,
            });
        }
        Ok(value)
    }

    /// The page a list that pages by id asks for: `after` and `limit`, and
    /// no other parameter.
    pub fn page<T>(&self, limits: &ApiLimits) -> Result<PageRequest<T>, ApiError>
    where
        T: FromStr<Err = rill_domain::IdError>,
    {
        self.only(&["after", "limit"])?;
        Ok(PageRequest {
            after: self.id("after")?,
            limit: self.limit(limits)?,
        })
    }

    /// An optional id parameter (`after`, `before`).
    pub fn id<T>(&self, name: &'static str) -> Result<Option<T>, ApiError>
    where
        T: FromStr<Err = rill_domain::IdError>,
    {
        self.0
            .get(name)
            .map(|raw| {
                let id = raw.parse().map_err(ApiError::from)?;
                // The hyphenated form only, as the document's `format: uuid`
                // says: a UUID parses from its simple, braced and URN forms
                // too, which are of other lengths.
                if raw.len() != HYPHENATED_UUID_LEN {
                    return Err(ApiError::BadQuery {
                        name,
                        reason: format!("{raw:?} is not a UUID as 8-4-4-4-12 hex digits"),
                    });
                }
                Ok(id)
            })
            .transpose()
    }

    /// An optional position parameter (`before`, `after` of history):
    /// `{offset}-{check}`, as in `1234-9f3a2c1d`.
    pub fn position(&self, name: &'static str) -> Result<Option<Position>, ApiError> {
        self.0
            .get(name)
            .map(|raw| {
                raw.parse().map_err(|e| ApiError::BadQuery {
                    name,
                    reason: format!("{raw:?}: {e}"),
                })
            })
            .transpose()
    }

    /// Refuses parameters the endpoint does not know, so a typo is not
    /// silently ignored.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(ApiError::BadQuery {
                name: "query",
                reason: format!("unknown parameter {unknown:?}; known: {}", known.join(", ")),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Query {
        Query(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn limit_defaults_and_bounds() {
        let limits = ApiLimits::default();
        assert_eq!(query(&[]).limit(&limits).ok(), Some(50));
        assert_eq!(query(&[("limit", "7")]).limit(&limits).ok(), Some(7));
        for bad in ["0", "-1", "+5", " 5", "", "x", "1000"] {
            assert!(query(&[("limit", bad)]).limit(&limits).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_and_unknown_parameters() {
        let q = query(&[("after", "nope")]);
        assert!(matches!(
            q.id::<rill_domain::UserId>("after"),
            Err(ApiError::BadId(_))
        ));
        let simple = query(&[("after", "0190f4c86a3e7cc08a4c7b1e0f3b2a11")]);
        assert!(matches!(
            simple.id::<rill_domain::UserId>("after"),
            Err(ApiError::BadQuery { name: "after", .. })
        ));
        let hyphenated = query(&[("after", "0190f4c8-6a3e-7cc0-8a4c-7b1e0f3b2a11")]);
        assert!(hyphenated.id::<rill_domain::UserId>("after").is_ok());
        assert!(query(&[("limt", "5")]).only(&["limit"]).is_err());
        assert!(query(&[("limit", "5")]).only(&["limit"]).is_ok());
    }

    #[test]
    fn positions_parse_or_are_bad_queries() {
        let q = query(&[("before", "1234-9f3a2c1d"), ("after", "1234")]);
        let before = q.position("before").ok().flatten();
        assert_eq!(
            before.map(|p| (p.offset, p.check)),
            Some((1234, 0x9f3a_2c1d))
        );
        assert!(matches!(
            q.position("after"),
            Err(ApiError::BadQuery { name: "after", .. })
        ));
        assert!(matches!(q.position("limit"), Ok(None)));
    }
}
