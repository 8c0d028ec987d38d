//! Webhook intake against the real payloads in `tests/fixtures/github-webhooks`.

#![allow(clippy::unwrap_used)] // Tests and benches: a panic is the failure report.

use async_trait::async_trait;
use hamster_core::event::{Event, EventRecord};
use hamster_core::event::{SourceEnricher, SourceRecord};
use hamster_github::client::{
    CheckRunUpdate, CommitStatus, GitHub, GitHubError, NewCheckRun, ReactionTarget, RepoRef,
};
use hamster_github::webhook::{
    Delivery, GitHubSource, PULL_REQUEST_DEFERRED_FIELDS, PullRequestEnricher, WebhookError,
    WebhookParser, parse_delivery, verify_signature,
};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SECRET: &[u8] = b"a webhook secret 8f2c";
const DELIVERY_ID: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/github-webhooks")
}

fn fixture(relative: &str) -> Vec<u8> {
    let path = fixtures_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Headers as GitHub sends them (mixed-case names, as over HTTP/1.1).
fn headers(event: &str, signature: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut set = |name: &str, value: &str| {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    };
    set("X-GitHub-Event", event);
    set("X-GitHub-Delivery", DELIVERY_ID);
    set("X-GitHub-Hook-ID", "292430182");
    set("Content-Type", "application/json");
    set("User-Agent", "GitHub-Hookshot/044aadd");
    if let Some(signature) = signature {
        set("X-Hub-Signature-256", signature);
    }
    headers
}

fn deliver(event: &str, relative: &str) -> Delivery {
    let body = fixture(relative);
    parse_delivery(&headers(event, Some(&sign(&body))), &body, Some(SECRET))
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
}

fn only_event(delivery: &Delivery) -> &hamster_github::GitHubEvent {
    assert_eq!(delivery.events.len(), 1, "{delivery:?}");
    &delivery.events[0]
}

// ---------------------------------------------------------------------------------------
// Every fixture

/// The source kind GitHub's events map to, per fixture folder (`None`: a ping, no event).
fn expected_kind(folder: &str, file: &str) -> Option<&'static str> {
    // The only issue_comment fixture on a pull request (see SOURCE.md).
    if folder == "issue_comment" && file.contains("on-pull-request") {
        return Some("pull_request");
    }
    Some(match folder {
        "pull_request"
        | "pull_request_review"
        | "pull_request_review_comment"
        | "pull_request_review_thread" => "pull_request",
        "issues" | "issue_comment" => "issue",
        "push" | "status" | "check_suite" | "check_run" => "commit",
        "create"
        | "delete"
        | "installation"
        | "installation_repositories"
        | "merge_group"
        | "release"
        | "workflow_job"
        | "workflow_run" => "repository",
        "ping" => return None,
        other => panic!("no expected kind for fixture folder {other}: add it to the table"),
    })
}

