//! The load generators: wrk (closed loop, the highest throughput) and oha (open loop at a
//! fixed rate with latency correction, for percentiles free of coordinated omission). Both
//! run pinned to the client CPUs; their raw output is kept beside the results' work files.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// What a request carries: nothing, one key, or keys rotated by a wrk Lua script (oha cannot
/// rotate headers, so it then uses `fixed`).
#[derive(Debug, Clone)]
pub enum Credentials {
    /// No credential (the baselines).
    None,
    /// One key on every request.
    Key(String),
    /// wrk rotates the keys of a file (script at `lua`); oha sends `oha_key`.
    Rotated {
        /// The wrk script.
        lua: PathBuf,
        /// oha's one key.
        oha_key: String,
    },
}

/// wrk's summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WrkResult {
    /// Completed requests.
    pub requests: u64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Responses that were not 2xx or 3xx.
    pub non_2xx: u64,
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
}

/// oha's summary at a fixed rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OhaResult {
    /// Offered rate (requests per second).
    pub target_rate: u32,
    /// Achieved rate.
    pub requests_per_second: f64,
    /// Completed requests.
    pub requests: u64,
    /// Latency percentiles in milliseconds (latency-corrected).
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p99_9_ms: f64,
    /// 2xx responses.
    pub status_2xx: u64,
    /// 429 responses.
    pub status_429: u64,
    /// Any other status.
    pub status_other: u64,
    /// Requests that got no response (errors, cut off at the deadline).
    pub errors: u64,
}

/// Runs wrk for `seconds` against `url`; raw output to `raw`.
pub fn run_wrk(
    cpus: &str,
    url: &str,
    connections: u32,
    seconds: u32,
    credentials: &Credentials,
    raw: &Path,
) -> anyhow::Result<WrkResult> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus, "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout=5s");
    match credentials {
        Credentials::None => {}
        Credentials::Key(key) => {
            cmd.arg("-H").arg(format!("Authorization: Bearer {key}"));
        }
        Credentials::Rotated { lua, .. } => {
            cmd.arg("-s").arg(lua);
        }
    }
    let out = cmd.arg(url).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(
        raw,
        format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
    )?;
    if !out.status.success() {
        bail!("wrk failed ({}); see {}", out.status, raw.display());
    }
    parse_wrk(&text).with_context(|| format!("parsing wrk output in {}", raw.display()))
}

/// Parses wrk's text summary.
pub fn parse_wrk(text: &str) -> Option<WrkResult> {
    let mut result = WrkResult::default();
    let mut seen_rps = false;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            result.requests_per_second = v.trim().parse().ok()?;
            seen_rps = true;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            result.non_2xx = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            result.socket_errors = v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if line.contains(" requests in ") {
            result.requests = line.split_whitespace().next()?.parse().ok()?;
        }
    }
    seen_rps.then_some(result)
}

/// Runs oha at `rate` for `seconds` with latency correction; raw JSON to `raw`.
#[allow(clippy::too_many_arguments)]
pub fn run_oha(
    oha: &Path,
    cpus: &str,
    url: &str,
    connections: u32,
    seconds: u32,
    rate: u32,
    credentials: &Credentials,
    raw: &Path,
) -> anyhow::Result<OhaResult> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus])
        .arg(oha)
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
        ])
        .args(["--worker-threads", "1"])
        .arg("-c")
        .arg(connections.to_string())
        .arg("-z")
        .arg(format!("{seconds}s"))
        .arg("-q")
        .arg(rate.to_string());
    match credentials {
        Credentials::None => {}
        Credentials::Key(key) | Credentials::Rotated { oha_key: key, .. } => {
            cmd.arg("-H").arg(format!("Authorization: Bearer {key}"));
        }
    }
    let out = cmd.arg(url).output().context("running oha")?;
    std::fs::write(raw, &out.stdout)?;
    if !out.status.success() {
        bail!(
            "oha failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_oha(&text, rate).with_context(|| format!("parsing oha JSON in {}", raw.display()))
}

/// Parses oha's `--output-format json`.
pub fn parse_oha(text: &str, target_rate: u32) -> anyhow::Result<OhaResult> {
    let json: serde_json::Value = serde_json::from_str(text)?;
    let seconds = |v: &serde_json::Value| v.as_f64().map_or(f64::NAN, |s| s * 1000.0);
    let percentiles = &json["latencyPercentiles"];
    let mut result = OhaResult {
        target_rate,
        requests_per_second: json["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_ms: seconds(&percentiles["p50"]),
        p99_ms: seconds(&percentiles["p99"]),
        p99_9_ms: seconds(&percentiles["p99.9"]),
        ..OhaResult::default()
    };
    if let Some(codes) = json["statusCodeDistribution"].as_object() {
        for (code, count) in codes {
            let count = count.as_u64().unwrap_or(0);
            result.requests += count;
            match code.as_str() {
                c if c.starts_with('2') => result.status_2xx += count,
                "429" => result.status_429 += count,
                _ => result.status_other += count,
            }
        }
    }
    if let Some(errors) = json["errorDistribution"].as_object() {
        result.errors = errors.values().filter_map(serde_json::Value::as_u64).sum();
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summary_is_parsed() {
        let text = "Running 10s test @ http://127.0.0.1:58101/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   620.17us  110.09us   4.93ms   88.24%
    Req/Sec    51.21k     1.02k   52.76k    71.00%
  509612 requests in 10.00s, 80.19MB read
  Non-2xx or 3xx responses: 458650
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  50958.01
Transfer/sec:      8.02MB
";
        let r = parse_wrk(text).unwrap();
        assert_eq!(r.requests, 509_612);
        assert_eq!(r.non_2xx, 458_650);
        assert_eq!(r.socket_errors, 3);
        assert!((r.requests_per_second - 50_958.01).abs() < 1e-6);
    }

    #[test]
    fn oha_json_is_parsed_into_milliseconds_and_status_classes() {
        let text = r#"{"summary":{"requestsPerSec":999.5},
            "latencyPercentiles":{"p50":0.0005,"p99":0.002,"p99.9":0.004},
            "statusCodeDistribution":{"200":100,"429":900,"503":1},
            "errorDistribution":{"aborted due to deadline":3}}"#;
        let r = parse_oha(text, 1000).unwrap();
        assert_eq!((r.status_2xx, r.status_429, r.status_other), (100, 900, 1));
        assert_eq!((r.requests, r.errors), (1001, 3));
        assert!((r.p99_ms - 2.0).abs() < 1e-9);
    }
}
