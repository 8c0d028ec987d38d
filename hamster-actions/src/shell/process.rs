//! Running a child process in its own process group: output captured within limits and
//! streamed to the step log, the whole group killed on timeout, cancellation or drop.

use super::capture::{CappedOutput, complete_prefix_len, omission_marker};
use hamster_core::action::LogSink;
use hamster_core::redact::Redactor;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Size of one read from a pipe.
const READ_CHUNK: usize = 64 * 1024;
/// A partial line longer than this is sent to the log without waiting for its end.
const MAX_PENDING_LOG: usize = 8 * 1024;
/// How long to keep reading after the process group is gone: only a process that left the
/// group (`setsid`) can still hold the pipes open, and it must not hold the step forever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes kept of each of `output`, `stdout` and `stderr`.
    pub(crate) output: usize,
    /// Kill the command after this long.
    pub(crate) timeout: Option<Duration>,
}

/// Why the command was stopped before it finished on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// It ran longer than its timeout.
    TimedOut(Duration),
    /// The run was cancelled.
    Cancelled,
}

/// What a finished command left.
#[derive(Debug)]
pub(crate) struct Finished {
    /// stdout and stderr interleaved in the order they were read.
    pub(crate) output: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// `None` when the process was killed by a signal (or could not be waited for).
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) stopped: Option<Stopped>,
}

/// Kills a process group with SIGKILL when dropped, unless released.
///
/// The engine enforces timeouts and cancellation by dropping the action's future; this is
/// what makes the command and everything it started (grandchildren included) die then.
#[derive(Debug)]
struct ProcessGroup {
    id: Option<Pid>,
}

impl ProcessGroup {
    fn new(leader: Option<u32>) -> Self {
        Self {
            id: leader
                .and_then(|pid| i32::try_from(pid).ok())
                .map(Pid::from_raw),
        }
    }

    fn kill(&self) {
        let Some(id) = self.id else { return };
        match killpg(id, Signal::SIGKILL) {
            // ESRCH: everyone in the group is already gone.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(error) => {
                tracing::warn!(process_group = id.as_raw(), %error, "could not kill the command's process group");
            }
        }
    }

    /// Kills what is left of the group and forgets it, so that a later drop cannot signal
    /// an unrelated group that reused the id.
    fn kill_and_release(&mut self) {
        self.kill();
        self.id = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Output so far: bounded captures, and the step log fed line by line.
struct Outputs<'a> {
    combined: CappedOutput,
    stdout: CappedOutput,
    stderr: CappedOutput,
    log: &'a dyn LogSink,
    redactor: &'a Redactor,
    pending_stdout: Vec<u8>,
    pending_stderr: Vec<u8>,
    log_budget: usize,
    logged: usize,
    log_suppressed: bool,
}

impl<'a> Outputs<'a> {
    fn new(limit: usize, log: &'a dyn LogSink, redactor: &'a Redactor) -> Self {
        Self {
            combined: CappedOutput::new(limit),
            stdout: CappedOutput::new(limit),
            stderr: CappedOutput::new(limit),
            log,
            redactor,
            pending_stdout: Vec::new(),
            pending_stderr: Vec::new(),
            // The log gets the head as it comes and the tail at the end, like `output`.
            log_budget: limit.div_ceil(2),
            logged: 0,
            log_suppressed: false,
        }
    }

    async fn record(&mut self, stream: Stream, bytes: &[u8]) {
        self.combined.push(bytes);
        let pending = match stream {
            Stream::Stdout => {
                self.stdout.push(bytes);
                &mut self.pending_stdout
            }
            Stream::Stderr => {
                self.stderr.push(bytes);
                &mut self.pending_stderr
            }
        };
        if self.log_suppressed {
            return;
        }
        pending.extend_from_slice(bytes);
        // Whole lines go to the log, so that a secret is not split across two appends
        // (and escapes redaction); very long partial lines go when they grow too big.
        let ready = match pending.iter().rposition(|byte| *byte == b'\n') {
            Some(newline) => newline + 1,
            None if pending.len() >= MAX_PENDING_LOG => complete_prefix_len(pending),
            None => return,
        };
        let chunk: Vec<u8> = pending.drain(..ready).collect();
        self.append_log(&chunk).await;
    }

