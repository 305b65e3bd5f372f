//! The Redis servers of the `redis.urls` setting, each independent of the
//! others (not a cluster, not replicas): locks need a majority of them;
//! the registry writes to all and reads what answers.

use futures_util::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::SessionsError;
use crate::settings::RedisSettings;

/// One connection per Redis server, opened lazily and re-opened after a
/// failure, so that a server that is down at start-up joins when it comes
/// up.
#[derive(Clone)]
pub struct Nodes {
    nodes: Vec<Node>,
}

#[derive(Clone)]
struct Node {
    /// `host:port`, for logs (the URL may hold a password).
    name: String,
    conn: ConnectionManager,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        f.debug_struct("Nodes").field("servers", &names).finish()
    }
}

/// A client of the server at `url`. A `rediss://` URL is TLS, checked
/// against `ca` (PEM) when given, else against the system's CAs
/// (native-tls: OpenSSL).
fn client(url: &str, ca: Option<&Vec<u8>>) -> Result<redis::Client, redis::RedisError> {
    match ca {
        Some(ca) if url.starts_with("rediss://") => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        _ => redis::Client::open(url),
    }
}

impl Nodes {
    /// Connections to every server of `settings.urls`; none is contacted
    /// yet (see [`Nodes::ping`]).
    pub fn new(settings: &RedisSettings) -> Result<Self, SessionsError> {
        let ca = match settings.ca_file.as_str() {
            "" => None,
            path => Some(std::fs::read(path).map_err(|source| SessionsError::CaFile {
                path: path.to_owned(),
                source,
            })?),
        };
        let timeout = settings.timeout_ms;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let nodes = settings
            .urls
            .iter()
            .map(|url| {
                let client = client(url, ca.as_ref())?;
                let info = client.get_connection_info();
                let name = format!("{:?}", info.addr());
                let conn = ConnectionManager::new_lazy_with_config(client, config.clone())?;
                Ok(Node { name, conn })
            })
            .collect::<Result<_, redis::RedisError>>()?;
        Ok(Self { nodes })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many servers make a majority.
    pub fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// Runs `op` on every server at once; one result per server, in the
    /// order of the setting.
    pub async fn on_each<T, F, Fut>(&self, op: F) -> Vec<Result<T, redis::RedisError>>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        join_all(self.nodes.iter().map(|node| op(node.conn.clone()))).await
    }

    /// Runs `op` on each server of `which` (indexes), at once.
    pub async fn on<T, F, Fut>(&self, which: &[usize], op: F) -> Vec<Result<T, redis::RedisError>>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        join_all(which.iter().map(|&i| op(self.nodes[i].conn.clone()))).await
    }

    /// Runs `pipe` on every server at once; what those that answered said.
    pub async fn query_each<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Vec<T> {
        self.on_each(|mut conn| async move { pipe.query_async::<T>(&mut conn).await })
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// As [`Nodes::query_each`], and an error unless a majority answered.
    pub async fn query_majority<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<T>, SessionsError> {
        let answers = self.query_each(pipe).await;
        self.require_majority(answers.len())?;
        Ok(answers)
    }

    /// An error unless `up` servers are a majority.
    pub fn require_majority(&self, up: usize) -> Result<(), SessionsError> {
        if up >= self.quorum() {
            Ok(())
        } else {
            Err(SessionsError::NoQuorum {
                up,
                needed: self.quorum(),
            })
        }
    }

    /// The name of server `index`, for logs.
    pub fn name(&self, index: usize) -> &str {
        &self.nodes[index].name
    }

    /// Fails unless a majority of the servers answer a PING.
    pub async fn ping(&self) -> Result<(), SessionsError> {
        let answers = self
            .on_each(
                |mut conn| async move { redis::cmd("PING").query_async::<()>(&mut conn).await },
            )
            .await;
        let up = answers.iter().filter(|a| a.is_ok()).count();
        for (i, answer) in answers.iter().enumerate() {
            if let Err(err) = answer {
                tracing::warn!(redis = self.name(i), error = %err, "Redis does not answer");
            }
        }
        self.require_majority(up)
    }
}
