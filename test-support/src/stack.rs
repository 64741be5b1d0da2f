//! Where the local services are: `.tollgate/stack.env`, overridden by the environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Connection details of the running stack.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Admin connection to PostgreSQL (database `postgres`).
    pub database_url: String,
    /// Redis URL.
    pub redis_url: String,
    /// Kafka bootstrap servers.
    pub kafka_brokers: String,
    /// Every `KEY=value` of the stack file, for values later issues add.
    pub values: HashMap<String, String>,
}

impl Stack {
    /// The stack, read once per process. Panics with instructions when it is not running.
    pub fn get() -> &'static Stack {
        static STACK: OnceLock<Stack> = OnceLock::new();
        STACK.get_or_init(Self::load)
    }

    fn load() -> Stack {
        let path = std::env::var_os("TOLLGATE_STACK_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".tollgate/stack.env"));
        let mut values = std::fs::read_to_string(&path)
            .map(|text| parse_env_file(&text))
            .unwrap_or_default();
        for key in ["DATABASE_URL", "REDIS_URL", "KAFKA_BROKERS"] {
            if let Ok(value) = std::env::var(key) {
                values.insert(key.to_owned(), value);
            }
        }
        let get = |key: &str| {
            values.get(key).cloned().unwrap_or_else(|| {
                panic!(
                    "{key} is not set and {} does not define it: start the local stack with \
                     `make services` (or `scripts/stack.sh up`)",
                    path.display()
                )
            })
        };
        Stack {
            database_url: get("DATABASE_URL"),
            redis_url: get("REDIS_URL"),
            kafka_brokers: get("KAFKA_BROKERS"),
            values,
        }
    }
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lives in the workspace")
}

/// Parses `KEY=value` lines; blank lines and `#` comments are skipped.
fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// A name unique to this process and call: `<prefix>_<pid>_<n>_<nanos>`, lower-case ASCII,
/// valid as a database, topic, group id or key prefix.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_are_parsed_and_comments_skipped() {
        let values = parse_env_file(
            "# stack\nDATABASE_URL=postgres://a:b@h:1/db?x=1\n\n REDIS_URL = redis://h \n",
        );
        assert_eq!(values["DATABASE_URL"], "postgres://a:b@h:1/db?x=1");
        assert_eq!(values["REDIS_URL"], "redis://h");
        assert_eq!(values.len(), 2);
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
