use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac as _};
use jsonwebtoken::jwk::JwkSet;
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::Sha256;

use super::*;

const ISS: &str = "https://plinth.example";
const AUD: &str = "plinth-api";
const NOW: i64 = 1_800_000_000;

fn claims() -> Claims {
    Claims::new(
        "user-1",
        "session-1",
        Some("tenant-1".to_owned()),
        ISS,
        AUD,
        NOW,
        900,
    )
    .expect("claims")
}

fn ring() -> (KeyRing, SigningKey) {
    let key = SigningKey::generate().expect("key");
    (KeyRing::new(key.clone(), []).expect("ring"), key)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

fn parts(token: &str) -> Vec<&str> {
    token.split('.').collect()
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

/// A token with the given header and payload, signed by `key` with Ed25519 directly (not
/// through `jsonwebtoken`).
fn ed_token(header: &Value, payload: &Value, key: &SigningKey) -> String {
    let msg = format!("{}.{}", b64(header), b64(payload));
    let sk = ed25519_dalek::SigningKey::from_pkcs8_der(&key.private_pkcs8).expect("pkcs8");
    let sig = ed25519_dalek::Signer::sign(&sk, msg.as_bytes());
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn payload() -> Value {
    serde_json::to_value(claims()).expect("json")
}

#[test]
fn round_trip() {
    let (ring, key) = ring();
    let c = claims();
    let token = ring.sign(&c).expect("sign");
    let p = parts(&token);
    assert_eq!(p.len(), 3);
    let header = decode_part(p[0]);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], key.kid.as_str());
    let body = decode_part(p[1]);
    assert_eq!(body["sub"], "user-1");
    assert_eq!(body["tid"], "tenant-1");
    assert_eq!(ring.verify(&token, ISS, AUD, NOW), Ok(c.clone()));
    // Within the validity window, with leeway at both ends.
    assert!(ring.verify(&token, ISS, AUD, NOW - LEEWAY_SECS).is_ok());
    assert!(
        ring.verify(&token, ISS, AUD, c.exp + LEEWAY_SECS - 1)
            .is_ok()
    );
}

#[test]
fn claims_without_tenant_omit_tid() {
    let (ring, _) = ring();
    let c = Claims {
        tid: None,
        ..claims()
    };
    let token = ring.sign(&c).expect("sign");
    let body = decode_part(parts(&token)[1]);
    assert!(body.get("tid").is_none(), "{body}");
    assert_eq!(ring.verify(&token, ISS, AUD, NOW), Ok(c));
}

#[test]
fn claims_new_sets_times_and_random_jti() {
    let a = claims();
    let b = claims();
    assert_eq!((a.iat, a.nbf, a.exp), (NOW, NOW, NOW + 900));
    assert_eq!(a.jti.len(), 25);
    assert_ne!(a.jti, b.jti);
}

#[test]
fn generated_keys_and_from_parts() {
    let k = SigningKey::generate().expect("key");
    assert_eq!(k.kid.len(), 16);
    assert!(crate::random::is_id_alphabet(&k.kid));
    let again = SigningKey::from_parts(k.kid.clone(), k.private_pkcs8.clone(), k.public)
        .expect("from_parts");
    assert_eq!(again, k);
    let other = SigningKey::generate().expect("key");
    assert_ne!(other.kid, k.kid);
    assert_ne!(other.public, k.public);
    // Mismatched halves, bad DER, bad kids.
    assert!(SigningKey::from_parts(k.kid.clone(), k.private_pkcs8.clone(), other.public).is_err());
    assert!(SigningKey::from_parts(k.kid.clone(), vec![0x30, 0x00], k.public).is_err());
    assert!(SigningKey::from_parts(k.kid.clone(), Vec::new(), k.public).is_err());
    for kid in ["", "has space", "slash/", "é", &"a".repeat(65)] {
        assert!(
            SigningKey::from_parts(kid, k.private_pkcs8.clone(), k.public).is_err(),
            "{kid:?}"
        );
    }
    assert!(SigningKey::from_parts("Key_2024-01", k.private_pkcs8.clone(), k.public).is_ok());
    // Debug hides the private key.
    let dbg = format!("{k:?}");
    assert!(dbg.contains("redacted") && dbg.contains(&k.kid), "{dbg}");
}

#[test]
fn pkcs8_is_rfc8410_der() {
    let k = SigningKey::generate().expect("key");
    // SEQUENCE, version, AlgorithmIdentifier { 1.3.101.112 }, OCTET STRING { OCTET STRING seed }.
    assert_eq!(k.private_pkcs8[0], 0x30);
    let ed25519_oid = [0x06, 0x03, 0x2b, 0x65, 0x70];
    assert!(
        k.private_pkcs8
            .windows(ed25519_oid.len())
            .any(|w| w == ed25519_oid)
    );
}

#[test]
fn verification_key_validation() {
    let k = SigningKey::generate().expect("key");
    assert!(VerificationKey::new("old-1", k.public).is_ok());
    assert!(VerificationKey::new("", k.public).is_err());
    // The identity point (small order) and a non-point.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(VerificationKey::new("weak", identity).is_err());
    // About half of all y coordinates are not on the curve; take the first such.
    let not_a_point = (2u8..=255)
        .map(|y| {
            let mut b = [0u8; 32];
            b[0] = y;
            b
        })
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .expect("some y is off the curve");
    assert!(VerificationKey::new("bad", not_a_point).is_err());
}

#[test]
fn ring_rejects_duplicate_kids() {
    let (mut ring, key) = ring();
    let dup = VerificationKey::new(key.kid.clone(), SigningKey::generate().expect("k").public)
        .expect("vk");
    assert!(matches!(
        ring.add_verification_key(dup),
        Err(AuthError::DuplicateKid(_))
    ));
    let mut next = SigningKey::generate().expect("key");
    let next_kid = next.kid.clone();
    ring.rotate(next.clone()).expect("rotate");
    next.kid = key.kid.clone();
    let next = SigningKey::from_parts(next.kid, next.private_pkcs8, next.public).expect("parts");
    assert!(matches!(ring.rotate(next), Err(AuthError::DuplicateKid(_))));
    assert_eq!(ring.current_kid(), next_kid);
    let older = VerificationKey::new("x", SigningKey::generate().expect("k").public).expect("vk");
    assert!(matches!(
        KeyRing::new(key, [older.clone(), older]),
        Err(AuthError::DuplicateKid(_))
    ));
}

#[test]
fn rotation() {
    let (mut ring, old) = ring();
    let old_token = ring.sign(&claims()).expect("sign");
    let new = SigningKey::generate().expect("key");
    ring.rotate(new.clone()).expect("rotate");
    assert_eq!(ring.current_kid(), new.kid);
    assert_eq!(
        ring.kids().collect::<Vec<_>>(),
        [new.kid.as_str(), old.kid.as_str()]
    );
    // Old tokens still verify; new tokens carry the new kid.
    assert!(ring.verify(&old_token, ISS, AUD, NOW).is_ok());
    let new_token = ring.sign(&claims()).expect("sign");
    assert_eq!(decode_part(parts(&new_token)[0])["kid"], new.kid.as_str());
    assert!(ring.verify(&new_token, ISS, AUD, NOW).is_ok());
    // A ring rebuilt from storage behaves the same.
    let rebuilt = KeyRing::new(new.clone(), [old.verification_key()]).expect("ring");
    assert!(rebuilt.verify(&old_token, ISS, AUD, NOW).is_ok());
    assert!(rebuilt.verify(&new_token, ISS, AUD, NOW).is_ok());
    // The current key cannot be removed; the old one can, and its tokens become unknown.
    assert!(!ring.remove_verification_key(&new.kid));
    assert!(ring.remove_verification_key(&old.kid));
    assert!(!ring.remove_verification_key(&old.kid));
    assert_eq!(
        ring.verify(&old_token, ISS, AUD, NOW),
        Err(TokenError::UnknownKid {
            kid: old.kid.clone()
        })
    );
    assert!(ring.verify(&new_token, ISS, AUD, NOW).is_ok());
    // A ring that never had the new key does not know its tokens either.
    let (stranger, _) = self::ring();
    assert!(matches!(
        stranger.verify(&new_token, ISS, AUD, NOW),
        Err(TokenError::UnknownKid { .. })
    ));
}

#[test]
fn alg_none_is_rejected() {
    let (ring, key) = ring();
    let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid});
    let unsigned = format!("{}.{}.", b64(&header), b64(&payload()));
    assert_eq!(
        ring.verify(&unsigned, ISS, AUD, NOW),
        Err(TokenError::UnsupportedAlgorithm)
    );
    // Other spellings and no signature part at all.
    for alg in ["None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "kid": key.kid});
        let t = format!("{}.{}.", b64(&header), b64(&payload()));
        assert_eq!(
            ring.verify(&t, ISS, AUD, NOW),
            Err(TokenError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    let two_parts = format!("{}.{}", b64(&header), b64(&payload()));
    assert_eq!(
        ring.verify(&two_parts, ISS, AUD, NOW),
        Err(TokenError::UnsupportedAlgorithm)
    );
    // A real EdDSA signature stapled to an `alg: none` header does not help either.
    let signed_none = ed_token(&header, &payload(), &key);
    assert_eq!(
        ring.verify(&signed_none, ISS, AUD, NOW),
        Err(TokenError::UnsupportedAlgorithm)
    );
}

#[test]
fn hs256_with_public_key_as_secret_is_rejected() {
    let (ring, key) = ring();
    // The classic algorithm-confusion forgery: HMAC keyed with the (public) verification key,
    // in each form an attacker might try (raw bytes, base64url x, the whole JWK JSON).
    let jwks = ring.jwks();
    let x = jwks["keys"][0]["x"].as_str().expect("x").to_owned();
    let jwk_json = serde_json::to_vec(&jwks["keys"][0]).expect("json");
    for secret in [key.public.to_vec(), x.into_bytes(), jwk_json] {
        for alg in ["HS256", "HS384", "HS512"] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": key.kid});
            let msg = format!("{}.{}", b64(&header), b64(&payload()));
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret).expect("hmac");
            mac.update(msg.as_bytes());
            let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            let forged = format!("{msg}.{sig}");
            assert_eq!(
                ring.verify(&forged, ISS, AUD, NOW),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }
}

#[test]
fn other_algorithms_are_rejected() {
    let (ring, key) = ring();
    for alg in [
        "RS256", "PS256", "ES256", "ES384", "ES512", "Ed25519", "eddsa", "EDDSA", "",
    ] {
        let header = json!({"alg": alg, "kid": key.kid});
        let t = ed_token(&header, &payload(), &key);
        assert_eq!(
            ring.verify(&t, ISS, AUD, NOW),
            Err(TokenError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    // alg missing or not a string: malformed.
    for header in [json!({"kid": key.kid}), json!({"alg": 1, "kid": key.kid})] {
        let t = ed_token(&header, &payload(), &key);
        assert_eq!(ring.verify(&t, ISS, AUD, NOW), Err(TokenError::Malformed));
    }
}

#[test]
fn kid_is_required_and_checked() {
    let (ring, key) = ring();
    let no_kid = ed_token(&json!({"alg": "EdDSA", "typ": "JWT"}), &payload(), &key);
    assert_eq!(
        ring.verify(&no_kid, ISS, AUD, NOW),
        Err(TokenError::Malformed)
    );
    let bad_kid = ed_token(
        &json!({"alg": "EdDSA", "kid": "../../etc/passwd"}),
        &payload(),
        &key,
    );
    assert_eq!(
        ring.verify(&bad_kid, ISS, AUD, NOW),
        Err(TokenError::Malformed)
    );
    let long_kid = ed_token(
        &json!({"alg": "EdDSA", "kid": "a".repeat(65)}),
        &payload(),
        &key,
    );
    assert_eq!(
        ring.verify(&long_kid, ISS, AUD, NOW),
        Err(TokenError::Malformed)
    );
    let wrong_kid = ed_token(
        &json!({"alg": "EdDSA", "kid": "nosuchkey0000000"}),
        &payload(),
        &key,
    );
    assert_eq!(
        ring.verify(&wrong_kid, ISS, AUD, NOW),
        Err(TokenError::UnknownKid {
            kid: "nosuchkey0000000".to_owned()
        })
    );
    // A critical header extension cannot be honoured (RFC 7515): rejected even when signed.
    let crit = ed_token(
        &json!({"alg": "EdDSA", "kid": key.kid, "crit": ["b64"], "b64": false}),
        &payload(),
        &key,
    );
    assert_eq!(
        ring.verify(&crit, ISS, AUD, NOW),
        Err(TokenError::Malformed)
    );
    // Keys offered in the header itself are ignored: the ring decides.
    let (_, attacker) = self::ring();
    let embedded = ed_token(
        &json!({
            "alg": "EdDSA",
            "kid": key.kid,
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(attacker.public)},
            "jku": "https://attacker.example/jwks.json",
        }),
        &payload(),
        &attacker,
    );
    assert_eq!(
        ring.verify(&embedded, ISS, AUD, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn signature_from_another_key_with_same_kid() {
    let (ring, key) = ring();
    let mut impostor = SigningKey::generate().expect("key");
    impostor.kid = key.kid.clone();
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid});
    let forged = ed_token(&header, &payload(), &impostor);
    assert_eq!(
        ring.verify(&forged, ISS, AUD, NOW),
        Err(TokenError::BadSignature)
    );
    // Same through a ring built around the impostor key.
    let impostor_ring = KeyRing::new(impostor, []).expect("ring");
    let forged = impostor_ring.sign(&claims()).expect("sign");
    assert_eq!(
        ring.verify(&forged, ISS, AUD, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn tampering_is_detected() {
    let (ring, key) = ring();
    let token = ring.sign(&claims()).expect("sign");
    let p = parts(&token);
    // Payload changed (escalate to another user), signature kept.
    let mut body = decode_part(p[1]);
    body["sub"] = json!("admin");
    let t = format!("{}.{}.{}", p[0], b64(&body), p[2]);
    assert_eq!(
        ring.verify(&t, ISS, AUD, NOW),
        Err(TokenError::BadSignature)
    );
    // Header changed (typ), signature kept.
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid});
    let t = format!("{}.{}.{}", b64(&header), p[1], p[2]);
    assert_eq!(
        ring.verify(&t, ISS, AUD, NOW),
        Err(TokenError::BadSignature)
    );
    // Signature bits flipped, truncated, extended, emptied.
    let mut sig = URL_SAFE_NO_PAD.decode(p[2]).expect("b64");
    sig[10] ^= 1;
    let t = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(
        ring.verify(&t, ISS, AUD, NOW),
        Err(TokenError::BadSignature)
    );
    let t = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig[..63]));
    assert_eq!(
        ring.verify(&t, ISS, AUD, NOW),
        Err(TokenError::BadSignature)
    );
    let t = format!("{}.{}.{}AAAA", p[0], p[1], p[2]);
    assert!(ring.verify(&t, ISS, AUD, NOW).is_err());
    let t = format!("{}.{}.", p[0], p[1]);
    assert_eq!(
        ring.verify(&t, ISS, AUD, NOW),
        Err(TokenError::BadSignature)
    );
    // Non-canonical signature (S + L): rejected by strict verification.
    let mut sig = URL_SAFE_NO_PAD.decode(p[2]).expect("b64");
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(sig[32 + i]) + u16::from(l[i]) + carry;
        sig[32 + i] = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    let t = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(
        ring.verify(&t, ISS, AUD, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn time_checks() {
    let (ring, key) = ring();
    let c = claims();
    let token = ring.sign(&c).expect("sign");
    assert_eq!(
        ring.verify(&token, ISS, AUD, c.exp + LEEWAY_SECS),
        Err(TokenError::Expired)
    );
    assert_eq!(
        ring.verify(&token, ISS, AUD, c.exp + 3600),
        Err(TokenError::Expired)
    );
    assert_eq!(
        ring.verify(&token, ISS, AUD, c.nbf - LEEWAY_SECS - 1),
        Err(TokenError::NotYetValid)
    );
    // nbf in the future, signed by the real key.
    let mut body = payload();
    body["nbf"] = json!(NOW + 3600);
    body["exp"] = json!(NOW + 7200);
    let t = ed_token(&json!({"alg": "EdDSA", "kid": key.kid}), &body, &key);
    assert_eq!(ring.verify(&t, ISS, AUD, NOW), Err(TokenError::NotYetValid));
    assert!(ring.verify(&t, ISS, AUD, NOW + 3600).is_ok());
    // Extreme values do not overflow.
    let mut body = payload();
    body["exp"] = json!(i64::MAX);
    body["nbf"] = json!(i64::MIN);
    let t = ed_token(&json!({"alg": "EdDSA", "kid": key.kid}), &body, &key);
    assert!(ring.verify(&t, ISS, AUD, NOW).is_ok());
    body["exp"] = json!(i64::MIN);
    let t = ed_token(&json!({"alg": "EdDSA", "kid": key.kid}), &body, &key);
    assert_eq!(ring.verify(&t, ISS, AUD, NOW), Err(TokenError::Expired));
}

#[test]
fn issuer_and_audience_checks() {
    let (ring, _) = ring();
    let token = ring.sign(&claims()).expect("sign");
    assert_eq!(
        ring.verify(&token, "https://other.example", AUD, NOW),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        ring.verify(&token, ISS, "other-api", NOW),
        Err(TokenError::WrongAudience)
    );
    // Exact comparison, no prefix or case games.
    assert!(
        ring.verify(&token, "https://plinth.example/", AUD, NOW)
            .is_err()
    );
    assert!(ring.verify(&token, ISS, "PLINTH-API", NOW).is_err());
}

#[test]
fn claims_are_required_and_typed() {
    let (ring, key) = ring();
    let header = json!({"alg": "EdDSA", "kid": key.kid});
    for field in ["sub", "sid", "iss", "aud", "iat", "nbf", "exp", "jti"] {
        let mut body = payload();
        body.as_object_mut().expect("object").remove(field);
        let t = ed_token(&header, &body, &key);
        assert_eq!(
            ring.verify(&t, ISS, AUD, NOW),
            Err(TokenError::Malformed),
            "without {field}"
        );
    }
    let mut body = payload();
    body["exp"] = json!("tomorrow");
    let t = ed_token(&header, &body, &key);
    assert_eq!(ring.verify(&t, ISS, AUD, NOW), Err(TokenError::Malformed));
    let mut body = payload();
    body["aud"] = json!([AUD]);
    let t = ed_token(&header, &body, &key);
    assert_eq!(ring.verify(&t, ISS, AUD, NOW), Err(TokenError::Malformed));
    // A signed payload that is not JSON at all.
    let msg = format!("{}.{}", b64(&header), URL_SAFE_NO_PAD.encode(b"not json"));
    let sk = ed25519_dalek::SigningKey::from_pkcs8_der(&key.private_pkcs8).expect("pkcs8");
    let sig = ed25519_dalek::Signer::sign(&sk, msg.as_bytes());
    let t = format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
    assert_eq!(ring.verify(&t, ISS, AUD, NOW), Err(TokenError::Malformed));
    // Unknown extra claims are tolerated (forward compatibility during rolling deploys).
    let mut body = payload();
    body["scope"] = json!("read");
    let t = ed_token(&header, &body, &key);
    assert!(ring.verify(&t, ISS, AUD, NOW).is_ok());
}

#[test]
fn garbage_is_malformed() {
    let (ring, _) = ring();
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    for garbage in [
        "",
        ".",
        "..",
        "...",
        "a.b.c",
        "a.b.c.d",
        "not a token",
        "Bearer x.y.z",
        "eyJhbGciOiJFZERTQSJ9",
        "eyJhbGciOiJFZERTQSJ9..",
        "!!!.???.***",
        "é.é.é",
        "\0.\0.\0",
        long.as_str(),
    ] {
        assert_eq!(
            ring.verify(garbage, ISS, AUD, NOW),
            Err(TokenError::Malformed),
            "{garbage:?}"
        );
    }
}

#[test]
fn descriptions_are_header_safe() {
    let all = [
        TokenError::Malformed,
        TokenError::UnsupportedAlgorithm,
        TokenError::UnknownKid {
            kid: "x\"y".to_owned(),
        },
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
    ];
    for e in &all {
        let d = e.description();
        assert!(!d.is_empty());
        assert!(
            d.bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
            "{d}"
        );
        assert_eq!(e.to_string(), d);
    }
}

#[test]
fn jwks_shape() {
    let (mut ring, old) = ring();
    let new = SigningKey::generate().expect("key");
    ring.rotate(new.clone()).expect("rotate");
    let jwks = ring.jwks();
    assert_eq!(
        jwks,
        json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(new.public),
             "kid": new.kid, "alg": "EdDSA", "use": "sig"},
            {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(old.public),
             "kid": old.kid, "alg": "EdDSA", "use": "sig"},
        ]})
    );
    // x is 32 bytes, base64url without padding.
    let x = jwks["keys"][0]["x"].as_str().expect("x");
    assert_eq!(x.len(), 43);
    assert!(!x.contains('='));
}

/// Verify tokens using only the published JWK Set, as a third party would: once through
/// `jsonwebtoken`'s own JWK parsing (`DecodingKey::from_jwk`), once with `ed25519-dalek` alone.
#[test]
fn jwks_verifies_tokens_independently() {
    let (mut ring, _) = ring();
    let old_token = ring.sign(&claims()).expect("sign");
    ring.rotate(SigningKey::generate().expect("key"))
        .expect("rotate");
    let new_token = ring.sign(&claims()).expect("sign");
    let published = serde_json::to_string(&ring.jwks()).expect("json");
    let set: JwkSet = serde_json::from_str(&published).expect("RFC 7517 JWK Set");
    assert_eq!(set.keys.len(), 2);
    for token in [&old_token, &new_token] {
        let header = jsonwebtoken::decode_header(token).expect("header");
        let kid = header.kid.expect("kid");
        let jwk = set.find(&kid).expect("kid in JWKS");
        let key = DecodingKey::from_jwk(jwk).expect("jwk");
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[AUD]);
        v.set_issuer(&[ISS]);
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).expect("verifies via JWKS");
        assert_eq!(data.claims.sub, "user-1");

        // Independent of jsonwebtoken's crypto path entirely.
        let raw: Value = serde_json::from_str(&published).expect("json");
        let entry = raw["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .expect("entry");
        let x: [u8; 32] = URL_SAFE_NO_PAD
            .decode(entry["x"].as_str().expect("x"))
            .expect("b64")
            .try_into()
            .expect("32 bytes");
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&x).expect("point");
        let (msg, sig) = token.rsplit_once('.').expect("dot");
        let sig = ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).expect("b64"))
            .expect("sig");
        vk.verify_strict(msg.as_bytes(), &sig).expect("ed25519");
    }
}

