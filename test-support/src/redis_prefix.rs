//! A Redis key prefix per test; every key under it is deleted when the guard drops.

use crate::stack::{Stack, unique_name};

/// A key prefix (`tgtest_<pid>_<n>_<nanos>:`) owned by one test.
#[derive(Debug)]
pub struct TestRedis {
    prefix: String,
}

impl TestRedis {
    /// A new, unused prefix.
    pub fn new() -> Self {
        Self {
            prefix: format!("{}:", unique_name("tgtest")),
        }
    }

    /// The prefix, ending in `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stack's Redis URL.
    pub fn url(&self) -> &str {
        &Stack::get().redis_url
    }

    /// A multiplexed async connection.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("REDIS_URL is valid")
            .get_multiplexed_async_connection()
            .await
            .expect("connecting to Redis (is the stack up? `make services`)")
    }
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let url = self.url().to_owned();
        let pattern = format!("{}*", self.prefix);
        crate::block_on_side_thread(async move {
            let Ok(client) = redis::Client::open(url) else {
                return;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return;
            };
            let mut cursor: u64 = 0;
            loop {
                let scanned: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await;
                let Ok((next, keys)) = scanned else { return };
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> =
                        redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
                }
                if next == 0 {
                    return;
                }
                cursor = next;
            }
        });
    }
}
