//! Basic auth against `basic_auth_users` (bcrypt hashes), cheap to abuse.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), so:
//! - a credential that passed is remembered (a SHA-256 of user and
//!   password, never the password), and a scraper's every later request
//!   costs a hash lookup; the cache belongs to one load of the web config,
//!   so a changed hash or a removed user takes effect at the reload;
//! - a credential that failed is remembered too (in a separate, bounded
//!   table that attackers can fill but that cannot evict a good scraper);
//! - a new credential is checked only as fast as [`CHECKS_PER_SECOND`]
//!   allows, one at a time (waiting up to 2 s for the one before), off the
//!   HTTP thread; beyond that the answer is 429 without running bcrypt. A
//!   storm of wrong passwords costs at most that many bcrypt runs a second,
//!   and never delays a scraper already known; scrapers that arrive at once
//!   with one new credential wait for its first check and pass.
//!
//! An unknown user is checked against a hash of the same cost, so the time
//! of an answer does not tell whether a user exists.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hyper::header::HeaderValue;
use rustc_hash::FxHashSet;

use super::bucket::Bucket;
use crate::sync::lock;

/// New credentials checked with bcrypt per second, at most.
pub const CHECKS_PER_SECOND: u32 = 5;
/// How long a new credential waits for the check before it, at most.
const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// Distinct good credentials remembered.
const GOOD_CAPACITY: usize = 256;
/// Distinct bad credentials remembered; the table is emptied when full.
const BAD_CAPACITY: usize = 4096;

type Key = [u8; 32];

/// The answer to one request's `Authorization` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No (or no well-formed) basic credentials.
    Missing,
    Denied,
    /// A credential not seen before, and no bcrypt check left this second.
    Throttled,
}

/// The users of one web config, and what their checks have learnt.
pub struct Authenticator {
    users: BTreeMap<String, String>,
    /// What an unknown user's password is checked against.
    decoy: String,
    good: Mutex<FxHashSet<Key>>,
    bad: Mutex<FxHashSet<Key>>,
    bucket: Mutex<Bucket>,
    /// One bcrypt check at a time.
    checking: tokio::sync::Semaphore,
}

impl Authenticator {
    /// Checks that every hash is a bcrypt hash.
    pub fn new(users: BTreeMap<String, String>) -> Result<Authenticator, String> {
        let mut cost = bcrypt::DEFAULT_COST;
        for (user, hash) in &users {
            let parts: bcrypt::HashParts = hash.parse().map_err(|e| {
                format!("basic_auth_users: the hash of {user:?} is not a bcrypt hash ({e})")
            })?;
            cost = parts.get_cost();
        }
        let decoy = bcrypt::hash_with_salt(b"closewatch decoy", cost, [7; 16])
            .map_err(|e| format!("basic_auth_users: {e}"))?
            .to_string();
        Ok(Authenticator {
            users,
            decoy,
            good: Mutex::default(),
            bad: Mutex::default(),
            bucket: Mutex::new(Bucket::new(
                CHECKS_PER_SECOND,
                Duration::from_secs(1) / CHECKS_PER_SECOND,
                Instant::now(),
            )),
            checking: tokio::sync::Semaphore::new(1),
        })
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// The verdict on an `Authorization` header.
    pub async fn check(self: &Arc<Self>, header: Option<&HeaderValue>) -> Verdict {
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return Verdict::Missing;
        };
        let key = key(&user, &password);
        if let Some(known) = self.known(&key) {
            return known;
        }
        // Scrapers that start together with one credential queue here
        // behind the first, and find it remembered when their turn comes.
        let Ok(Ok(_permit)) = tokio::time::timeout(QUEUE_WAIT, self.checking.acquire()).await
        else {
            return Verdict::Throttled;
        };
        if let Some(known) = self.known(&key) {
            return known;
        }
        if !lock(&self.bucket).take(Instant::now()) {
            return Verdict::Throttled;
        }
        let this = self.clone();
        let ok = tokio::task::spawn_blocking(move || this.bcrypt(&user, &password))
            .await
            .unwrap_or(false);
        self.remember(key, ok);
        if ok {
            Verdict::Allowed
        } else {
            Verdict::Denied
        }
    }

    /// The verdict remembered for `key`, if any.
    fn known(&self, key: &Key) -> Option<Verdict> {
        if lock(&self.good).contains(key) {
            Some(Verdict::Allowed)
        } else if lock(&self.bad).contains(key) {
            Some(Verdict::Denied)
        } else {
            None
        }
    }

    /// The bcrypt check itself (tens of milliseconds).
    fn bcrypt(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &self.decoy);
                false
            }
        }
    }

    fn remember(&self, key: Key, ok: bool) {
        let (table, capacity) = if ok {
            (&self.good, GOOD_CAPACITY)
        } else {
            (&self.bad, BAD_CAPACITY)
        };
        let mut t = lock(table);
        if t.len() >= capacity {
            t.clear();
        }
        t.insert(key);
    }
}