fn all_fixtures() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut folders = vec![fixtures_dir()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                let event = path
                    .parent()
                    .and_then(Path::file_name)
                    .and_then(|name| name.to_str())
                    .unwrap()
                    .to_owned();
                found.push((event, path));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_fixture_parses_with_its_name_and_kind() {
    let fixtures = all_fixtures();
    assert_eq!(fixtures.len(), 176, "SOURCE.md counts 176 payloads");
    let parser = WebhookParser::new(Some(SECRET));
    for (folder, path) in &fixtures {
        let file = path.file_name().unwrap().to_str().unwrap();
        let body = std::fs::read(path).unwrap();
        let delivery = parser
            .parse(&headers(folder, Some(&sign(&body))), &body)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(delivery.id, DELIVERY_ID);
        assert_eq!(delivery.event, *folder);
        assert_eq!(delivery.hook_id.as_deref(), Some("292430182"));

        // The test's own reading of the payload, independent of the parser.
        let raw: Value = serde_json::from_slice(&body).unwrap();
        let Some(kind) = expected_kind(folder, file) else {
            assert!(delivery.is_ping(), "{}", path.display());
            assert!(delivery.events.is_empty());
            assert_eq!(
                delivery.ping.as_ref().unwrap().zen.as_deref(),
                raw["zen"].as_str()
            );
            continue;
        };
        assert!(!delivery.is_ping());
        let event = only_event(&delivery);
        let expected_name = match raw["action"].as_str() {
            Some(action) => format!("{folder}.{action}"),
            None => folder.clone(),
        };
        assert_eq!(event.name(), expected_name, "{}", path.display());
        assert_eq!(event.source().kind(), kind, "{}", path.display());
        assert_eq!(event.delivery_id(), Some(DELIVERY_ID));
        assert_eq!(event.payload(), &raw, "the raw payload is kept as sent");

        let repository = event.source().repository();
        match raw["repository"]["html_url"].as_str() {
            Some(html_url) => {
                assert!(
                    html_url.contains(&format!("://{}/", repository.host)),
                    "{}: host {} from {html_url}",
                    path.display(),
                    repository.host
                );
                let full_name = raw["repository"]["full_name"].as_str().unwrap();
                assert_eq!(repository.full_name(), full_name);
                assert_eq!(
                    Some(repository.name.as_str()),
                    raw["repository"]["name"].as_str()
                );
                let fields = event.source().fields();
                assert_eq!(fields["repository"], raw["repository"]["name"]);
                assert_eq!(fields["owner"], full_name.split('/').next().unwrap());
                assert_eq!(fields["full_name"], full_name);
            }
            None => {
                assert!(repository.name.is_empty(), "{}", path.display());
                let account = raw["installation"]["account"]["html_url"]
                    .as_str()
                    .or(raw["organization"]["html_url"].as_str())
                    .unwrap_or("https://github.com/");
                assert!(
                    account.contains(&format!("://{}/", repository.host)),
                    "{}: host {} from {account}",
                    path.display(),
                    repository.host
                );
                assert!(!repository.owner.is_empty(), "{}", path.display());
                assert_eq!(event.source().checkout(), None);
            }
        }
        if path.to_str().unwrap().contains("ghes-35") {
            assert_ne!(repository.host, "github.com", "{}", path.display());
        }

        let data = event.data();
        assert_eq!(data["sender"], raw["sender"]["login"]);
        assert_eq!(data["payload"], raw);
        assert_eq!(data["installation"], raw["installation"]["id"]);

        // What the engine stores and ships must survive serialization.
        let record = event.to_record();
        let shipped: EventRecord =
            serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(shipped, record);
        assert_eq!(record.source.fields["kind"], kind);
    }
}

/// Intake reads only part of each payload; with the payload put back from the body, its
/// records are exactly those of a full parse, for every recorded payload.
#[test]
fn intake_reads_every_fixture_as_a_full_parse_does() {
    let parser = WebhookParser::new(Some(SECRET));
    for (folder, path) in &all_fixtures() {
        let body = std::fs::read(path).unwrap();
        let headers = headers(folder, Some(&sign(&body)));
        let full = parser.parse(&headers, &body).unwrap();
        let intake = parser
            .parse_for_intake(&headers, &body)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(
            (&intake.id, &intake.event, &intake.hook_id, &intake.ping),
            (&full.id, &full.event, &full.hook_id, &full.ping),
            "{}",
            path.display()
        );
        if full.is_ping() {
            assert!(intake.events.is_empty() && !intake.body_is_payload);
            continue;
        }
        assert!(intake.body_is_payload, "{}", path.display());
        assert_eq!(intake.events.len(), 1);
        let mut record = intake.events[0].clone();
        assert!(!record.has_payload(), "{}", path.display());
        let expected = full.events[0].clone().into_record();
        // Source and data first, so that a difference shows without the whole payload.
        assert_eq!(record.source, expected.source, "{}", path.display());
        record.restore_payload(&body).unwrap();
        assert_eq!(record, expected, "{}", path.display());
    }
}

#[test]
fn form_encoded_intake_keeps_the_payload_in_the_records() {
    let json = fixture("pull_request/opened.payload.json");
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json).unwrap())
        .finish()
        .into_bytes();
    let mut headers = headers("pull_request", Some(&sign(&body)));
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let parser = WebhookParser::new(Some(SECRET));
    let intake = parser.parse_for_intake(&headers, &body).unwrap();
    assert!(
        !intake.body_is_payload,
        "the body is a form, not the payload"
    );
    let full = parser.parse(&headers, &body).unwrap();
    assert_eq!(intake.events, vec![full.events[0].clone().into_record()]);
    assert!(intake.events[0].has_payload());
}

#[test]
fn intake_refuses_what_a_full_parse_refuses() {
    let parser = WebhookParser::new(None);
    let headers = headers("pull_request", None);
    for body in [
        &b"{\"action\": \"opened\", \"skipped\": \"\\udc00\"}"[..],
        b"{\"action\": \"opened\", \"skipped\": 1e999}",
        b"{\"action\": \"opened\", \"skipped\": \"\xc3\"}",
        b"[1, 2]",
        b"",
    ] {
        let full = parser.parse(&headers, body).unwrap_err();
        let intake = parser.parse_for_intake(&headers, body).unwrap_err();
        assert_eq!(intake.to_string(), full.to_string());
    }
}

