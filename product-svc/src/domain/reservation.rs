//! An order's reservation across products, and the one function that says
//! what commit and release do to it in each state.
//!
//! A reservation is an intent record (its lines, written before any product
//! changes) with a state. Commit and release first move it, by CAS, into a
//! marker state (`Committing`, `Releasing`, `Restocking`) that the other
//! command recognises, then change the products (each change idempotent per
//! order), then move it, by CAS from that marker only, to the final state.
//! Whichever command's marker lands first decides; the other adapts:
//!
//! ```text
//!             finish reserve            commit
//! RESERVING ───────────────▶ ACTIVE ───────────▶ COMMITTING ──▶ COMMITTED
//!     │ release                │ release             │ release        │ release
//!     ▼                        ▼                     ▼                ▼
//! RELEASING ──▶ RELEASED   RELEASING             RESTOCKING ──▶ RESTOCKED
//! ```
//!
//! A release that overtakes a commit turns it into a restock: lines the
//! commit reached are put back on sale, the others released; the commit's
//! final CAS then fails and it reports the reservation released. Products
//! remember orders released before their reservation reached them
//! ([`super::Product::release`]), so a reserve still in flight cannot hold
//! stock for a released order.

use serde::{Deserialize, Serialize};

/// State of an order's reservation across products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Being applied line by line.
    Reserving,
    Active,
    Committing,
    Committed,
    Releasing,
    Released,
    Restocking,
    Restocked,
}

impl ReservationState {
    pub const ALL: [ReservationState; 8] = [
        ReservationState::Reserving,
        ReservationState::Active,
        ReservationState::Committing,
        ReservationState::Committed,
        ReservationState::Releasing,
        ReservationState::Released,
        ReservationState::Restocking,
        ReservationState::Restocked,
    ];

    /// Nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ReservationState::Committed | ReservationState::Released | ReservationState::Restocked
        )
    }

    /// Stock is held for the order (not yet sold nor given back).
    pub fn holds_stock(self) -> bool {
        matches!(
            self,
            ReservationState::Reserving | ReservationState::Active | ReservationState::Releasing
        )
    }
}

/// What is asked of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The order was paid: the held units become a sale.
    Commit,
    /// The order will not be paid, or was refunded: give the units back.
    Release,
}

/// What to do to the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Held units back on sale.
    Release,
    /// Held units leave the reserved count: sold.
    Commit,
    /// Sold units back on sale (held ones, if the commit had not reached them, released).
    Restock,
}

/// How a command proceeds from a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// CAS into `marker`, do `work` on every line, then CAS from `marker` to `done`.
    Run {
        marker: ReservationState,
        work: Work,
        done: ReservationState,
    },
    /// Already done: nothing changes.
    Done,
}

/// Why a command cannot proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Commit of a reservation still being made.
    NotComplete,
    /// Commit of a reservation that was given back.
    Released,
}

/// The reservation state machine: what `command` does in state `from`.
pub fn plan(from: ReservationState, command: Command) -> Result<Plan, Refusal> {
    use ReservationState as S;
    let run = |marker, work, done| Ok(Plan::Run { marker, work, done });
    match (command, from) {
        (Command::Commit, S::Active | S::Committing) => {
            run(S::Committing, Work::Commit, S::Committed)
        }
        (Command::Commit, S::Committed) => Ok(Plan::Done),
        (Command::Commit, S::Reserving) => Err(Refusal::NotComplete),
        (Command::Commit, S::Releasing | S::Released | S::Restocking | S::Restocked) => {
            Err(Refusal::Released)
        }
        (Command::Release, S::Reserving | S::Active | S::Releasing) => {
            run(S::Releasing, Work::Release, S::Released)
        }
        (Command::Release, S::Committing | S::Committed | S::Restocking) => {
            run(S::Restocking, Work::Restock, S::Restocked)
        }
        (Command::Release, S::Released | S::Restocked) => Ok(Plan::Done),
    }
}

/// Whether a reserve that applied every line may make the reservation
/// active: only if nothing released it meanwhile.
pub fn may_activate(current: ReservationState) -> bool {
    current == ReservationState::Reserving
}

/// The intent record of an order's reservation: its lines, written before
/// any product changes, so release and commit know what to undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub lines: Vec<(String, i64)>,
    pub state: ReservationState,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// By when the owner order should have been paid or given up (Unix
    /// seconds); past it, the sweeper asks the order what became of it.
    #[serde(default)]
    pub expires_at: i64,
    /// When the sweeper should look at it next (Unix seconds, indexed);
    /// absent once the reservation is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_at: Option<i64>,
}

