//! Leases: one replica at a time runs a piece of background work.
//!
//! Every replica of a service runs the same sweepers. Their writes are safe
//! together (each item is settled by a CAS on its own document), but N
//! replicas would scan the store N times per interval. A [`Lease`] is a
//! document in the service's store (`sweep_leases`) naming its holder and
//! when the holding ends: the holder renews it each round by a CAS; any
//! other replica reads it (one point read) and skips its round; when the
//! holder stops renewing (it crashed, or lost the store), the lease
//! expires and the next replica to look takes it over.
//!
//! Expiry compares wall clocks of different replicas, so the time to live
//! is a few intervals: a skew below that costs at most one doubled round,
//! never a lost one (the work itself stays safe to run twice).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Collection, CollectionSpec, Result, Store, StoreError};

/// The collection every service keeps its leases in.
pub const LEASES: &str = "sweep_leases";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holding {
    holder: String,
    /// Unix milliseconds.
    until_ms: i64,
}

/// A named lease in a store, as seen by one replica.
#[derive(Clone, Debug)]
pub struct Lease {
    leases: Collection<Holding>,
    name: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// The lease `name` in `store`, held by `holder` (this replica's
    /// name, unique among replicas) for `ttl` at a time.
    pub async fn open(store: &Store, name: &str, holder: &str, ttl: Duration) -> Result<Lease> {
        let leases = store.collection(CollectionSpec::new(LEASES)).await?;
        Ok(Lease {
            leases,
            name: name.to_string(),
            holder: holder.to_string(),
            ttl,
        })
    }

    /// Takes or renews the lease; true while this replica holds it. One
    /// read, plus one write when it is (or becomes) the holder.
    pub async fn hold(&self) -> Result<bool> {
        let now = crate::clock::now().millis();
        let mine = Holding {
            holder: self.holder.clone(),
            until_ms: now + self.ttl.as_millis() as i64,
        };
        let outcome = match self.leases.find_by_id(&self.name).await? {
            None => self.leases.insert(&self.name, mine).await.map(|_| ()),
            Some(current)
                if current.value.holder == self.holder || current.value.until_ms < now =>
            {
                self.leases
                    .replace(&self.name, current.version, mine)
                    .await
                    .map(|_| ())
            }
            Some(_) => return Ok(false),
        };
        match outcome {
            Ok(()) => Ok(true),
            // Another replica took it first.
            Err(StoreError::AlreadyExists { .. } | StoreError::VersionConflict) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Gives the lease up (at shutdown), so another replica takes over at
    /// its next round instead of after the time to live.
    pub async fn release(&self) -> Result<()> {
        match self.leases.find_by_id(&self.name).await? {
            Some(current) if current.value.holder == self.holder => {
                let expired = Holding {
                    holder: String::new(),
                    until_ms: 0,
                };
                match self
                    .leases
                    .replace(&self.name, current.version, expired)
                    .await
                {
                    Ok(_) | Err(StoreError::VersionConflict) => Ok(()),
                    Err(err) => Err(err),
                }
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Lease, Store};
    use std::time::Duration;

    #[tokio::test]
    async fn one_holder_at_a_time_and_takeover_after_expiry() {
        let store = Store::memory();
        let ttl = Duration::from_millis(200);
        let a = Lease::open(&store, "sweep", "a", ttl).await.unwrap();
        let b = Lease::open(&store, "sweep", "b", ttl).await.unwrap();
        assert!(a.hold().await.unwrap());
        assert!(!b.hold().await.unwrap(), "held by a");
        assert!(a.hold().await.unwrap(), "a renews");
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert!(b.hold().await.unwrap(), "a stopped renewing: b takes over");
        assert!(!a.hold().await.unwrap(), "now b holds it");
        b.release().await.unwrap();
        assert!(a.hold().await.unwrap(), "released: a takes it at once");
        let other = Lease::open(&store, "another", "b", ttl).await.unwrap();
        assert!(other.hold().await.unwrap(), "leases are per name");
    }

    #[tokio::test]
    async fn racing_replicas_never_both_hold_it() {
        let store = Store::memory();
        for round in 0..50 {
            let name = format!("race{round}");
            let leases = futures::future::join_all((0..4).map(|i| {
                let store = store.clone();
                let name = name.clone();
                async move {
                    Lease::open(&store, &name, &format!("r{i}"), Duration::from_secs(5))
                        .await
                        .unwrap()
                }
            }))
            .await;
            let held = futures::future::join_all(leases.iter().map(|l| l.hold())).await;
            let holders = held.into_iter().filter(|h| *h.as_ref().unwrap()).count();
            assert_eq!(holders, 1, "round {round}");
        }
    }
}
