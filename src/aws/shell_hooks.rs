//! The hook runner: `HookRunner` over `sh -c`, the contract's hook commands run on this
//! machine with their output passed through to envclone's stderr. Not AWS: no SDK client,
//! no IAM action. It sits with the AWS adapters only because `cloud_from` builds every real
//! adapter of `Cloud` in one place.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::*;

/// Hook commands run with `sh -c`, their output passed through to envclone's stderr.
pub struct ShellHooks;

#[async_trait]
impl HookRunner for ShellHooks {
    async fn run(
        &self,
        command: &str,
        env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(), String> {
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .envs(env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start `{command}`: {e}"))?;
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(r) => r.map_err(|e| format!("`{command}` failed: {e}"))?,
            Err(_) => {
                return Err(format!(
                    "`{command}` did not finish within {timeout:?} (killed)"
                ))
            }
        };
        if out.status.success() {
            Ok(())
        } else {
            let tail: String = String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" | ");
            Err(format!("`{command}` exited with {}: {tail}", out.status))
        }
    }
}