impl Reservation {
    /// Moves to `state` at `now`, scheduling the sweeper's next look
    /// `recheck` seconds later (none once final).
    pub fn enter(&mut self, state: ReservationState, now: i64, recheck: i64) {
        self.state = state;
        self.updated_at = now;
        self.settle_at = (!state.is_final()).then_some(now + recheck);
    }
}

#[cfg(test)]
mod tests {
    use super::ReservationState as S;
    use super::*;

    #[test]
    fn the_reservation_table() {
        let table = [
            (Command::Commit, S::Reserving, Err(Refusal::NotComplete)),
            (
                Command::Commit,
                S::Active,
                Ok(Plan::Run {
                    marker: S::Committing,
                    work: Work::Commit,
                    done: S::Committed,
                }),
            ),
            (
                Command::Commit,
                S::Committing,
                Ok(Plan::Run {
                    marker: S::Committing,
                    work: Work::Commit,
                    done: S::Committed,
                }),
            ),
            (Command::Commit, S::Committed, Ok(Plan::Done)),
            (Command::Commit, S::Releasing, Err(Refusal::Released)),
            (Command::Commit, S::Released, Err(Refusal::Released)),
            (Command::Commit, S::Restocking, Err(Refusal::Released)),
            (Command::Commit, S::Restocked, Err(Refusal::Released)),
        ];
        let release = Ok(Plan::Run {
            marker: S::Releasing,
            work: Work::Release,
            done: S::Released,
        });
        let restock = Ok(Plan::Run {
            marker: S::Restocking,
            work: Work::Restock,
            done: S::Restocked,
        });
        let release_table = [
            (Command::Release, S::Reserving, release),
            (Command::Release, S::Active, release),
            (Command::Release, S::Releasing, release),
            (Command::Release, S::Released, Ok(Plan::Done)),
            (Command::Release, S::Committing, restock),
            (Command::Release, S::Committed, restock),
            (Command::Release, S::Restocking, restock),
            (Command::Release, S::Restocked, Ok(Plan::Done)),
        ];
        let mut seen = 0;
        for (command, from, expected) in table.into_iter().chain(release_table) {
            assert_eq!(plan(from, command), expected, "{command:?} from {from:?}");
            seen += 1;
        }
        assert_eq!(
            seen,
            2 * S::ALL.len(),
            "every state and command is in the table"
        );
    }

    #[test]
    fn a_command_never_moves_a_final_state_somewhere_else() {
        for from in S::ALL.into_iter().filter(|s| s.is_final()) {
            for command in [Command::Commit, Command::Release] {
                match plan(from, command) {
                    Ok(Plan::Run { marker, .. }) => {
                        // Only a release of a sale may reopen it, as a restock.
                        assert_eq!(
                            (from, command, marker),
                            (S::Committed, Command::Release, S::Restocking)
                        );
                    }
                    Ok(Plan::Done) | Err(_) => {}
                }
            }
        }
    }

    #[test]
    fn each_marker_is_recognised_by_the_other_command() {
        // Whatever marker one command left (a crash, or a race), the other
        // command still has a defined way forward.
        for marker in [S::Committing, S::Releasing, S::Restocking] {
            assert!(plan(marker, Command::Release).is_ok(), "{marker:?}");
        }
        assert_eq!(plan(S::Releasing, Command::Commit), Err(Refusal::Released));
    }

    #[test]
    fn only_a_reserving_reservation_may_activate() {
        for s in S::ALL {
            assert_eq!(may_activate(s), s == S::Reserving, "{s:?}");
        }
    }

    #[test]
    fn final_states_are_not_rechecked() {
        let mut r = Reservation {
            lines: vec![("p".into(), 1)],
            state: S::Reserving,
            created_at: 0,
            updated_at: 0,
            expires_at: 0,
            settle_at: None,
        };
        r.enter(S::Active, 10, 60);
        assert_eq!(r.settle_at, Some(70));
        r.enter(S::Committed, 20, 60);
        assert_eq!(
            (r.state, r.settle_at, r.updated_at),
            (S::Committed, None, 20)
        );
        assert!(S::Active.holds_stock() && !S::Committed.holds_stock());
    }
}
