//! The README's demo: different clients reach different regions.

use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::RecordType;

use crate::harness::{Geode, addrs, ecs_of, repo};

fn demo() -> Geode {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    Geode::start_at(dir, &repo().join("config/example.toml"), &[])
}

#[tokio::test]
async fn demo_config_sends_clients_on_three_continents_to_three_regions() {
    let g = demo();
    let virginia = g
        .query("www.gslb.example.", RecordType::A, Some("198.51.100.64/26"))
        .await;
    let dublin = g
        .query("www.gslb.example.", RecordType::A, Some("198.51.100.0/26"))
        .await;
    let mumbai = g
        .query(
            "www.gslb.example.",
            RecordType::A,
            Some("198.51.100.128/26"),
        )
        .await;
    assert_eq!(addrs(&virginia), ["192.0.2.10", "192.0.2.11"]);
    assert_eq!(addrs(&dublin), ["192.0.2.20"]);
    assert_eq!(addrs(&mumbai), ["192.0.2.40"]);
    assert_eq!(ecs_of(&virginia), Some((26, 26)));
    assert!(virginia.metadata.authoritative);
    assert_eq!(virginia.metadata.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn demo_answers_dig() {
    let g = demo();
    let out = g.dig(&["+short", "www.gslb.example", "+subnet=198.51.100.128/26"]);
    assert_eq!(out.trim(), "192.0.2.40", "dig output: {out}");
    // Logs to a pipe (journald, a log shipper) carry no terminal colour codes.
    assert!(
        !g.logs().contains('\u{1b}'),
        "ANSI escapes in piped logs:\n{}",
        g.logs()
    );
    let stopped = g.stop();
    assert!(stopped.success(), "SIGTERM exits 0: {stopped:?}");
}
