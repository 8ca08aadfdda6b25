//! Document-store conformance: one suite, instantiated per backend, so
//! `cargo test -p platform store` lists `store::conformance::<backend>::<test>`.
//!
//! Memory and Postgres always run (Postgres from `TEST_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`, a fresh schema per
//! test, dropped afterwards). MongoDB runs when `MONGODB_URI` is set and is
//! reported ignored otherwise; `.ci/run` sets it to a stand-in server
//! (`support/mongoeco_launcher.py`).

mod store {
    pub mod conformance {
        pub mod suite;

        use std::future::Future;
        use std::sync::Arc;
        use std::time::Duration;

        use platform::store::mongo::MongoBackend;
        use platform::store::postgres::PostgresBackend;
        use platform::store::{Store, StoreSettings};

        pub fn settings() -> StoreSettings {
            StoreSettings {
                timeout: Duration::from_millis(1500),
                max_connections: 20,
                ..Default::default()
            }
        }

        pub fn postgres_url() -> String {
            platform::testing::postgres_url()
        }

        pub fn unique_namespace() -> String {
            format!("t_{}", uuid::Uuid::now_v7().simple())
        }

        async fn run_isolated<F, Fut>(store: Store, test: F)
        where
            F: FnOnce(Store) -> Fut,
            Fut: Future<Output = ()> + Send + 'static,
        {
            let outcome = tokio::spawn(test(store)).await;
            if let Err(err) = outcome {
                std::panic::resume_unwind(err.into_panic());
            }
        }

        pub async fn with_memory<F, Fut>(test: F)
        where
            F: FnOnce(Store) -> Fut,
            Fut: Future<Output = ()> + Send + 'static,
        {
            run_isolated(Store::memory(), test).await;
        }

        /// Runs `test` against a fresh schema, dropped afterwards even if
        /// the test fails.
        pub async fn with_postgres<F, Fut>(test: F)
        where
            F: FnOnce(Store) -> Fut,
            Fut: Future<Output = ()> + Send + 'static,
        {
            let backend =
                PostgresBackend::connect(&postgres_url(), &unique_namespace(), &settings())
                    .await
                    .expect("Postgres is reachable (TEST_DATABASE_URL)");
            let store = Store::with_backend(Arc::new(backend.clone()));
            let outcome = tokio::spawn(test(store)).await;
            backend.drop_schema().await.expect("test schema dropped");
            backend.close().await;
            if let Err(err) = outcome {
                std::panic::resume_unwind(err.into_panic());
            }
        }

        /// The stand-in server CI runs (mongoeco) lacks a few MongoDB
        /// behaviours; tests that need one say so and keep MongoDB's
        /// behaviour as the expectation.
        pub fn mongodb_uri() -> String {
            std::env::var("MONGODB_URI").expect("MONGODB_URI is set")
        }

        pub async fn with_mongodb<F, Fut>(test: F)
        where
            F: FnOnce(Store) -> Fut,
            Fut: Future<Output = ()> + Send + 'static,
        {
            with_mongodb_backend(|store, _| test(store)).await;
        }

        /// Runs `test` against a fresh database, dropped afterwards even if
        /// the test fails.
        pub async fn with_mongodb_backend<F, Fut>(test: F)
        where
            F: FnOnce(Store, MongoBackend) -> Fut,
            Fut: Future<Output = ()> + Send + 'static,
        {
            let backend = MongoBackend::connect(&mongodb_uri(), &unique_namespace(), &settings())
                .await
                .expect("MongoDB reachable");
            let store = Store::with_backend(Arc::new(backend.clone()));
            let outcome = tokio::spawn(test(store, backend.clone())).await;
            backend
                .drop_database()
                .await
                .expect("test database dropped");
            if let Err(err) = outcome {
                std::panic::resume_unwind(err.into_panic());
            }
        }

        macro_rules! conformance_tests {
            ($harness:ident $(, #[$attr:meta])?) => {
                conformance_tests!(@each $harness { $(#[$attr])? } ;
                    insert_then_get_returns_version_one,
                    duplicate_id_is_already_exists,
                    unique_index_violation_names_the_index,
                    optional_unique_fields_do_not_collide_when_missing,
                    concurrent_inserts_each_get_their_own_outcome,
                    concurrent_replaces_each_get_their_own_outcome,
                    cas_rejects_stale_version,
                    cas_under_50_concurrent_writers_loses_no_update,
                    update_from_a_stale_copy_reads_again_and_loses_no_write,
                    paging_visits_every_document_once_despite_concurrent_inserts,
                    cursor_tampering_is_rejected,
                    sort_order_is_typed_and_ties_break_by_id,
                    equality_and_range_filters_combine,
                    a_range_on_an_optional_field_leaves_out_documents_without_it,
                    text_match_is_case_insensitive_and_literal,
                    large_documents_round_trip_and_oversize_is_rejected,
                    unicode_round_trips,
                    queries_on_undeclared_or_mistyped_fields_are_invalid,
                    declaring_a_collection_is_idempotent_and_concurrent_safe,
                    delete_honours_the_version,
                    text_search_with_a_nul_is_an_invalid_request,
                    lookups_on_unique_fields_find_exactly_the_holder,
                );
            };
            (@each $harness:ident $attrs:tt ; $($name:ident),* $(,)?) => {
                $( conformance_tests!(@one $harness $name $attrs); )*
            };
            (@one $harness:ident $name:ident { $($attrs:tt)* }) => {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $($attrs)*
                async fn $name() {
                    super::$harness(super::suite::$name).await;
                }
            };
        }

        pub mod memory {
            conformance_tests!(with_memory);
        }

        pub mod postgres {
            conformance_tests!(with_postgres);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn data_survives_a_reconnect() {
                super::lifecycle::postgres_data_survives_a_reconnect().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn backend_down_is_unavailable_then_recovers() {
                super::lifecycle::postgres_down_is_unavailable_then_recovers().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_clash_on_an_undeclared_index_is_not_an_id_clash() {
                super::lifecycle::postgres_clash_on_an_undeclared_index().await;
            }
        }

        pub mod mongodb {
            conformance_tests!(with_mongodb, #[cfg_attr(not(mongodb_uri), ignore = "MONGODB_URI is not set: MongoDB backend skipped")]);

            macro_rules! mongodb_only {
                ($($name:ident => $body:path),* $(,)?) => {$(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[cfg_attr(not(mongodb_uri), ignore = "MONGODB_URI is not set: MongoDB backend skipped")]
                    async fn $name() {
                        $body().await;
                    }
                )*};
            }

            mongodb_only! {
                data_survives_a_reconnect => super::lifecycle::mongodb_data_survives_a_reconnect,
                backend_down_is_unavailable_then_recovers => super::lifecycle::mongodb_down_is_unavailable_then_recovers,
                a_clash_on_an_undeclared_index_is_not_an_id_clash => super::lifecycle::mongodb_clash_on_an_undeclared_index,
                a_changed_index_spec_does_not_break_start_up => super::lifecycle::mongodb_changed_index_spec,
                lookups_on_unique_fields_use_their_index => super::lifecycle::mongodb_unique_lookups_use_their_index,
            }
        }

        /// Restart and outage of the network backends.
        mod lifecycle;
    }
}
