//! Logins: what a session cookie stands for, kept in Redis so that it can be
//! ended before its cookie expires (logout, "log out everywhere", a stolen
//! cookie revoked). A cookie is only as good as its login: every edge and
//! the api check it when a stream opens and on every cookie request.
//!
//! Keys, on every Redis server of `redis.urls`:
//! - `{prefix}:login:{user}:{login}`: when the login started (µs since the
//!   Unix epoch); expires with the cookie (`session.ttl_secs`);
//! - `{prefix}:logins-after:{user}`: logins of `user` that started before
//!   this time are ended ("log out everywhere"); expires as the key above;
//! - `{prefix}:login-failures:{what}`: failed logins of an account or from
//!   an address in the current window, for the login rate limit.
//!
//! With several independent servers a login is live only when a majority
//! of them says so, and starting or ending one needs a majority to take
//! the write: a server that missed an end (it was down) cannot bring a
//! login back on its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_domain::{LoginId, UserId};

use crate::SessionsError;
use crate::nodes::Nodes;

/// The logins of every user, on the servers of `nodes`.
#[derive(Clone)]
pub struct Logins {
    nodes: Nodes,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins")
            .field("nodes", &self.nodes)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Logins {
    /// Logins that last `ttl` (the session cookie's lifetime).
    pub fn new(nodes: Nodes, prefix: &str, ttl: Duration) -> Self {
        Self {
            nodes,
            prefix: prefix.to_owned(),
            ttl,
        }
    }

    fn login_key(&self, user: UserId, login: LoginId) -> String {
        format!("{}:login:{user}:{login}", self.prefix)
    }

    fn after_key(&self, user: UserId) -> String {
        format!("{}:logins-after:{user}", self.prefix)
    }

    /// Starts a new login of `user`.
    pub async fn start(&self, user: UserId) -> Result<LoginId, SessionsError> {
        let login = LoginId::random();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.login_key(user, login))
            .arg(now_micros())
            .arg("PX")
            .arg(self.ttl_ms())
            .ignore();
        self.write_to_majority(&pipe).await?;
        Ok(login)
    }

    /// Whether `login` of `user` is live: started, not ended, not expired.
    pub async fn is_live(&self, user: UserId, login: LoginId) -> Result<bool, SessionsError> {
        let mut pipe = redis::pipe();
        pipe.get(self.login_key(user, login))
            .get(self.after_key(user));
        let answers: Vec<(Option<u64>, Option<u64>)> = self.nodes.query_majority(&pipe).await?;
        let live = answers
            .into_iter()
            .filter(|(started, after)| {
                started.is_some_and(|started| after.is_none_or(|after| started > after))
            })
            .count();
        Ok(live >= self.nodes.quorum())
    }

    /// Ends one login (logout).
    pub async fn end(&self, user: UserId, login: LoginId) -> Result<(), SessionsError> {
        let mut pipe = redis::pipe();
        pipe.del(self.login_key(user, login)).ignore();
        self.write_to_majority(&pipe).await
    }

    /// Ends every login of `user` started until now ("log out everywhere").
    pub async fn end_all(&self, user: UserId) -> Result<(), SessionsError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.after_key(user))
            .arg(now_micros())
            .arg("PX")
            .arg(self.ttl_ms())
            .ignore();
        self.write_to_majority(&pipe).await
    }

    fn failures_key(&self, what: &str) -> String {
        format!("{}:login-failures:{what}", self.prefix)
    }

    /// Counts one failed login of `what` (an account, an address); the
    /// count starts over `window` after the first failure.
    pub async fn count_failure(&self, what: &str, window: Duration) -> Result<(), SessionsError> {
        let key = self.failures_key(what);
        let mut pipe = redis::pipe();
        pipe.incr(&key, 1)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(window.as_millis() as u64)
            .arg("NX")
            .ignore();
        self.write_to_majority(&pipe).await
    }

    /// How many logins of `what` failed in the current window, and when
    /// the window ends (the highest count any server has).
    pub async fn failures(&self, what: &str) -> Result<(u64, Duration), SessionsError> {
        let key = self.failures_key(what);
        let mut pipe = redis::pipe();
        pipe.get(&key).pttl(&key);
        let answers: Vec<(Option<u64>, i64)> = self.nodes.query_majority(&pipe).await?;
        Ok(answers
            .into_iter()
            .map(|(count, ttl_ms)| {
                let left = Duration::from_millis(ttl_ms.max(0) as u64);
                (count.unwrap_or(0), left)
            })
            .max()
            .unwrap_or_default())
    }

    /// Forgets the failed logins of `what` (after a successful one).
    pub async fn clear_failures(&self, what: &str) -> Result<(), SessionsError> {
        let mut pipe = redis::pipe();
        pipe.del(self.failures_key(what)).ignore();
        self.write_to_majority(&pipe).await
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    async fn write_to_majority(&self, pipe: &redis::Pipeline) -> Result<(), SessionsError> {
        self.nodes.query_majority::<()>(pipe).await.map(|_| ())
    }
}

/// Microseconds since the Unix epoch: a login started right after a "log
/// out everywhere" must count as after it.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}
