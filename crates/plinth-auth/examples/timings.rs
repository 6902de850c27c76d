//! Rough per-operation timings of the credential primitives on this machine.
//!
//! `cargo run --release -p plinth-auth --example timings`

use std::hint::black_box;
use std::time::{Duration, Instant};

use plinth_auth::{
    Claims, KeyRing, SigningKey, dummy_verify, hash_password, new_api_key, new_refresh_token,
    token_hash, verify_password,
};

/// Mean wall time of `n` calls of `f`.
fn per_op<T>(n: u32, mut f: impl FnMut() -> T) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    t.elapsed() / n
}

/// Median wall time of single calls of `f`.
fn median(runs: &mut [Duration]) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Argon2: interleaved single runs, median (the first runs and the odd one are much slower).
    let phc = hash_password("warm-up password")?;
    let (mut hash, mut verify, mut dummy) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        hash.push(per_op(1, || hash_password("a fine long passphrase")));
        verify.push(per_op(1, || verify_password("wrong password", &phc)));
        dummy.push(per_op(1, || dummy_verify("wrong password")));
    }
    println!("hash_password:   {:?} (median)", median(&mut hash));
    println!("verify_password: {:?} (median)", median(&mut verify));
    println!("dummy_verify:    {:?} (median)", median(&mut dummy));

    let ring = KeyRing::new(SigningKey::generate()?, [])?;
    let now = 1_800_000_000;
    let claims = Claims::new("user", "session", None, "iss", "aud", now, 900)?;
    let token = ring.sign(&claims)?;
    println!("jwt sign:        {:?}", per_op(2000, || ring.sign(&claims)));
    let verify = per_op(2000, || ring.verify(&token, "iss", "aud", now));
    println!("jwt verify:      {verify:?}");
    println!("token length:    {} bytes", token.len());
    println!("key generate:    {:?}", per_op(200, SigningKey::generate));
    println!("refresh token:   {:?}", per_op(2000, new_refresh_token));
    println!("api key:         {:?}", per_op(2000, new_api_key));
    println!("token_hash:      {:?}", per_op(2000, || token_hash(&token)));
    Ok(())
}
