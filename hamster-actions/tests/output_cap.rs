//! The output cap on a command printing 100 MB. Alone in its test binary, so that the
//! process's peak memory reflects this test only.
#![allow(clippy::unwrap_used)]

mod common;

use common::{builder, data, handler, pr_event};
use hamster_actions::ShellConfig;
use hamster_core::store::{RunStatus, Store};
use serde_json::json;
use std::sync::Arc;

/// Peak resident memory of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn output_of_100_mb_is_capped_to_head_and_tail() {
    let limit = 64 * 1024;
    let yaml = handler(
        "  - action: shell_command\n    name: flood\n    args: [\"echo START; head -c 100000000 /dev/zero | tr '\\\\0' a; echo; echo END\"]\n",
    );
    let kit = builder()
        .service(Arc::new(ShellConfig::default().output_limit(limit)))
        .handlers(yaml)
        .build()
        .await
        .unwrap();
    let before = peak_rss_kib();
    let runs = kit.run_event(&pr_event(json!({}), false)).await.unwrap();
    let grown_kib = peak_rss_kib().saturating_sub(before);
    let run = &runs[0];
    assert_eq!(run.status(), RunStatus::Succeeded, "{:?}", run.steps);
    let output = data(run, "flood", "output").as_str().unwrap();
    assert!(output.starts_with("START\naaaa"), "{}", &output[..20]);
    assert!(
        output.ends_with("aaaa\nEND\n"),
        "{}",
        &output[output.len() - 20..]
    );
    let omitted = 6 + 100_000_000 + 1 + 4 - limit;
    assert!(
        output.contains(&format!("[… {omitted} bytes omitted …]")),
        "no marker for {omitted} bytes"
    );
    assert!(output.len() <= limit + 64, "{} bytes kept", output.len());
    assert!(data(run, "flood", "stdout").as_str().unwrap().len() <= limit + 64);
    // The log holds the head and the tail too, not 100 MB.
    let log = kit
        .store()
        .read_log(run.run.id, &run.step("flood").unwrap().key, 0)
        .await
        .unwrap();
    assert!(
        log.text.len() <= limit + 256,
        "log of {} bytes",
        log.text.len()
    );
    assert!(log.text.starts_with("START\n") && log.text.ends_with("END\n"));
    assert!(grown_kib < 48 * 1024, "peak memory grew by {grown_kib} KiB");
}