// ---------------------------------------------------------------------------------------
// Spot checks

#[test]
fn pull_request_opened() {
    let delivery = deliver("pull_request", "pull_request/opened.payload.json");
    let event = only_event(&delivery);
    assert_eq!(event.name(), "pull_request.opened");
    let fields = event.source().fields();
    assert_eq!(fields["repository"], "Hello-World");
    assert_eq!(fields["owner"], "Codertocat");
    assert_eq!(fields["full_name"], "Codertocat/Hello-World");
    assert_eq!(fields["host"], "github.com");
    assert_eq!(fields["number"], 2);
    assert_eq!(fields["title"], "Update the README with new information.");
    assert_eq!(
        fields["body"],
        "This is a pretty simple change that we need to pull into master."
    );
    assert_eq!(fields["user"], "Codertocat");
    assert_eq!(
        fields["url"],
        "https://github.com/Codertocat/Hello-World/pull/2"
    );
    assert_eq!(fields["labels"], json!(["bug"]));
    assert_eq!(fields["draft"], false);
    assert_eq!(fields["merged"], false);
    assert_eq!(fields["fork"], false);
    assert_eq!(fields["state"], "open");
    assert_eq!(fields["head"]["ref"], "changes");
    assert_eq!(
        fields["head"]["sha"],
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    );
    assert_eq!(fields["base"]["ref"], "master");
    assert_eq!(
        fields["base"]["sha"],
        "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    );
    assert_eq!(fields["branch"], "changes");
    assert_eq!(fields["ref"], "refs/pull/2/head");
    assert_eq!(fields["kind"], "pull_request");
    assert!(event.source().deferred_fields().is_empty());

    let checkout = event.source().checkout().unwrap();
    assert_eq!(checkout.fetch_ref.as_deref(), Some("refs/pull/2/head"));
    assert_eq!(
        checkout.sha.as_deref(),
        Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821")
    );
    assert_eq!(
        checkout.repository.clone_url.as_deref(),
        Some("https://github.com/Codertocat/Hello-World.git")
    );
    assert_eq!(
        checkout.repository.ssh_url.as_deref(),
        Some("git@github.com:Codertocat/Hello-World.git")
    );

    let GitHubSource::PullRequest(pull) = event.github_source() else {
        panic!("not a pull request: {:?}", event.github_source());
    };
    assert_eq!(pull.conversation.number, Some(2));
    assert_eq!(event.data()["action"], "opened");
}

#[test]
fn labels_are_names_and_the_label_event_says_which() {
    let delivery = deliver("pull_request", "pull_request/labeled.payload.json");
    let event = only_event(&delivery);
    assert_eq!(event.source().fields()["labels"], json!(["bug"]));
    assert_eq!(event.data()["label"], "bug");
}

#[test]
fn a_null_body_stays_null() {
    let delivery = deliver("pull_request", "pull_request/opened.with-null-body.json");
    let fields = only_event(&delivery).source().fields();
    assert_eq!(fields["body"], Value::Null);
    assert_eq!(fields["title"], "Update the README with new information.");
}

#[test]
fn a_2017_payload_without_draft_or_labels() {
    let delivery = deliver("pull_request", "pull_request/edited.pr-triage-app.json");
    let event = only_event(&delivery);
    assert_eq!(event.name(), "pull_request.edited");
    let fields = event.source().fields();
    assert_eq!(fields["repository"], "test_project");
    assert_eq!(fields["owner"], "sotayamashita");
    assert_eq!(fields["number"], 88);
    assert_eq!(fields["draft"], false, "drafts did not exist in 2017");
    assert_eq!(fields["labels"], json!([]));
    assert_eq!(fields["head"]["ref"], "patch-2");
    assert_eq!(
        fields["head"]["sha"],
        "bfb50affc45a5d2a95e296f0980ac6f8a3ea698d"
    );
    assert_eq!(fields["base"]["ref"], "master");
    assert_eq!(fields["user"], "watsonbot");
    let data = event.data();
    assert_eq!(data["installation"], 68282);
    assert_eq!(data["sender"], "watsonbot");
}

#[test]
fn a_review_is_about_its_pull_request() {
    let delivery = deliver(
        "pull_request_review",
        "pull_request_review/submitted.payload.json",
    );
    let event = only_event(&delivery);
    assert_eq!(event.source().fields()["number"], 2);
    let review = &event.data()["review"];
    assert_eq!(review["id"], 237895671);
    assert_eq!(review["user"], "Codertocat");
    assert_eq!(review["state"], "commented");
    assert_eq!(review["body"], Value::Null);
}

#[test]
fn a_push_to_a_new_branch_checks_out_its_head() {
    let delivery = deliver("push", "push/with-new-branch.payload.json");
    let event = only_event(&delivery);
    assert_eq!(event.name(), "push");
    let fields = event.source().fields();
    assert_eq!(fields["kind"], "commit");
    assert_eq!(fields["sha"], "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(fields["ref"], "refs/heads/master");
    assert_eq!(fields["branch"], "master");
    assert_eq!(fields["tag"], Value::Null);
    assert_eq!(fields["created"], true);
    assert_eq!(fields["deleted"], false);
    assert_eq!(fields["author"], "Codertocat");
    assert_eq!(fields["message"], "Initial commit");
    let checkout = event.source().checkout().unwrap();
    assert_eq!(checkout.fetch_ref.as_deref(), Some("refs/heads/master"));
    assert_eq!(
        checkout.sha.as_deref(),
        Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246")
    );
}

#[test]
fn a_push_deleting_a_tag_has_nothing_to_check_out() {
    let delivery = deliver("push", "push/payload.json");
    let event = only_event(&delivery);
    let fields = event.source().fields();
    assert_eq!(fields["ref"], "refs/tags/simple-tag");
    assert_eq!(fields["tag"], "simple-tag");
    assert_eq!(fields["deleted"], true);
    assert_eq!(fields["sha"], Value::Null);
    assert_eq!(fields["before"], "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(event.source().checkout(), None);
}

#[test]
fn a_push_with_all_zero_after_counts_as_deleted_even_without_the_flag() {
    let body = br#"{"ref":"refs/heads/gone","after":"0000000000000000000000000000000000000000",
                    "repository":{"name":"r","owner":{"login":"o"},"html_url":"https://github.com/o/r"}}"#;
    let delivery = parse_delivery(&headers("push", None), body, None).unwrap();
    let source = only_event(&delivery).source();
    assert_eq!(source.fields()["deleted"], true);
    assert_eq!(source.checkout(), None);
}

#[test]
fn status_checks_out_its_sha_and_a_branch_only_when_it_is_the_tip() {
    let delivery = deliver("status", "status/payload.json");
    let event = only_event(&delivery);
    assert_eq!(event.name(), "status");
    let fields = event.source().fields();
    assert_eq!(fields["sha"], "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(fields["state"], "success");
    assert_eq!(fields["context"], "default");
    assert_eq!(fields["description"], Value::Null);
    assert_eq!(fields["branches"], json!(["master", "changes", "gh-pages"]));
    assert_eq!(fields["author"], "Codertocat");
    assert_eq!(fields["message"], "Initial commit");
    // None of the three branches has this commit at its tip.
    assert_eq!(fields["ref"], Value::Null);
    let checkout = event.source().checkout().unwrap();
    assert_eq!(checkout.fetch_ref, None);
    assert_eq!(
        checkout.sha.as_deref(),
        Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246")
    );

    // Null author and committer: the git author's name is used instead.
    let delivery = deliver("status", "status/with-author-committer-null.payload.json");
    let fields = only_event(&delivery).source().fields();
    assert_eq!(fields["author"], "Codertocat");
}

#[test]
fn check_runs_fetch_their_suite_branch() {
    let delivery = deliver("check_run", "check_run/created.payload.json");
    let event = only_event(&delivery);
    let fields = event.source().fields();
    assert_eq!(fields["sha"], "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(fields["name"], "Octocoders-linter");
    assert_eq!(fields["status"], "queued");
    assert_eq!(fields["pull_requests"], json!([2]));
    let checkout = event.source().checkout().unwrap();
    assert_eq!(checkout.fetch_ref.as_deref(), Some("refs/heads/changes"));
}

#[test]
fn issue_comment_on_an_issue() {
    let delivery = deliver("issue_comment", "issue_comment/created.payload.json");
    let event = only_event(&delivery);
    assert_eq!(event.name(), "issue_comment.created");
    assert_eq!(event.source().kind(), "issue");
    let fields = event.source().fields();
    assert_eq!(fields["number"], 1);
    assert_eq!(fields["title"], "Spelling error in the README file");
    assert_eq!(fields["labels"], json!(["bug"]));
    assert_eq!(fields["state"], "open");
    assert_eq!(fields["ref"], "refs/heads/master");
    assert_eq!(fields["pull_request"], false);
    assert!(event.source().deferred_fields().is_empty());
    let checkout = event.source().checkout().unwrap();
    assert_eq!(checkout.fetch_ref.as_deref(), Some("refs/heads/master"));
    assert_eq!(checkout.sha, None);
    let comment = &event.data()["comment"];
    assert_eq!(comment["id"], 492700400);
    assert_eq!(comment["user"], "Codertocat");
    assert_eq!(
        comment["body"],
        "You are totally right! I'll get this fixed right away."
    );
}

#[test]
fn issue_comment_on_a_pull_request_defers_the_branches() {
    let delivery = deliver(
        "issue_comment",
        "issue_comment/created.on-pull-request.go-playground-webhooks.json",
    );
    let event = only_event(&delivery);
    assert_eq!(event.name(), "issue_comment.created");
    assert_eq!(event.source().kind(), "pull_request");
    let fields = event.source().fields();
    assert_eq!(fields["repository"], "knative-route-demo");
    assert_eq!(fields["number"], 3);
    assert_eq!(fields["title"], "Updated to v2.");
    assert_eq!(fields["body"], "");
    assert_eq!(
        fields["url"],
        "https://github.com/chhsia0/knative-route-demo/pull/3"
    );
    for deferred in PULL_REQUEST_DEFERRED_FIELDS {
        assert!(
            fields.get(deferred).is_none(),
            "{deferred} should wait for enrichment"
        );
    }
    assert_eq!(
        event.source().deferred_fields(),
        PULL_REQUEST_DEFERRED_FIELDS.map(String::from).to_vec()
    );
    let checkout = event.source().checkout().unwrap();
    assert_eq!(checkout.fetch_ref.as_deref(), Some("refs/pull/3/head"));
    assert_eq!(checkout.sha, None, "the head is not in a comment payload");
    let comment = &event.data()["comment"];
    assert_eq!(comment["body"], "/build");
    assert_eq!(comment["user"], "chhsia0");
    assert_eq!(comment["id"], 546616131);
}

#[test]
fn issues_events_on_a_pull_request_stay_issues_and_say_so() {
    let delivery = deliver("issues", "issues/milestoned.payload.json");
    let event = only_event(&delivery);
    assert_eq!(event.source().kind(), "issue");
    let fields = event.source().fields();
    assert_eq!(fields["pull_request"], true);
    assert_eq!(fields["number"], 2);
    assert_eq!(
        fields["milestone"],
        event.payload()["issue"]["milestone"]["title"]
    );
    assert!(fields["milestone"].is_string());
}

#[test]
fn github_enterprise_hosts_come_from_html_url() {
    let delivery = deliver("pull_request", "ghes-35/pull_request/opened.json");
    let event = only_event(&delivery);
    let repository = event.source().repository();
    assert_eq!(repository.host, "octocoders.github.io");
    assert_eq!(
        repository.clone_url.as_deref(),
        Some("https://octocoders.github.io/Codertocat/Hello-World.git")
    );
    assert_eq!(event.data()["installation"], 5);
}

#[test]
fn installation_events_are_about_the_account() {
    let delivery = deliver("installation", "installation/created.payload.json");
    let event = only_event(&delivery);
    assert_eq!(event.name(), "installation.created");
    assert_eq!(event.source().kind(), "repository");
    let fields = event.source().fields();
    assert_eq!(fields["repository"], Value::Null);
    assert_eq!(
        fields["owner"],
        event.payload()["installation"]["account"]["login"]
    );
    assert_eq!(event.source().checkout(), None);
}

#[test]
fn release_checks_out_the_default_branch() {
    let delivery = deliver("release", "release/published.payload.json");
    let event = only_event(&delivery);
    assert_eq!(event.name(), "release.published");
    let checkout = event.source().checkout().unwrap();
    assert_eq!(checkout.fetch_ref.as_deref(), Some("refs/heads/master"));
    assert_eq!(
        event.source().fields()["url"],
        "https://github.com/Codertocat/Hello-World"
    );
}

#[test]
fn ping_produces_no_event() {
    let delivery = deliver("ping", "ping/payload.json");
    assert!(delivery.is_ping());
    assert!(delivery.events.is_empty());
    let ping = delivery.ping.unwrap();
    assert!(ping.zen.is_some());
    assert!(ping.hook_id.is_some());
}

// ---------------------------------------------------------------------------------------
// Intake: headers, encodings, errors

#[test]
fn header_names_are_case_insensitive() {
    let body = fixture("push/payload.json");
    let mut lower = HeaderMap::new();
    lower.insert("x-github-event", HeaderValue::from_static("push"));
    lower.insert("x-github-delivery", HeaderValue::from_static("abc"));
    lower.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&sign(&body)).unwrap(),
    );
    let delivery = parse_delivery(&lower, &body, Some(SECRET)).unwrap();
    assert_eq!(delivery.id, "abc");
    assert_eq!(delivery.event, "push");
}

#[test]
fn missing_delivery_or_event_headers_are_named() {
    let body = fixture("push/payload.json");
    let mut no_id = headers("push", None);
    no_id.remove("x-github-delivery");
    let error = parse_delivery(&no_id, &body, None).unwrap_err();
    assert!(matches!(
        error,
        WebhookError::MissingHeader {
            name: "X-GitHub-Delivery"
        }
    ));
    assert!(error.to_string().contains("X-GitHub-Delivery"));
    assert_eq!(error.status_code(), http::StatusCode::BAD_REQUEST);

    let mut no_event = headers("push", None);
    no_event.remove("x-github-event");
    let error = parse_delivery(&no_event, &body, None).unwrap_err();
    assert!(matches!(
        error,
        WebhookError::MissingHeader {
            name: "X-GitHub-Event"
        }
    ));

    let error = parse_delivery(&headers("push.opened", None), &body, None).unwrap_err();
    assert!(matches!(
        error,
        WebhookError::InvalidHeader {
            name: "X-GitHub-Event",
            ..
        }
    ));
    let error = parse_delivery(&headers(" ", None), &body, None).unwrap_err();
    assert!(matches!(
        error,
        WebhookError::InvalidHeader {
            name: "X-GitHub-Event",
            ..
        }
    ));
}

#[test]
fn form_encoded_deliveries_are_decoded_after_verifying_the_raw_body() {
    let json = fixture("issues/opened.payload.json");
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json).unwrap())
        .finish();
    let mut form_headers = headers("issues", Some(&sign(body.as_bytes())));
    form_headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
    );
    let delivery = parse_delivery(&form_headers, body.as_bytes(), Some(SECRET)).unwrap();
    let event = only_event(&delivery);
    assert_eq!(event.name(), "issues.opened");
    assert_eq!(
        event.payload(),
        &serde_json::from_slice::<Value>(&json).unwrap()
    );

    // Signed over the decoded JSON instead of the raw form: refused.
    let mut wrongly_signed = form_headers.clone();
    wrongly_signed.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&sign(&json)).unwrap(),
    );
    let error = parse_delivery(&wrongly_signed, body.as_bytes(), Some(SECRET)).unwrap_err();
    assert!(matches!(error, WebhookError::SignatureMismatch));

    let error = parse_delivery(&form_headers, b"other=1", None).unwrap_err();
    assert!(matches!(error, WebhookError::MissingFormPayload));
}

