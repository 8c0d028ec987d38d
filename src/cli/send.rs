//! `hamster send`: posts a recorded delivery as GitHub would.

use crate::app::process::{EXIT_FAILED, EXIT_USAGE};
use clap::Args;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::PathBuf;
use std::process::ExitCode;

/// The flags of `hamster send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The webhook URL, e.g. http://127.0.0.1:8080/webhooks/github.
    #[arg(long)]
    url: String,
    /// The `X-GitHub-Event` header, e.g. `pull_request`.
    #[arg(long, value_name = "NAME")]
    event: String,
    /// The JSON body to send, byte for byte.
    #[arg(long, value_name = "FILE")]
    payload: PathBuf,
    /// Sign the body with this webhook secret (`X-Hub-Signature-256`); also
    /// HAMSTER_GITHUB_WEBHOOK_SECRET.
    #[arg(long, env = "HAMSTER_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The `X-GitHub-Delivery` header (default: a random UUID).
    #[arg(long, value_name = "ID")]
    delivery: Option<String>,
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` keyed with `secret`: GitHub's
/// `X-Hub-Signature-256`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        unreachable!("HMAC takes keys of any length");
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends the delivery and prints the response status and body. Exits 0 on a 2xx answer,
/// 1 on another answer or a network error, 2 when the payload cannot be read.
pub async fn run(args: SendArgs) -> ExitCode {
    let body = match tokio::fs::read(&args.payload).await {
        Ok(body) => body,
        Err(error) => {
            eprintln!(
                "error: cannot read the payload {}: {error}",
                args.payload.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let delivery = args
        .delivery
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let client = match reqwest::Client::builder()
        .user_agent("GitHub-Hookshot/hamster")
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: cannot create the HTTP client: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut request = client
        .post(&args.url)
        .header("X-GitHub-Event", &args.event)
        .header("X-GitHub-Delivery", &delivery)
        .header("Content-Type", "application/json");
    if let Some(secret) = &args.secret {
        request = request.header("X-Hub-Signature-256", signature(secret.as_bytes(), &body));
    }
    let response = match request.body(body).send().await {
        Ok(response) => response,
        Err(error) => {
            eprintln!(
                "error: could not send the delivery to {}: {error}",
                args.url
            );
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("delivery {delivery}: HTTP {status}");
    if !text.is_empty() {
        println!("{text}");
    }
    if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_githubs_test_vector() {
        assert_eq!(
            signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
