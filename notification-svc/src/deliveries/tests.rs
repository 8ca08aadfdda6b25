//! Unit tests of pruning and enqueueing, on the in-memory store.

use super::*;
use platform::store::Store;

async fn deliveries() -> Deliveries {
    let store = Store::memory();
    let nowhere = platform::grpc::channel(
        &platform::PeerAddr::from_socket(([127, 0, 0, 1], 1).into()),
        &platform::config::GrpcSettings::default(),
    )
    .unwrap();
    Deliveries::new(
        store.collection(spec()).await.unwrap(),
        store.collection(super::subscriptions_spec()).await.unwrap(),
        Channels::default(),
        Directory::new(
            nowhere,
            platform::auth::MeshAuth::keyless("notification-svc"),
        ),
        RetryPolicy {
            base: Duration::from_secs(1),
            max_attempts: 3,
        },
    )
}

fn record(state: State, created_at: i64) -> Record {
    Record {
        user_id: "u1".into(),
        kind: "order.created".into(),
        title: "t".into(),
        body: "b".into(),
        channel: "email".into(),
        subscription_id: None,
        state: state.name().into(),
        attempts: 1,
        next_attempt_at: created_at,
        last_error: None,
        created_at,
        updated_at: created_at,
    }
}

#[tokio::test]
async fn pruning_removes_old_finished_records_and_keeps_pending_and_recent_ones() {
    let d = deliveries().await;
    let rows = [
        ("old-sent", State::Sent, 1_000),
        ("old-failed", State::Failed, 1_000),
        ("old-skipped", State::Skipped, 1_000),
        ("old-pending", State::Pending, 1_000),
        ("new-sent", State::Sent, 9_000),
    ];
    for (id, state, at) in rows {
        d.records.insert(id, record(state, at)).await.unwrap();
    }
    assert_eq!(d.prune(5_000).await.unwrap(), 3);
    for (id, _, _) in rows {
        let kept = d.records.find_by_id(id).await.unwrap().is_some();
        assert_eq!(kept, id == "old-pending" || id == "new-sent", "{id}");
    }
    assert_eq!(d.prune(5_000).await.unwrap(), 0);
}

#[tokio::test]
async fn channels_that_are_not_configured_get_no_records() {
    let d = deliveries().await;
    let out = Outgoing {
        key: "evt-1:u1",
        user_id: "u1",
        kind: "payment.failed",
        title: "t",
        body: "b",
    };
    let stored = d
        .enqueue(&out, &[Via::Email, Via::Sms, Via::Push])
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
}
