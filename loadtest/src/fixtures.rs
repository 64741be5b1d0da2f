//! What the systems under test are configured with: the two nginx configs, the gateway's
//! DB-less YAML (keys appear only as HMACs under a pepper generated per run), key files for
//! wrk's rotation script.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use tollgate_core::{ApiKey, KeyEnv, KeyPepper, hex};

/// The upstream's response body: small and fixed.
pub const UPSTREAM_BODY: &str = "hello from the upstream\n";

/// Plan limits that never reject (cluster-wide through Redis in the full-stack scenarios).
pub const UNLIMITED_RATE: u32 = 10_000_000;
/// A quota no run can reach; hard, so the quota check does its full work.
pub const UNREACHABLE_QUOTA: u64 = 1_000_000_000_000;

/// nginx serving [`UPSTREAM_BODY`] with keep-alive, one worker, no access log.
pub fn upstream_nginx_conf(dir: &Path, port: u16, workers: u32) -> String {
    format!(
        "{common}
http {{
    access_log off;
{temp}    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            default_type text/plain;
            return 200 \"{body}\";
        }}
    }}
}}
",
        common = nginx_common(dir, "upstream", workers),
        temp = nginx_temp_paths(dir, "upstream"),
        body = UPSTREAM_BODY.replace('\n', "\\n"),
    )
}

/// nginx as a plain reverse proxy (baseline b): `proxy_pass` with a keep-alive upstream pool.
pub fn proxy_nginx_conf(dir: &Path, port: u16, upstream: u16, workers: u32) -> String {
    format!(
        "{common}
http {{
    access_log off;
{temp}    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
",
        common = nginx_common(dir, "nginx-proxy", workers),
        temp = nginx_temp_paths(dir, "nginx-proxy"),
    )
}

fn nginx_common(dir: &Path, name: &str, workers: u32) -> String {
    let dir = dir.display();
    format!(
        "daemon off;
master_process on;
worker_processes {workers};
pid {dir}/{name}.nginx.pid;
error_log {dir}/{name}.error.log warn;
events {{ worker_connections 4096; }}
"
    )
}

/// Temp paths inside the private directory rather than the system's.
fn nginx_temp_paths(dir: &Path, name: &str) -> String {
    let dir = dir.display();
    ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("    {t}_temp_path {dir}/{name}-temp/{t};\n"))
        .collect()
}

/// A tenant of the gateway's YAML.
#[derive(Debug)]
pub struct TenantSpec {
    /// Slug, also used in the tenant id.
    pub slug: String,
    /// Plan name.
    pub plan: &'static str,
    /// Its one API key.
    pub key: ApiKey,
}

/// A plan of the gateway's YAML.
#[derive(Debug, Clone, Copy)]
pub struct PlanSpec {
    /// Name.
    pub name: &'static str,
    /// Requests per second.
    pub rate: u32,
    /// Burst.
    pub burst: u32,
    /// Monthly quota (hard).
    pub quota: u64,
}

/// The plan of every tenant that must never be limited.
pub const UNLIMITED: PlanSpec = PlanSpec {
    name: "unlimited",
    rate: UNLIMITED_RATE,
    burst: UNLIMITED_RATE,
    quota: UNREACHABLE_QUOTA,
};

/// `count` tenants on `plan`, each with a fresh key.
pub fn tenants(prefix: &str, count: u32, plan: &'static str) -> anyhow::Result<Vec<TenantSpec>> {
    (0..count)
        .map(|i| {
            Ok(TenantSpec {
                slug: format!("{prefix}{i}"),
                plan,
                key: ApiKey::generate(KeyEnv::Test).context("generating a key")?,
            })
        })
        .collect()
}

/// The DB-less YAML: `plans`, and `tenants` each with one key and a catch-all route to
/// `upstream`. Tenant ids are derived from the position, so files are reproducible in shape.
pub fn gateway_yaml(
    plans: &[PlanSpec],
    tenants: &[&TenantSpec],
    pepper: &KeyPepper,
    upstream: u16,
) -> String {
    let mut out = String::from("plans:\n");
    for p in plans {
        let _ = writeln!(
            out,
            "  - name: {}\n    rate: {{ requests_per_second: {}, burst: {} }}\n    \
             quota: {{ included_requests: {}, cap: hard }}\n    \
             pricing: {{ currency: USD, base_fee_minor: 0, model: flat }}",
            p.name, p.rate, p.burst, p.quota
        );
    }
    out.push_str("tenants:\n");
    for (i, t) in tenants.iter().enumerate() {
        let _ = writeln!(
            out,
            "  - id: 0192e4c2-7f4e-7cc0-8000-{i:012x}\n    slug: {}\n    plan: {}\n    \
             keys:\n      - id: {}\n        hash: {}\n    \
             routes:\n      - path_prefix: /\n        upstreams: [\"127.0.0.1:{upstream}\"]",
            t.slug,
            t.plan,
            t.key.id().as_str(),
            hex::encode(t.key.hash(pepper).as_bytes()),
        );
    }
    out
}

/// wrk script: cycles through the keys in `keys_file` (one per line), one per request.
pub fn rotate_keys_lua(keys_file: &Path) -> String {
    format!(
        r#"-- Generated by tollgate-loadtest: one key per request, in file order, cycling.
local keys = {{}}
for line in io.lines("{file}") do keys[#keys + 1] = line end
local i = 0
request = function()
  i = i % #keys + 1
  return wrk.format(nil, nil, {{ ["Authorization"] = "Bearer " .. keys[i] }})
end
"#,
        file = keys_file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_yaml_names_every_tenant_key_and_plan() {
        let pepper = KeyPepper::from_hex(&"07".repeat(32)).unwrap();
        let list = tenants("t", 2, "unlimited").unwrap();
        let refs: Vec<&TenantSpec> = list.iter().collect();
        let yaml = gateway_yaml(&[UNLIMITED], &refs, &pepper, 58100);
        assert!(yaml.contains("slug: t1"));
        assert!(yaml.contains(list[1].key.id().as_str()));
        assert!(yaml.contains("requests_per_second: 10000000"));
        assert_eq!(yaml.matches("upstreams: [\"127.0.0.1:58100\"]").count(), 2);
    }
}
