//! Rate-limit policies and the GCRA decision (generic cell rate algorithm).
//!
//! A policy allows `limit` requests per `window`, all at once if they come
//! together (burst = limit). One number per key is kept: the theoretical
//! arrival time (TAT). With T = window / limit and τ = (limit − 1)·T, a
//! request at `now` is allowed when `now ≥ TAT − τ`; then
//! `TAT = max(TAT, now) + T`. Denied requests leave the TAT unchanged.

use std::fmt;

/// One named policy: `limit` requests per `window_secs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub limit: u32,
    pub window_secs: u32,
}

impl Policy {
    /// Seconds between requests at the sustained rate (T).
    pub fn interval(&self) -> f64 {
        f64::from(self.window_secs) / f64::from(self.limit)
    }

    /// How far ahead of `now` the TAT may run (τ).
    pub fn tolerance(&self) -> f64 {
        f64::from(self.limit.saturating_sub(1)) * self.interval()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/{}s", self.name, self.limit, self.window_secs)
    }
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The TAT to store (unchanged when denied).
    pub tat: f64,
    /// Requests still allowed right now after this one.
    pub remaining: u32,
    /// Seconds until the full quota is available again.
    pub reset_secs: u64,
    /// When denied: seconds to wait before the next request is allowed.
    pub retry_after_secs: u64,
}

fn ceil_secs(x: f64) -> u64 {
    // Saturating float→int conversion; negative means "now".
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = x.max(0.0).ceil() as u64;
    s
}

/// Decides a request at `now` (seconds) for a key whose stored TAT is `tat`
/// (`None` for a key never seen).
pub fn decide(policy: &Policy, tat: Option<f64>, now: f64) -> Decision {
    let t = policy.interval();
    let tau = policy.tolerance();
    let current = tat.unwrap_or(now).max(now);
    let allowed = now >= current - tau;
    let new_tat = if allowed { current + t } else { current };
    // Requests that fit before the TAT runs more than τ ahead of now.
    let headroom = tau - (new_tat - now) + t;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let remaining = (headroom / t).floor().max(0.0) as u32;
    Decision {
        allowed,
        tat: new_tat,
        remaining: remaining.min(policy.limit),
        reset_secs: ceil_secs(new_tat - now),
        retry_after_secs: if allowed {
            0
        } else {
            ceil_secs(current - tau - now).max(1)
        },
    }
}

/// Parses `read=600/60s,write=120/60s` (the `s` is optional; `m` and `h`
/// windows are accepted too).
pub fn parse_policies(src: &str) -> Result<Vec<Policy>, String> {
    let mut out: Vec<Policy> = Vec::new();
    for part in src.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, spec) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected NAME=LIMIT/WINDOW, e.g. read=600/60s"))?;
        let name = name.trim();
        if !matches!(name, "read" | "write" | "auth-ip" | "auth-account") {
            return Err(format!(
                "`{name}`: unknown route class (use read, write, auth-ip or auth-account)"
            ));
        }
        let (limit, window) = spec
            .split_once('/')
            .ok_or_else(|| format!("`{part}`: expected LIMIT/WINDOW, e.g. 600/60s"))?;
        let limit: u32 = limit
            .trim()
            .parse()
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| format!("`{part}`: the limit must be a positive integer"))?;
        let window = window.trim();
        let (num, unit) = match window.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((i, _)) => window.split_at(i),
            None => (window, "s"),
        };
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(format!("`{part}`: the window unit must be s, m or h")),
        };
        let window_secs = num
            .parse::<u32>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .filter(|w| *w > 0)
            .ok_or_else(|| format!("`{part}`: the window must be a positive duration"))?;
        if out.iter().any(|p| p.name == name) {
            return Err(format!("`{name}` is given twice"));
        }
        out.push(Policy {
            name: name.to_owned(),
            limit,
            window_secs,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(limit: u32, window: u32) -> Policy {
        Policy {
            name: "read".into(),
            limit,
            window_secs: window,
        }
    }

    #[test]
    fn a_burst_of_limit_then_denied_then_recovers() {
        let pol = p(5, 60);
        let mut tat = None;
        for i in 0..5 {
            let d = decide(&pol, tat, 1000.0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            tat = Some(d.tat);
        }
        let d = decide(&pol, tat, 1000.0);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_secs, 12); // one interval (60/5)
        assert_eq!(d.reset_secs, 60);
        assert_eq!(d.tat, tat.unwrap_or_default(), "a denial does not consume");
        // After one interval one request is allowed again.
        assert!(decide(&pol, tat, 1012.0).allowed);
    }

    #[test]
    fn policies_parse() {
        assert_eq!(
            parse_policies("read=600/60s, write=10/1m").expect("valid"),
            [
                Policy {
                    name: "read".into(),
                    limit: 600,
                    window_secs: 60
                },
                Policy {
                    name: "write".into(),
                    limit: 10,
                    window_secs: 60
                }
            ]
        );
        for bad in [
            "read",
            "read=0/60",
            "read=5/0s",
            "read=5/60x",
            "other=5/60",
            "read=5/60,read=6/60",
        ] {
            assert!(parse_policies(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Over any window, no more than `limit` + (window / T) requests pass.
        #[test]
        fn never_more_than_the_policy_allows(
            limit in 1u32..50,
            window in 1u32..120,
            gaps in prop::collection::vec(0.0f64..3.0, 1..300),
        ) {
            let pol = p(limit, window);
            let mut tat = None;
            let mut now = 0.0;
            let mut allowed_at = Vec::new();
            for g in gaps {
                now += g;
                let d = decide(&pol, tat, now);
                if d.allowed {
                    allowed_at.push(now);
                }
                tat = Some(d.tat);
            }
            let w = f64::from(window);
            for (i, start) in allowed_at.iter().enumerate() {
                let in_window = allowed_at[i..].iter().take_while(|t| **t < start + w).count();
                // A burst of `limit` plus the sustained rate within one window.
                prop_assert!(in_window <= 2 * limit as usize, "{in_window} in one window");
            }
        }
    }
}