#[test]
fn provider_refuses_other_algorithms() {
    let (ring, key) = ring();
    drop(ring); // ensures the provider is installed
    let enc = EncodingKey::from_secret(b"secret");
    assert!(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &enc).is_err());
    let dec = DecodingKey::from_secret(&key.public);
    let v = Validation::new(Algorithm::HS256);
    let header = json!({"alg": "HS256", "kid": key.kid});
    let msg = format!("{}.{}", b64(&header), b64(&payload()));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.public).expect("hmac");
    mac.update(msg.as_bytes());
    let t = format!(
        "{msg}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    assert!(jsonwebtoken::decode::<Claims>(&t, &dec, &v).is_err());
}

/// Per-operation cost of signing and verifying (printed, not asserted: run with
/// `cargo nextest run -p plinth-auth --no-capture sign_verify_timing`).
#[test]
fn sign_verify_timing() {
    let (ring, _) = ring();
    let c = claims();
    let n = 200;
    let t = Instant::now();
    let mut token = String::new();
    for _ in 0..n {
        token = ring.sign(&c).expect("sign");
    }
    let sign = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        ring.verify(&token, ISS, AUD, NOW).expect("verify");
    }
    let verify = t.elapsed() / n;
    println!(
        "sign: {sign:?}/op, verify: {verify:?}/op, token {} bytes",
        token.len()
    );
}

proptest! {
    #[test]
    fn verify_never_panics(s in "\\PC{0,200}") {
        let (ring, _) = ring();
        prop_assert!(ring.verify(&s, ISS, AUD, NOW).is_err());
    }

    #[test]
    fn verify_never_panics_on_jwt_shaped_input(
        h in "[A-Za-z0-9_\\-]{0,60}",
        p in "[A-Za-z0-9_\\-]{0,60}",
        s in "[A-Za-z0-9_\\-=+/]{0,90}",
    ) {
        let (ring, _) = ring();
        let t = format!("{h}.{p}.{s}");
        prop_assert!(ring.verify(&t, ISS, AUD, NOW).is_err());
    }
}