#[test]
fn malformed_json_reports_line_and_column() {
    let body = b"{\n  \"action\": \"opened\",\n  \"number\": ,\n}";
    let error = parse_delivery(&headers("pull_request", None), body, None).unwrap_err();
    match &error {
        WebhookError::MalformedBody {
            line,
            column,
            reason,
        } => {
            assert_eq!((*line, *column), (3, 13));
            assert!(reason.contains("expected value"), "{reason}");
        }
        other => panic!("expected MalformedBody, got {other:?}"),
    }
    assert!(error.to_string().contains("line 3, column 13"), "{error}");
    assert!(!error.is_unauthorized());

    let error = parse_delivery(&headers("push", None), b"[1, 2]", None).unwrap_err();
    assert!(matches!(
        error,
        WebhookError::NotAnObject { found: "an array" }
    ));
    let error = parse_delivery(&headers("push", None), b"", None).unwrap_err();
    assert!(matches!(error, WebhookError::MalformedBody { .. }));
}

#[test]
fn unknown_events_and_fields_never_fail() {
    let body = br#"{"action": "launched", "rocket": {"id": 1}}"#;
    let delivery = parse_delivery(&headers("space_program", None), body, None).unwrap();
    let event = only_event(&delivery);
    assert_eq!(event.name(), "space_program.launched");
    assert_eq!(event.source().kind(), "repository");
    assert_eq!(event.source().checkout(), None);
    assert_eq!(event.data()["payload"]["rocket"]["id"], 1);

    // A known event whose objects are all the wrong type.
    let body =
        br#"{"action": 7, "pull_request": [], "repository": "x", "sender": 1, "number": "2"}"#;
    let delivery = parse_delivery(&headers("pull_request", None), body, None).unwrap();
    let event = only_event(&delivery);
    assert_eq!(event.name(), "pull_request");
    assert_eq!(event.source().kind(), "pull_request");
    assert_eq!(
        event.source().checkout(),
        None,
        "no number, nothing to fetch"
    );
    assert_eq!(event.data()["sender"], Value::Null);
}

