//! Verify + parse of a real ~28 KB `pull_request.opened` delivery: whole (`parse`, for
//! replays and re-processing) and as intake reads it (`parse_for_intake`).
//!
//! `cargo bench -p hamster-github --bench webhook`

#![allow(clippy::unwrap_used)] // Tests and benches: a panic is the failure report.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hamster_core::event::Event;
use hamster_github::webhook::WebhookParser;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use std::hint::black_box;
use std::path::Path;

const SECRET: &[u8] = b"bench-secret-of-realistic-length-0123456789";

fn fixture(relative: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/github-webhooks")
        .join(relative);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn signed_headers(event: &str, body: &[u8]) -> HeaderMap {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut headers = HeaderMap::new();
    headers.insert("x-github-event", HeaderValue::from_str(event).unwrap());
    headers.insert(
        "x-github-delivery",
        HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    );
    headers.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&signature).unwrap(),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers
}

fn bench(c: &mut Criterion) {
    let parser = WebhookParser::new(Some(SECRET));
    let mut group = c.benchmark_group("webhook");
    for (event, file) in [
        ("pull_request", "pull_request/opened.payload.json"),
        ("push", "push/payload.json"),
        ("issue_comment", "issue_comment/created.payload.json"),
    ] {
        let body = fixture(file);
        let headers = signed_headers(event, &body);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new(
                "verify_and_parse",
                format!("{event} ({} bytes)", body.len()),
            ),
            &body,
            |b, body| b.iter(|| parser.parse(black_box(&headers), black_box(body)).unwrap()),
        );
        group.bench_with_input(
            BenchmarkId::new(
                "verify_and_parse_for_intake",
                format!("{event} ({} bytes)", body.len()),
            ),
            &body,
            |b, body| {
                b.iter(|| {
                    parser
                        .parse_for_intake(black_box(&headers), black_box(body))
                        .unwrap()
                })
            },
        );
    }
    let body = fixture("pull_request/opened.payload.json");
    let headers = signed_headers("pull_request", &body);
    // The floors under verify_and_parse: hashing the body and building a `Value`.
    let signature = headers["x-hub-signature-256"].to_str().unwrap().to_owned();
    group.bench_function("baseline/hmac_sha256/pull_request", |b| {
        b.iter(|| {
            hamster_github::webhook::verify_signature(SECRET, black_box(&body), Some(&signature))
                .unwrap()
        })
    });
    group.bench_function("baseline/serde_json_value/pull_request", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
    });
    let delivery = parser.parse(&headers, &body).unwrap();
    let event = &delivery.events[0];
    group.bench_function("source_fields/pull_request", |b| {
        b.iter(|| black_box(event.source().fields()))
    });
    group.bench_function("to_record/pull_request", |b| {
        b.iter(|| black_box(event.to_record()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
