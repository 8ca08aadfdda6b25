//! Event-bus conformance: one suite, instantiated per backend, so
//! `cargo test -p platform events` lists `events::conformance::<backend>::<test>`.
//! NATS runs against the real server (`TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`), each test in its own stream, deleted afterwards.
//! Outbox tests run on the Postgres store.

mod events {
    pub mod conformance {
        pub mod suite;

        use std::future::Future;
        use std::sync::Arc;

        use platform::events::EventBus;
        use platform::events::memory::InProcessBus;
        use platform::events::nats::{NatsBus, NatsSettings};

        pub fn nats_url() -> String {
            std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
        }

        pub fn nats_settings() -> NatsSettings {
            let tag = uuid::Uuid::now_v7().simple().to_string();
            NatsSettings {
                stream: format!("T{tag}"),
                prefix: format!("t{tag}"),
                ..NatsSettings::default()
            }
        }

        pub async fn with_memory<F, Fut>(test: F)
        where
            F: FnOnce(Arc<dyn EventBus>) -> Fut,
            Fut: Future<Output = ()> + Send + 'static,
        {
            platform::telemetry::init_for_tests();
            let outcome = tokio::spawn(test(Arc::new(InProcessBus::new("shop")))).await;
            if let Err(err) = outcome {
                std::panic::resume_unwind(err.into_panic());
            }
        }

        pub async fn with_nats<F, Fut>(test: F)
        where
            F: FnOnce(Arc<dyn EventBus>) -> Fut,
            Fut: Future<Output = ()> + Send + 'static,
        {
            platform::telemetry::init_for_tests();
            let bus = NatsBus::connect(&nats_url(), nats_settings())
                .await
                .expect("NATS reachable (TEST_NATS_URL)");
            let outcome = tokio::spawn(test(Arc::new(bus.clone()))).await;
            bus.delete_stream().await.expect("test stream deleted");
            if let Err(err) = outcome {
                std::panic::resume_unwind(err.into_panic());
            }
        }

        macro_rules! conformance_tests {
            ($harness:ident) => {
                conformance_tests!(@each $harness;
                    publish_then_consume,
                    fan_out_to_two_consumers,
                    competing_instances_share_work,
                    at_least_once_after_a_crash_before_ack,
                    redelivers_after_nak_with_backoff,
                    dead_letter_after_max_deliver_failures,
                    an_unavailable_dependency_is_waited_out_past_max_deliver,
                    an_outage_does_not_spend_the_retry_budget,
                    permanent_failure_goes_straight_to_dead_letter,
                    duplicate_publish_is_delivered_once,
                    ordering_per_subject,
                    trace_context_round_trips,
                    consumer_receives_only_subscribed_subjects,
                    events_published_before_subscribing_are_delivered,
                    broadcast_reaches_every_listener_and_no_consumer,
                );
            };
            (@each $harness:ident; $($name:ident),* $(,)?) => {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::$harness(super::suite::$name).await;
                    }
                )*
            };
        }

        pub mod memory {
            conformance_tests!(with_memory);
        }

        pub mod nats {
            conformance_tests!(with_nats);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats_down_at_publish_is_unavailable_then_recovers() {
                super::suite::nats_down_at_publish_is_unavailable_then_recovers().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats_backlog_shows_unhandled_events_and_dead_letters() {
                super::suite::nats_backlog_shows_unhandled_events_and_dead_letters().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats_dead_letters_are_listed_and_replayed() {
                super::suite::nats_dead_letters_are_listed_and_replayed().await;
            }
        }
    }

    pub mod outbox;
}
