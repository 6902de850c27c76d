//! Opaque, tamper-proof pagination cursors.
//!
//! A cursor carries the sort-key values of the last row of a page and a hash
//! of the query it belongs to (collection, filter, sort), and is MACed with
//! HMAC-SHA256 under a secret kept in the database. A forged or edited cursor,
//! or one replayed with another filter or sort, is rejected.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use plinth_domain::Value;
use plinth_domain::schema::FieldType;
use plinth_domain::sort::Sort;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in the token (128 bits).
const MAC_LEN: usize = 16;
const VERSION: u64 = 1;

#[derive(Debug, PartialEq, Eq)]
pub enum CursorError {
    Malformed,
    OtherQuery,
}

/// Identifies the query a cursor belongs to.
pub fn query_hash(collection: &str, filter: &str, sort: &Sort) -> String {
    let mut h = Sha256::new();
    h.update(collection.as_bytes());
    h.update([0]);
    h.update(filter.as_bytes());
    h.update([0]);
    h.update(sort.canonical().as_bytes());
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(secret: &[u8], payload: &[u8]) -> Option<HmacSha256> {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret).ok()?;
    m.update(payload);
    Some(m)
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Text(s) | Value::Json(s) => json!(s),
    }
}

fn json_value(ty: FieldType, j: &Json) -> Option<Value> {
    if j.is_null() {
        return Some(Value::Null);
    }
    Some(match ty {
        FieldType::Integer => Value::Int(j.as_i64()?),
        FieldType::Number => Value::Float(j.as_f64()?),
        FieldType::Boolean => Value::Bool(j.as_bool()?),
        _ => Value::Text(j.as_str()?.to_owned()),
    })
}

pub fn encode(secret: &[u8], query: &str, key: &[Value]) -> String {
    let payload = json!([
        VERSION,
        query,
        key.iter().map(value_json).collect::<Vec<_>>()
    ])
    .to_string();
    let tag = mac(secret, payload.as_bytes())
        .map(|m| m.finalize().into_bytes().to_vec())
        .unwrap_or_default();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag.get(..MAC_LEN).unwrap_or(&tag))
    )
}

/// Verifies a cursor and returns the sort-key values it carries.
pub fn decode(
    secret: &[u8],
    query: &str,
    sort: &Sort,
    token: &str,
) -> Result<Vec<Value>, CursorError> {
    let (p, t) = token.split_once('.').ok_or(CursorError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| CursorError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| CursorError::Malformed)?;
    if tag.len() != MAC_LEN {
        return Err(CursorError::Malformed);
    }
    let m = mac(secret, &payload).ok_or(CursorError::Malformed)?;
    m.verify_truncated_left(&tag)
        .map_err(|_| CursorError::Malformed)?;
    let j: Json = serde_json::from_slice(&payload).map_err(|_| CursorError::Malformed)?;
    let [v, q, values] = j.as_array().map(Vec::as_slice).unwrap_or_default() else {
        return Err(CursorError::Malformed);
    };
    if v.as_u64() != Some(VERSION) {
        return Err(CursorError::Malformed);
    }
    if q.as_str() != Some(query) {
        return Err(CursorError::OtherQuery);
    }
    let values = values.as_array().ok_or(CursorError::Malformed)?;
    if values.len() != sort.keys.len() {
        return Err(CursorError::OtherQuery);
    }
    sort.keys
        .iter()
        .zip(values)
        .map(|(k, j)| json_value(k.ty, j).ok_or(CursorError::Malformed))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let secret = [7u8; 32];
        let sort = Sort::newest_first();
        let q = query_hash("posts", "", &sort);
        let key = vec![
            Value::Text("2026-01-01T00:00:00.000000Z".into()),
            Value::Text("id1".into()),
        ];
        let token = encode(&secret, &q, &key);
        assert_eq!(decode(&secret, &q, &sort, &token), Ok(key));
        // Another query.
        let q2 = query_hash("posts", "views > 1", &sort);
        assert_eq!(
            decode(&secret, &q2, &sort, &token),
            Err(CursorError::OtherQuery)
        );
        // Another secret, edited payload, garbage.
        assert_eq!(
            decode(&[8u8; 32], &q, &sort, &token),
            Err(CursorError::Malformed)
        );
        let (p, t) = token.split_once('.').expect("dot");
        let mut payload = URL_SAFE_NO_PAD.decode(p).expect("b64");
        payload[5] ^= 1;
        let forged = format!("{}.{t}", URL_SAFE_NO_PAD.encode(&payload));
        assert_eq!(
            decode(&secret, &q, &sort, &forged),
            Err(CursorError::Malformed)
        );
        for junk in ["", ".", "abc", "a.b", "!!!.???"] {
            assert_eq!(
                decode(&secret, &q, &sort, junk),
                Err(CursorError::Malformed),
                "{junk}"
            );
        }
    }
}
