//! Field values as the domain sees them, independent of JSON and SQL.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

/// One field's value. `Json` holds canonical JSON text: the domain stores and
/// moves JSON documents but never interprets them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Json(String),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// A record as stored: system fields plus user fields in schema order.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
    pub fields: Vec<(String, Value)>,
}

impl Record {
    /// A new record of collection `c`: fresh id, timestamps now, version 1,
    /// and a value for every field (`input`'s, else null), in schema order.
    pub fn new_in(c: &crate::schema::Collection, input: &[(String, Value)]) -> Record {
        let now = now_timestamp();
        Record {
            id: new_id(),
            created_at: now.clone(),
            updated_at: now,
            version: 1,
            fields: c
                .fields
                .iter()
                .map(|f| {
                    let v = input
                        .iter()
                        .find(|(n, _)| *n == f.name)
                        .map_or(Value::Null, |(_, v)| v.clone());
                    (f.name.clone(), v)
                })
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Strong entity tag for this representation (RFC 9110 §8.8.3): the id and
    /// version identify the stored state exactly.
    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.id, self.version)
    }
}

/// A new time-ordered record id (UUIDv7, lowercase hyphenated).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether `s` looks like an id Plinth issued (any UUID, hyphenated).
pub fn is_valid_id(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

const TS_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]");

fn format_ts(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    // Formatting a valid UTC datetime with a fixed description cannot fail for
    // years 0..=9999, which is all RFC 3339 can express.
    t.format(TS_FORMAT)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The current time in Plinth's canonical timestamp form
/// (`2026-01-02T03:04:05.123456Z`: UTC, microseconds, so text order is time order).
pub fn now_timestamp() -> String {
    format_ts(OffsetDateTime::now_utc())
}

/// A Unix time (seconds) in the canonical timestamp form.
pub fn timestamp_of_unix(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).map_or_else(|_| String::new(), format_ts)
}

/// An RFC 3339 date-time (any offset) as Unix seconds.
pub fn datetime_unix(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    let d = OffsetDateTime::now_utc().date();
    d.format(DATE_FORMAT).unwrap_or_default()
}

/// Parses an RFC 3339 date-time (any offset) into canonical UTC form.
pub fn normalize_datetime(s: &str) -> Option<String> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    // `to_offset` panics when the UTC instant leaves the supported range
    // (e.g. 9999-12-31T23:59:59-01:00); the checked form refuses it.
    let utc = t.checked_to_offset(UtcOffset::UTC)?;
    // Years 1..=9999: what RFC 3339 and every supported database can store.
    if !(1..=9999).contains(&utc.year()) {
        return None;
    }
    Some(format_ts(utc))
}

/// Checks a `YYYY-MM-DD` calendar date.
pub fn normalize_date(s: &str) -> Option<String> {
    if s.len() != 10 {
        return None;
    }
    let d = Date::parse(s, DATE_FORMAT).ok()?;
    if d.year() < 1 {
        return None;
    }
    d.format(DATE_FORMAT).ok()
}

/// Seconds since the Unix epoch of midnight UTC on a `YYYY-MM-DD` date.
pub fn date_unix(s: &str) -> Option<i64> {
    let d = Date::parse(s, DATE_FORMAT).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp())
}

/// A pragmatic email check (the contract uses JSON Schema's `email` format for
/// requests; this one checks schema defaults): one `@`, non-empty local part,
/// a dotted domain, no whitespace.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
}

/// An absolute `http`/`https` URL with a host.
pub fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) => {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_normalize_to_utc_micros() {
        assert_eq!(
            normalize_datetime("2026-01-02T03:04:05+02:00").as_deref(),
            Some("2026-01-02T01:04:05.000000Z")
        );
        assert_eq!(
            normalize_datetime("2026-01-02T03:04:05.1234567Z").as_deref(),
            Some("2026-01-02T03:04:05.123456Z")
        );
        assert_eq!(normalize_datetime("2026-01-02"), None);
        assert_eq!(normalize_datetime("2026-13-02T03:04:05Z"), None);
        assert_eq!(normalize_datetime("yesterday"), None);
        assert_eq!(normalize_datetime("9999-12-31T23:59:59-01:00"), None);
        assert_eq!(normalize_datetime("0001-01-01T00:00:00+01:00"), None);
        assert!(normalize_datetime(&now_timestamp()).is_some());
    }

    #[test]
    fn dates() {
        assert_eq!(normalize_date("2026-02-28").as_deref(), Some("2026-02-28"));
        assert_eq!(normalize_date("2026-02-30"), None);
        assert_eq!(normalize_date("2026-2-3"), None);
        assert_eq!(normalize_date("2026-02-28T00:00:00Z"), None);
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert!(a < b);
        assert!(is_valid_id(&a));
        assert!(!is_valid_id("not-an-id"));
    }

    #[test]
    fn emails_and_urls() {
        assert!(is_email("a@example.com"));
        assert!(!is_email("a@example"));
        assert!(!is_email("@example.com"));
        assert!(!is_email("a b@example.com"));
        assert!(is_http_url("https://example.com/x?y#z"));
        assert!(!is_http_url("javascript:alert(1)"));
        assert!(!is_http_url("https:///path"));
    }
}
