//! Work queued per key and written by one task per key at a time: the
//! queue both batch writers share (the per-document [`super::Coalescer`]
//! and Postgres' per-table statements).
//!
//! The first item for a key makes its caller the leader, who starts the
//! key's writer; items that arrive meanwhile wait in the lane and the
//! writer takes them in its next batch. When the lane is empty the key is
//! released, and the next item leads again.

use std::collections::HashMap;
use std::sync::Mutex;

pub(super) struct Lanes<P> {
    lanes: Mutex<HashMap<String, Vec<P>>>,
}

impl<P> Default for Lanes<P> {
    fn default() -> Self {
        Self {
            lanes: Mutex::new(HashMap::new()),
        }
    }
}

impl<P> Lanes<P> {
    /// Queues `item` under `key`. True when no writer is at work on the
    /// key: the caller must start one.
    pub(super) fn push(&self, key: &str, item: P) -> bool {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        match lanes.get_mut(key) {
            Some(waiting) => {
                waiting.push(item);
                false
            }
            None => {
                lanes.insert(key.to_string(), vec![item]);
                true
            }
        }
    }

    /// The writer's next batch for `key` (at most `max` items, oldest
    /// first), or `None` once none waits: the key is then released.
    pub(super) fn next(&self, key: &str, max: usize) -> Option<Vec<P>> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = lanes.get_mut(key)?;
        if waiting.is_empty() {
            lanes.remove(key);
            return None;
        }
        let take = waiting.len().min(max);
        Some(waiting.drain(..take).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::lanes::Lanes;

    #[test]
    fn the_first_item_leads_later_ones_wait_and_an_empty_lane_is_released() {
        let lanes = Lanes::default();
        assert!(lanes.push("a", 1), "first item: start a writer");
        assert!(!lanes.push("a", 2), "a writer is at work");
        assert!(!lanes.push("a", 3));
        assert!(lanes.push("b", 9), "another key has its own writer");
        assert_eq!(lanes.next("a", 2), Some(vec![1, 2]));
        assert_eq!(lanes.next("a", 2), Some(vec![3]));
        assert!(
            !lanes.push("a", 4),
            "still held until the writer finds it empty"
        );
        assert_eq!(lanes.next("a", 10), Some(vec![4]));
        assert_eq!(lanes.next("a", 10), None);
        assert!(lanes.push("a", 5), "released: the next item leads again");
    }
}
