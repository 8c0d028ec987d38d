//! Proxy handling of `OctocrabGitHub`: `HTTPS_PROXY`/`HTTP_PROXY` are used, `NO_PROXY`
//! bypasses them. The "proxy" and the HTTPS "target" are bare TCP listeners that record
//! what reaches them, so no TLS server is needed.

use hamster_github::client::{
    GitHub, GitHubConfig, GitHubError, OctocrabGitHub, ProxySettings, RepoRef, RetryPolicy,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A listener recording the first line of every request it receives, and answering with
/// `response` (raw HTTP/1.1 bytes).
struct FakeEndpoint {
    address: String,
    first_lines: Arc<Mutex<Vec<String>>>,
}

impl FakeEndpoint {
    async fn start(response: impl Into<String>) -> Self {
        let response: Arc<str> = response.into().into();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let first_lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&first_lines);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                let response = Arc::clone(&response);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    let read = socket.read(&mut buffer).await.unwrap_or(0);
                    let text = String::from_utf8_lossy(&buffer[..read]);
                    // A TLS ClientHello is binary: record that a connection came anyway.
                    let line = text.lines().next().unwrap_or_default().to_owned();
                    seen.lock().await.push(line);
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            address,
            first_lines,
        }
    }

    async fn first_lines(&self) -> Vec<String> {
        self.first_lines.lock().await.clone()
    }
}

fn client(base_url: &str, proxy: ProxySettings) -> OctocrabGitHub {
    let config = GitHubConfig::builder()
        .token("ghp_proxy_test_token")
        .base_url(base_url)
        .proxy(proxy)
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(3))
        .retry(RetryPolicy::no_retries())
        .build()
        .expect("valid config");
    OctocrabGitHub::new(&config).expect("client")
}

const PROXY_REFUSES: &str =
    "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

#[tokio::test]
async fn https_proxy_tunnels_unless_no_proxy_covers_the_host() {
    let proxy = FakeEndpoint::start(PROXY_REFUSES).await;
    let target = FakeEndpoint::start("").await;
    let base_url = format!("https://{}", target.address);
    let repo = RepoRef::new("o", "r");

    let proxied = client(
        &base_url,
        ProxySettings {
            https_proxy: Some(format!("http://{}", proxy.address)),
            ..ProxySettings::default()
        },
    );
    let error = proxied
        .get_pull_request(&repo, 1)
        .await
        .expect_err("the fake proxy refuses the tunnel");
    assert!(matches!(error, GitHubError::Unavailable { .. }), "{error}");
    assert_eq!(
        proxy.first_lines().await,
        [format!("CONNECT {} HTTP/1.1", target.address)]
    );
    assert!(
        target.first_lines().await.is_empty(),
        "went around the proxy"
    );

    let bypassing = client(
        &base_url,
        ProxySettings {
            https_proxy: Some(format!("http://{}", proxy.address)),
            no_proxy: Some("example.com, 127.0.0.1".into()),
            ..ProxySettings::default()
        },
    );
    let error = bypassing
        .get_pull_request(&repo, 1)
        .await
        .expect_err("the fake target speaks no TLS");
    assert!(matches!(error, GitHubError::Unavailable { .. }), "{error}");
    assert_eq!(proxy.first_lines().await.len(), 1, "NO_PROXY was ignored");
    assert_eq!(target.first_lines().await.len(), 1, "no direct connection");
}

#[tokio::test]
async fn http_proxy_forwards_unless_no_proxy_covers_the_host() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/pulls/1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"number": 1, "via": "direct"})),
        )
        .mount(&github)
        .await;
    let proxied_body = json!({"number": 1, "via": "proxy"}).to_string();
    let proxy = FakeEndpoint::start(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{proxied_body}",
        proxied_body.len()
    ))
    .await;
    let repo = RepoRef::new("o", "r");
    let proxy_url = format!("http://{}", proxy.address);

    let proxied = client(
        &github.uri(),
        ProxySettings {
            http_proxy: Some(proxy_url.clone()),
            ..ProxySettings::default()
        },
    );
    let pr = proxied
        .get_pull_request(&repo, 1)
        .await
        .expect("through the proxy");
    assert_eq!(pr, json!({"number": 1, "via": "proxy"}));
    assert_eq!(
        proxy.first_lines().await,
        [format!("GET {}/repos/o/r/pulls/1 HTTP/1.1", github.uri())]
    );

    let direct = client(
        &github.uri(),
        ProxySettings {
            http_proxy: Some(proxy_url),
            no_proxy: Some("127.0.0.1".into()),
            ..ProxySettings::default()
        },
    );
    let pr = direct.get_pull_request(&repo, 1).await.expect("direct");
    assert_eq!(pr, json!({"number": 1, "via": "direct"}));
    assert_eq!(proxy.first_lines().await.len(), 1, "NO_PROXY was ignored");
}

#[test]
fn proxy_settings_come_from_the_usual_variables() {
    let config = GitHubConfig::from_lookup(|name| match name {
        "HAMSTER_GITHUB_API_TOKEN" => Some("ghp_x".into()),
        "https_proxy" => Some("http://proxy.internal:3128".into()),
        "no_proxy" => Some("github.internal".into()),
        _ => None,
    })
    .expect("valid");
    assert_eq!(
        config.proxy(),
        &ProxySettings {
            https_proxy: Some("http://proxy.internal:3128".into()),
            http_proxy: None,
            no_proxy: Some("github.internal".into()),
        }
    );
}
