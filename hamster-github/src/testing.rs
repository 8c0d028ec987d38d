//! Testing handlers against recorded webhook deliveries, in-process, with no network
//! (feature `testing`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hamster_core::testing::TestKit;
//! use hamster_github::testing::{RecordedDelivery, WebhookTestKit};
//! use hamster_github::{GitHub, RecordingGitHub};
//! use std::sync::Arc;
//!
//! let github = Arc::new(RecordingGitHub::new());
//! let kit = TestKit::builder()
//!     .service::<dyn GitHub>(github.clone())
//!     .handlers_file("handlers/welcome.yaml")
//!     .build()
//!     .await?;
//! let delivery = RecordedDelivery::from_file("pull_request", "tests/fixtures/opened.json")?;
//! let runs = kit.run_webhook(&delivery).await?;
//! assert_eq!(github.calls()[0].body["body"], "Welcome @Codertocat!");
//! # Ok(()) }
//! ```

use crate::webhook::{
    DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, WebhookError, WebhookParser,
};
use async_trait::async_trait;
use hamster_core::engine::Dispatch;
use hamster_core::store::DeliveryRecord;
use hamster_core::testing::{RunReport, TestKit, TestKitError};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use std::path::Path;

/// A webhook delivery as GitHub sends it: headers and the raw body.
#[derive(Debug, Clone)]
pub struct RecordedDelivery {
    /// The request headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Vec<u8>,
}

impl RecordedDelivery {
    /// A delivery of `event` (the `X-GitHub-Event` value, e.g. `pull_request`) carrying `body`,
    /// with a fresh delivery id.
    pub fn new(event: &str, body: impl Into<Vec<u8>>) -> Self {
        let mut headers = HeaderMap::new();
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(value) = HeaderValue::from_str(event) {
            headers.insert(EVENT_HEADER, value);
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            headers.insert(DELIVERY_HEADER, value);
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static("GitHub-Hookshot/hamster-test"),
        );
        Self {
            headers,
            body: body.into(),
        }
    }

    /// A delivery whose body is the file at `path` (a payload saved from GitHub).
    pub fn from_file(event: &str, path: impl AsRef<Path>) -> std::io::Result<Self> {
        Ok(Self::new(event, std::fs::read(path)?))
    }

    /// Sets the delivery id (`X-GitHub-Delivery`).
    pub fn with_delivery_id(mut self, id: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(id) {
            self.headers.insert(DELIVERY_HEADER, value);
        }
        self
    }

    /// Signs the body with `secret`, as GitHub does (`X-Hub-Signature-256`).
    pub fn signed(mut self, secret: &[u8]) -> Self {
        self.headers
            .insert(SIGNATURE_HEADER, signature_header(secret, &self.body));
        self
    }
}

/// The `X-Hub-Signature-256` value for `body` signed with `secret`.
pub fn signature_header(secret: &[u8], body: &[u8]) -> HeaderValue {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    let value = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    HeaderValue::from_str(&value).unwrap_or_else(|_| unreachable!("hex is a valid header value"))
}

/// Why a recorded delivery could not be run.
#[derive(Debug, thiserror::Error)]
pub enum WebhookTestError {
    /// The delivery was refused by the parser.
    #[error("the recorded delivery was refused: {0}")]
    Webhook(#[from] WebhookError),
    /// The kit failed.
    #[error(transparent)]
    Kit(#[from] TestKitError),
}

/// Runs recorded deliveries through a [`TestKit`].
#[async_trait]
pub trait WebhookTestKit {
    /// Parses the delivery as the server would (no signature check), records it, runs every
    /// matching pipeline to completion, and reports the runs.
    async fn run_webhook(
        &self,
        delivery: &RecordedDelivery,
    ) -> Result<Vec<RunReport>, WebhookTestError>;

    /// Like [`run_webhook`](Self::run_webhook), also returning what dispatch said (the
    /// handlers that did not match, and why).
    async fn run_webhook_with_dispatch(
        &self,
        delivery: &RecordedDelivery,
    ) -> Result<(Vec<RunReport>, Dispatch), WebhookTestError>;
}

#[async_trait]
impl WebhookTestKit for TestKit {
    async fn run_webhook(
        &self,
        delivery: &RecordedDelivery,
    ) -> Result<Vec<RunReport>, WebhookTestError> {
        Ok(self.run_webhook_with_dispatch(delivery).await?.0)
    }

    async fn run_webhook_with_dispatch(
        &self,
        delivery: &RecordedDelivery,
    ) -> Result<(Vec<RunReport>, Dispatch), WebhookTestError> {
        // As the server reads it: the payload left in the body unless criteria read it.
        let parsed =
            WebhookParser::new(None).parse_for_intake(&delivery.headers, &delivery.body)?;
        let record = DeliveryRecord {
            id: parsed.id.clone(),
            event: parsed.event.clone(),
            received_at: chrono::Utc::now(),
            headers: delivery
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect(),
            body: delivery.body.clone(),
            run_ids: Vec::new(),
            body_is_payload: parsed.body_is_payload,
        };
        let events = parsed.events;
        Ok(self.run_events(&events, Some(record)).await?)
    }
}
