//! Processes the harness starts (pinned to CPUs with `taskset`), and what `/proc` says about
//! them: CPU time (utime + stime of every thread) and peak resident memory (`VmHWM`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A process started by the harness. Dropping it stops it (SIGTERM, then SIGKILL after 15 s)
/// and removes its pid file, so an error anywhere leaves nothing running.
#[derive(Debug)]
pub struct Managed {
    name: String,
    child: Child,
    pid_file: PathBuf,
}

impl Managed {
    /// Runs `program args…` under `taskset -c cpus` (taskset execs it: same pid), with `env`,
    /// output to `log`, and writes `dir/name.pid` (scripts/loadtest.sh stops leftovers by it).
    pub fn start(
        name: &str,
        cpus: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let mut command = Command::new("taskset");
        // Only the settings given here: a TOLLGATE_* variable from the caller's shell could
        // change what is measured.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOLLGATE_")) {
            command.env_remove(key);
        }
        let child = command
            .arg("-c")
            .arg(cpus)
            .arg(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let pid_file = dir.join(format!("{name}.pid"));
        std::fs::write(&pid_file, child.id().to_string())?;
        Ok(Self {
            name: name.to_owned(),
            child,
            pid_file,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}); see its log", self.name);
        }
        Ok(())
    }

    /// SIGTERM, wait up to 15 s, then SIGKILL.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of the whole process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))
}

/// Fields 14 and 15 of `/proc/<pid>/stat`, counted after the parenthesised command name
/// (which may itself contain spaces).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Parent pid, field 4 of `/proc/<pid>/stat`.
fn parent_pid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size (`VmHWM`) in KiB.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}

/// The children of `parent` (nginx's workers under its master).
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parent_pid(&s))
                == Some(parent)
        })
        .collect()
}

/// The pid in a pid file, if that process is alive.
pub fn pid_from_file(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// Waits until `check` succeeds, up to `limit`.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() > deadline {
            bail!("{what} not ready within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Fails if something already listens on `port`: a readiness check would talk to it.
pub fn ensure_free(port: u16) -> anyhow::Result<()> {
    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
        bail!(
            "port {port} is in use by another process; stop it or choose another LOADTEST_*_PORT"
        );
    }
    Ok(())
}

/// The body of `GET path` (connection closed by the server after it), or `None`.
pub fn http_get_body(port: u16, path: &str) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: loadtest\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// One HTTP/1.1 request on a fresh connection; the response's status code, or `None`.
pub fn http_status(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<u16> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: loadtest\r\nconnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    conn.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let n = conn.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces() {
        let stat = "1234 (tollgate proxy) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parent_pid(stat), Some(1));
    }
}
