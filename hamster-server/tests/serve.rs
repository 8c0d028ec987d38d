//! `serve` over real TCP: answers, then shuts down gracefully, ending followed logs.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn raw_request(address: std::net::SocketAddr, request: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn serves_until_shutdown_and_ends_followed_logs() {
    let h = harness().await;
    let answer = send(
        &h.router,
        delivery(
            "pull_request",
            "d1",
            fixture("pull_request/opened.payload.json"),
        ),
    )
    .await;
    let run = run_id(&answer.json()["runs"][0]);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hamster_server::serve(listener, h.router.clone(), async {
        stopped.await.ok();
    }));

    let mut health = raw_request(
        address,
        "GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
    )
    .await;
    let mut text = String::new();
    health.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // A follow on a queued run never ends by itself.
    let mut follow = raw_request(
        address,
        &format!(
            "GET /api/runs/{run}/steps/0/log?follow=true HTTP/1.1\r\nhost: test\r\n\
             authorization: Bearer {TOKEN}\r\n\r\n"
        ),
    )
    .await;
    let mut first = [0u8; 12];
    follow.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("graceful shutdown does not wait for followed logs");
    result.unwrap().unwrap();
}