// ---------------------------------------------------------------------------------------
// Signatures

const VECTOR_SECRET: &[u8] = b"It's a Secret to Everybody";
const VECTOR_BODY: &[u8] = b"Hello, World!";
const VECTOR_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn the_official_test_vector_verifies() {
    verify_signature(VECTOR_SECRET, VECTOR_BODY, Some(VECTOR_SIGNATURE)).unwrap();
    // Through the parser, the signature passes and only then is the (non-JSON) body refused.
    let error = parse_delivery(
        &headers("issues", Some(VECTOR_SIGNATURE)),
        VECTOR_BODY,
        Some(VECTOR_SECRET),
    )
    .unwrap_err();
    assert!(
        matches!(error, WebhookError::MalformedBody { .. }),
        "{error:?}"
    );
}

#[test]
fn bad_signatures_are_refused_before_parsing() {
    let refuse = |signature: Option<&str>| {
        // The body is not JSON: a signature error proves nothing was parsed.
        let error = parse_delivery(
            &headers("issues", signature),
            VECTOR_BODY,
            Some(VECTOR_SECRET),
        )
        .unwrap_err();
        assert!(error.is_unauthorized(), "{signature:?}: {error:?}");
        assert_eq!(error.status_code(), http::StatusCode::UNAUTHORIZED);
        let message = error.to_string();
        assert!(!message.contains("Secret to Everybody"), "{message}");
        error
    };
    let wrong = format!("sha256={}", "0".repeat(64));
    assert!(matches!(
        refuse(Some(&wrong)),
        WebhookError::SignatureMismatch
    ));
    assert!(matches!(refuse(None), WebhookError::MissingSignature));
    assert!(matches!(
        refuse(Some("sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59")),
        WebhookError::MalformedSignature { .. }
    ));
    assert!(matches!(
        refuse(Some(&VECTOR_SIGNATURE.replace('7', "z"))),
        WebhookError::MalformedSignature {
            reason: "not hexadecimal"
        }
    ));
    assert!(matches!(
        refuse(Some(&VECTOR_SIGNATURE[..VECTOR_SIGNATURE.len() - 2])),
        WebhookError::MalformedSignature {
            reason: "wrong length"
        }
    ));
    assert!(matches!(
        refuse(Some("sha256=")),
        WebhookError::MalformedSignature { .. }
    ));
    assert!(matches!(
        refuse(Some(&format!("{VECTOR_SIGNATURE}00"))),
        WebhookError::MalformedSignature {
            reason: "wrong length"
        }
    ));

    // Right signature, other secret.
    let error = parse_delivery(
        &headers("issues", Some(VECTOR_SIGNATURE)),
        VECTOR_BODY,
        Some(b"another secret"),
    )
    .unwrap_err();
    assert!(matches!(error, WebhookError::SignatureMismatch));
}

