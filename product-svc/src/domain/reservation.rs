//! An order's reservation across products, and the one function that says
//! what reserve, commit, release and the sweeper do to it in each state.
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
//!
//! A reserve takes its lines while the reservation is `RESERVING` and then
//! moves it, by CAS from there only, to `ACTIVE` (or, when a line cannot be
//! taken, to `RELEASED`); a retry finds it further on and reports it. The
//! sweeper finishes what a crash left between two states and asks the owner
//! order about an `ACTIVE` reservation that outlived it.

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
    /// ReserveStock for an order whose reservation exists: a retry, or the
    /// reserve itself once it took every line and asks to become active.
    Reserve,
    /// The order was paid: the held units become a sale.
    Commit,
    /// The order will not be paid, or was refunded: give the units back.
    Release,
    /// The sweeper's look once the reservation's `settle_at` has passed: a
    /// move cut short (a crash, a lost call), or an expiry or orphan that
    /// the owner order decides.
    Sweep,
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
pub enum Transition {
    /// CAS into `marker`, do `work` on every line, then CAS from `marker` to `done`.
    Run {
        marker: ReservationState,
        work: Work,
        done: ReservationState,
    },
    /// Take every line (each take idempotent per order), then CAS to `done`;
    /// if a line cannot be taken, give back those taken and CAS to `failed`.
    /// A CAS that finds the reservation moved meanwhile settles it with a
    /// release.
    Take {
        done: ReservationState,
        failed: ReservationState,
    },
    /// Already done: nothing changes.
    Done,
    /// Finish what was started by running `command` to its end.
    Settle(Command),
    /// Ask the owner order whether the stock was sold or is to be given back.
    AskOwner,
}

/// Why a command cannot proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Commit of a reservation still being made.
    NotComplete,
    /// Commit of (or reserve for) a reservation that was given back.
    Released,
}

/// The reservation state machine: what `command` does in state `from`.
pub fn next(from: ReservationState, command: Command) -> Result<Transition, Refusal> {
    use ReservationState as S;
    let run = |marker, work, done| Ok(Transition::Run { marker, work, done });
    match (command, from) {
        (Command::Reserve, S::Reserving) => Ok(Transition::Take {
            done: S::Active,
            failed: S::Released,
        }),
        (Command::Reserve, S::Active | S::Committing | S::Committed) => Ok(Transition::Done),
        (Command::Reserve, S::Releasing | S::Released | S::Restocking | S::Restocked) => {
            Err(Refusal::Released)
        }
        (Command::Commit, S::Active | S::Committing) => {
            run(S::Committing, Work::Commit, S::Committed)
        }
        (Command::Commit, S::Committed) => Ok(Transition::Done),
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
        (Command::Release, S::Released | S::Restocked) => Ok(Transition::Done),
        // Cut short mid-way: finish what was started.
        (Command::Sweep, S::Reserving | S::Releasing | S::Restocking) => {
            Ok(Transition::Settle(Command::Release))
        }
        (Command::Sweep, S::Committing) => Ok(Transition::Settle(Command::Commit)),
        // Expired or orphaned: its order says what became of it.
        (Command::Sweep, S::Active) => Ok(Transition::AskOwner),
        (Command::Sweep, S::Committed | S::Released | S::Restocked) => Ok(Transition::Done),
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
mod tests;