/// The SHA-256 of user and password, which is what the caches keep.
fn key(user: &str, password: &str) -> Key {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(user.len() as u64).to_le_bytes());
    ctx.update(user.as_bytes());
    ctx.update(password.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(header: &HeaderValue) -> Option<(String, String)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// How long a throttled client is told to wait.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("header")
    }

    fn authenticator() -> Arc<Authenticator> {
        // Cost 4, the lowest: these tests are about the logic, not bcrypt.
        let hash = bcrypt::hash("secret", 4).expect("hash");
        Arc::new(Authenticator::new(BTreeMap::from([("prom".to_string(), hash)])).expect("users"))
    }

    fn check(a: &Arc<Authenticator>, h: Option<&HeaderValue>) -> Verdict {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(a.check(h))
    }

    #[test]
    fn the_right_password_passes_and_is_then_remembered() {
        let a = authenticator();
        assert_eq!(check(&a, Some(&header("prom", "secret"))), Verdict::Allowed);
        // Out of bcrypt checks: a remembered credential still passes.
        lock(&a.bucket).empty();
        assert_eq!(check(&a, Some(&header("prom", "secret"))), Verdict::Allowed);
        assert_eq!(
            check(&a, Some(&header("prom", "other"))),
            Verdict::Throttled
        );
    }

    #[test]
    fn wrong_passwords_unknown_users_and_malformed_headers_are_refused() {
        let a = authenticator();
        assert_eq!(check(&a, Some(&header("prom", "wrong"))), Verdict::Denied);
        assert_eq!(check(&a, Some(&header("eve", "secret"))), Verdict::Denied);
        assert_eq!(check(&a, None), Verdict::Missing);
        for bad in ["Bearer x", "Basic !!!", "Basic Zm9v", "Basic"] {
            let h = HeaderValue::from_static(bad);
            assert_eq!(check(&a, Some(&h)), Verdict::Missing, "{bad}");
        }
    }

    #[test]
    fn a_failed_credential_is_not_checked_twice() {
        let a = authenticator();
        assert_eq!(check(&a, Some(&header("prom", "wrong"))), Verdict::Denied);
        lock(&a.bucket).empty();
        assert_eq!(check(&a, Some(&header("prom", "wrong"))), Verdict::Denied);
    }

    #[test]
    fn bcrypt_checks_are_limited_per_second() {
        let a = authenticator();
        let checked = (0..3 * CHECKS_PER_SECOND)
            .map(|i| check(&a, Some(&header("prom", &format!("guess{i}")))))
            .filter(|v| *v == Verdict::Denied)
            .count();
        // The bucket starts full and refills during the checks themselves.
        assert!(
            checked >= CHECKS_PER_SECOND as usize && checked < 3 * CHECKS_PER_SECOND as usize,
            "{checked}"
        );
    }

    #[test]
    fn a_good_scraper_survives_a_flood_of_bad_credentials() {
        let a = authenticator();
        assert_eq!(check(&a, Some(&header("prom", "secret"))), Verdict::Allowed);
        for i in 0..BAD_CAPACITY + 10 {
            a.remember(key("prom", &format!("bad{i}")), false);
        }
        lock(&a.bucket).empty();
        assert_eq!(check(&a, Some(&header("prom", "secret"))), Verdict::Allowed);
    }

    #[test]
    fn scrapers_arriving_together_with_one_new_credential_all_pass() {
        let a = authenticator();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let h = header("prom", "secret");
        let verdicts = rt.block_on(async {
            let checks: Vec<_> = (0..20).map(|_| a.check(Some(&h))).collect();
            let mut out = Vec::new();
            for v in futures_join(checks).await {
                out.push(v);
            }
            out
        });
        assert!(
            verdicts.iter().all(|v| *v == Verdict::Allowed),
            "{verdicts:?}"
        );
    }

    /// Polls every future to completion, concurrently, on this task.
    async fn futures_join<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
        let local = tokio::task::LocalSet::new();
        let mut pinned: Vec<_> = fs.into_iter().map(Box::pin).collect();
        let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
        local
            .run_until(std::future::poll_fn(|cx| {
                let mut pending = false;
                for (f, o) in pinned.iter_mut().zip(out.iter_mut()) {
                    if o.is_none() {
                        match f.as_mut().poll(cx) {
                            std::task::Poll::Ready(v) => *o = Some(v),
                            std::task::Poll::Pending => pending = true,
                        }
                    }
                }
                if pending {
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(())
                }
            }))
            .await;
        out.into_iter().flatten().collect()
    }

    #[test]
    fn hashes_that_are_not_bcrypt_are_refused_at_load() {
        let e = Authenticator::new(BTreeMap::from([("a".to_string(), "x".to_string())]));
        assert!(e.is_err());
    }
}