#[test]
fn without_a_secret_signatures_are_ignored() {
    let body = fixture("push/payload.json");
    let delivery = parse_delivery(&headers("push", Some("sha256=garbage")), &body, None).unwrap();
    assert_eq!(only_event(&delivery).name(), "push");
    assert!(!WebhookParser::new(None).requires_signature());
    let parser = WebhookParser::new(Some(VECTOR_SECRET));
    assert!(parser.requires_signature());
    assert!(!format!("{parser:?}").contains("Secret"));
}

// ---------------------------------------------------------------------------------------
// Enrichment

/// A `GitHub` that only answers `get_pull_request`, from a fixture.
#[derive(Debug)]
struct FakeGitHub {
    pull_request: Result<Value, u16>,
    asked: Mutex<Vec<(RepoRef, u64)>>,
}

impl FakeGitHub {
    fn unused<T>() -> Result<T, GitHubError> {
        Err(GitHubError::Config("not used by this test".into()))
    }
}

#[async_trait]
impl GitHub for FakeGitHub {
    async fn create_comment(&self, _: &RepoRef, _: u64, _: &str) -> Result<u64, GitHubError> {
        Self::unused()
    }
    async fn set_commit_status(
        &self,
        _: &RepoRef,
        _: &str,
        _: &CommitStatus,
    ) -> Result<(), GitHubError> {
        Self::unused()
    }
    async fn create_check_run(&self, _: &RepoRef, _: &NewCheckRun) -> Result<u64, GitHubError> {
        Self::unused()
    }
    async fn update_check_run(
        &self,
        _: &RepoRef,
        _: u64,
        _: &CheckRunUpdate,
    ) -> Result<(), GitHubError> {
        Self::unused()
    }
    async fn add_labels(&self, _: &RepoRef, _: u64, _: &[String]) -> Result<(), GitHubError> {
        Self::unused()
    }
    async fn remove_label(&self, _: &RepoRef, _: u64, _: &str) -> Result<(), GitHubError> {
        Self::unused()
    }
    async fn add_reaction(
        &self,
        _: &RepoRef,
        _: ReactionTarget,
        _: &str,
    ) -> Result<(), GitHubError> {
        Self::unused()
    }
    async fn get_pull_request(&self, repo: &RepoRef, number: u64) -> Result<Value, GitHubError> {
        self.asked.lock().push((repo.clone(), number));
        self.pull_request
            .clone()
            .map_err(|status| GitHubError::Refused {
                method: "GET".into(),
                path: format!("/repos/{repo}/pulls/{number}"),
                status,
                message: "Not Found".into(),
            })
    }
}

