//! Every event type a service subscribes to is one that some payload has:
//! a consumer of a misspelt type would wait forever for events that never
//! come.

use platform::events::subject_matches;
use proto::events::envelope::Payload;

#[test]
fn every_consumer_listens_for_events_that_exist() {
    let consumers: [(&str, &[&str]); 4] = [
        ("order-svc", order_svc::events::EVENT_TYPES),
        ("shipping-svc", shipping_svc::events::EVENT_TYPES),
        ("notification-svc", notification_svc::events::EVENT_TYPES),
        (
            "recommendation-svc",
            recommendation_svc::events::EVENT_TYPES,
        ),
    ];
    for (consumer, types) in consumers {
        assert!(!types.is_empty(), "{consumer} listens for something");
        for pattern in types {
            assert!(
                Payload::ALL_TYPES
                    .iter()
                    .any(|t| subject_matches(pattern, t)),
                "{consumer} listens for {pattern:?}, which no event has"
            );
        }
    }
}