    async fn append_log(&mut self, chunk: &[u8]) {
        if self.log_suppressed || chunk.is_empty() {
            return;
        }
        let room = self.log_budget.saturating_sub(self.logged);
        let shown = &chunk[..chunk.len().min(room)];
        self.logged += shown.len();
        let mut text = String::from_utf8_lossy(shown).into_owned();
        if shown.len() < chunk.len() {
            self.log_suppressed = true;
            self.pending_stdout = Vec::new();
            self.pending_stderr = Vec::new();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("[… the log shows the rest of the output when the command ends …]\n");
        }
        self.log.append(&self.redactor.redact(&text)).await;
    }

    async fn finish(mut self) -> (String, String, String) {
        let stdout_rest = std::mem::take(&mut self.pending_stdout);
        let stderr_rest = std::mem::take(&mut self.pending_stderr);
        self.append_log(&stdout_rest).await;
        self.append_log(&stderr_rest).await;
        if self.log_suppressed {
            let tail = format!(
                "{}\n{}",
                omission_marker(self.combined.omitted()),
                self.combined.tail_text()
            );
            self.log.append(&self.redactor.redact(&tail)).await;
        }
        (
            self.combined.into_text(),
            self.stdout.into_text(),
            self.stderr.into_text(),
        )
    }
}

/// Reads from a pipe, or waits forever once it is closed (so `select!` skips it).
async fn read_some<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buffer: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buffer).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Spawns `command` in a new process group and runs it to its end (or its timeout, or
/// cancellation), capturing its output within `limits` and streaming it to `log`.
///
/// When the command exits, whatever it left running in its process group is killed.
pub(crate) async fn run(
    mut command: tokio::process::Command,
    limits: Limits,
    log: &dyn LogSink,
    redactor: &Redactor,
    cancel: &CancellationToken,
) -> std::io::Result<Finished> {
    command
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let mut group = ProcessGroup::new(child.id());
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut stdout_buffer = vec![0; READ_CHUNK];
    let mut stderr_buffer = vec![0; READ_CHUNK];
    let mut outputs = Outputs::new(limits.output, log, redactor);
    let deadline = limits.timeout.map(|timeout| Instant::now() + timeout);
    let mut drain_deadline: Option<Instant> = None;
    let mut status: Option<ExitStatus> = None;
    let mut stopped: Option<Stopped> = None;

    while status.is_none() || stdout.is_some() || stderr.is_some() {
        tokio::select! {
            read = read_some(&mut stdout, &mut stdout_buffer) => match read {
                Ok(0) | Err(_) => stdout = None,
                Ok(n) => outputs.record(Stream::Stdout, &stdout_buffer[..n]).await,
            },
            read = read_some(&mut stderr, &mut stderr_buffer) => match read {
                Ok(0) | Err(_) => stderr = None,
                Ok(n) => outputs.record(Stream::Stderr, &stderr_buffer[..n]).await,
            },
            exit = child.wait(), if status.is_none() => {
                status = Some(exit?);
                // Background processes the command left behind would hold the pipes open
                // and outlive the step.
                group.kill_and_release();
                drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
            },
            () = sleep_until(deadline), if stopped.is_none() && status.is_none() => {
                stopped = limits.timeout.map(Stopped::TimedOut);
                group.kill();
                drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
            },
            () = cancel.cancelled(), if stopped.is_none() && status.is_none() => {
                stopped = Some(Stopped::Cancelled);
                group.kill();
                drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
            },
            () = sleep_until(drain_deadline) => {
                tracing::warn!("a process that left the command's process group still holds its output open; stopped reading");
                break;
            },
        }
    }
    if status.is_none() {
        status = child.try_wait()?;
    }
    drop(group);
    let (output, stdout, stderr) = outputs.finish().await;
    Ok(Finished {
        output,
        stdout,
        stderr,
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stopped,
    })
}
