//! `promtool check metrics` (scripts/promtool.sh, Debian's promtool unpacked into the cache)
//! on a service's `/metrics` body, so every service's exposition is linted in `make test`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on `exposition` and panics with promtool's findings unless
/// it passes cleanly (exit 0 and nothing reported).
pub fn check_metrics(exposition: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/promtool.sh");
    let mut child = Command::new(&script)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(exposition.as_bytes())
        .expect("writing to promtool");
    let output = child.wait_with_output().expect("waiting for promtool");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool check metrics failed ({}):\n{findings}\non:\n{exposition}",
        output.status
    );
}
