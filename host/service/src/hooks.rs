//! Service hooks (GOST's `preUp`, `postUp`, `preDown`, `postDown`): lists of
//! commands run in order around start and stop, each split into words and
//! executed without a shell.

use std::process::Stdio;

use gost_core::metadata::{Metadata, MetadataError};

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub pre_up: Vec<String>,
    pub post_up: Vec<String>,
    pub pre_down: Vec<String>,
    pub post_down: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{phase} command `{cmd}`: cannot split into words")]
    Split { phase: &'static str, cmd: String },
    #[error("{phase} command `{cmd}`: {source}")]
    Spawn {
        phase: &'static str,
        cmd: String,
        source: std::io::Error,
    },
    #[error("{phase} command `{cmd}` exited with {status}")]
    Exit {
        phase: &'static str,
        cmd: String,
        status: std::process::ExitStatus,
    },
}

impl Hooks {
    pub fn from_metadata(md: &Metadata) -> Result<Self, MetadataError> {
        Ok(Hooks {
            pre_up: md.get_strings("preUp")?.unwrap_or_default(),
            post_up: md.get_strings("postUp")?.unwrap_or_default(),
            pre_down: md.get_strings("preDown")?.unwrap_or_default(),
            post_down: md.get_strings("postDown")?.unwrap_or_default(),
        })
    }
}

/// Runs the commands of one phase in order and stops at the first failure,
/// so a later command never runs on a half-done setup.
pub async fn run(service: &str, phase: &'static str, cmds: &[String]) -> Result<(), HookError> {
    for raw in cmds {
        let cmd = raw.trim();
        if cmd.is_empty() {
            continue;
        }
        tracing::info!(service, phase, cmd, "running hook");
        let words =
            shlex::split(cmd)
                .filter(|w| !w.is_empty())
                .ok_or_else(|| HookError::Split {
                    phase,
                    cmd: cmd.to_string(),
                })?;
        let mut command = tokio::process::Command::new(&words[0]);
        command.args(&words[1..]).stdin(Stdio::null());
        gost_core::nofile::restore_for_child(&mut command);
        let status = command.status().await.map_err(|source| HookError::Spawn {
            phase,
            cmd: cmd.to_string(),
            source,
        })?;
        if !status.success() {
            return Err(HookError::Exit {
                phase,
                cmd: cmd.to_string(),
                status,
            });
        }
    }
    Ok(())
}