fn comment_on_pull_request() -> SourceRecord {
    let delivery = deliver(
        "issue_comment",
        "issue_comment/created.on-pull-request.go-playground-webhooks.json",
    );
    only_event(&delivery).to_record().source
}

#[tokio::test]
async fn the_enricher_fills_what_a_pull_request_event_would_have() {
    // The API answers with a pull request; reuse a payload's, as GitHub documents the
    // webhook's `pull_request` as the API shape.
    let opened: Value =
        serde_json::from_slice(&fixture("pull_request/opened.payload.json")).unwrap();
    let github = Arc::new(FakeGitHub {
        pull_request: Ok(opened["pull_request"].clone()),
        asked: Mutex::new(Vec::new()),
    });
    let enricher = PullRequestEnricher::new(github.clone());
    let mut source = comment_on_pull_request();
    let title_before = source.fields["title"].clone();
    enricher.enrich(&mut source).await.unwrap();

    assert_eq!(
        *github.asked.lock(),
        vec![(RepoRef::new("chhsia0", "knative-route-demo"), 3)]
    );
    assert!(source.deferred.is_empty());
    for field in PULL_REQUEST_DEFERRED_FIELDS {
        assert!(source.fields.get(field).is_some(), "{field} not filled");
    }
    // The same values a pull_request event with that object has.
    let pull_request_event = deliver("pull_request", "pull_request/opened.payload.json");
    let expected = only_event(&pull_request_event).source().fields();
    for field in ["head", "base", "branch", "draft", "merged", "fork"] {
        assert_eq!(source.fields[field], expected[field], "{field}");
    }
    assert_eq!(
        source.fields["title"], title_before,
        "the comment's own fields are kept"
    );
    assert_eq!(
        source.checkout.as_ref().unwrap().sha.as_deref(),
        Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
        "the checkout is pinned to the head that was fetched"
    );

    // Nothing deferred any more: a second call does not ask GitHub again.
    enricher.enrich(&mut source).await.unwrap();
    assert_eq!(github.asked.lock().len(), 1);
}

#[tokio::test]
async fn the_enricher_reports_api_failures_and_wrong_sources() {
    let github = Arc::new(FakeGitHub {
        pull_request: Err(404),
        asked: Mutex::new(Vec::new()),
    });
    let enricher = PullRequestEnricher::new(github);
    let mut source = comment_on_pull_request();
    let error = enricher.enrich(&mut source).await.unwrap_err();
    assert_eq!(error.what, "chhsia0/knative-route-demo#3");
    assert!(error.reason.contains("404"), "{error}");
    assert!(
        !source.deferred.is_empty(),
        "still deferred after a failure"
    );

    let mut issue = source.clone();
    issue.kind = "issue".into();
    let error = enricher.enrich(&mut issue).await.unwrap_err();
    assert!(error.reason.contains("only fills pull_request"), "{error}");

    let garbage = Arc::new(FakeGitHub {
        pull_request: Ok(json!({"message": "odd"})),
        asked: Mutex::new(Vec::new()),
    });
    let error = PullRequestEnricher::new(garbage)
        .enrich(&mut source)
        .await
        .unwrap_err();
    assert!(error.reason.contains("no `head`"), "{error}");
}
