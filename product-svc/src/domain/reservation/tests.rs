//! Unit tests of the reservation state machine: every state against every
//! command.

use super::ReservationState as S;
use super::*;

/// Every command, in the order of the table's columns.
const COMMANDS: [Command; 4] = [
    Command::Reserve,
    Command::Commit,
    Command::Release,
    Command::Sweep,
];

/// The column of `command`; a new command fails to compile here until the
/// table has a column for it.
fn column(command: Command) -> usize {
    match command {
        Command::Reserve => 0,
        Command::Commit => 1,
        Command::Release => 2,
        Command::Sweep => 3,
    }
}

#[test]
fn the_reservation_table() {
    let take = Ok(Transition::Take {
        done: S::Active,
        failed: S::Released,
    });
    let commit = Ok(Transition::Run {
        marker: S::Committing,
        work: Work::Commit,
        done: S::Committed,
    });
    let release = Ok(Transition::Run {
        marker: S::Releasing,
        work: Work::Release,
        done: S::Released,
    });
    let restock = Ok(Transition::Run {
        marker: S::Restocking,
        work: Work::Restock,
        done: S::Restocked,
    });
    let done = Ok(Transition::Done);
    let finish_release = Ok(Transition::Settle(Command::Release));
    let finish_commit = Ok(Transition::Settle(Command::Commit));
    let ask_owner = Ok(Transition::AskOwner);
    let not_complete = Err(Refusal::NotComplete);
    let released = Err(Refusal::Released);
    #[rustfmt::skip]
    let table = [
        //              Reserve   Commit        Release  Sweep
        (S::Reserving,  [take,     not_complete, release, finish_release]),
        (S::Active,     [done,     commit,       release, ask_owner]),
        (S::Committing, [done,     commit,       restock, finish_commit]),
        (S::Committed,  [done,     done,         restock, done]),
        (S::Releasing,  [released, released,     release, finish_release]),
        (S::Released,   [released, released,     done,    done]),
        (S::Restocking, [released, released,     restock, finish_release]),
        (S::Restocked,  [released, released,     done,    done]),
    ];
    assert_eq!(
        table.map(|(state, _)| state),
        S::ALL,
        "every state has a row"
    );
    let mut seen = 0;
    for (from, row) in table {
        for command in COMMANDS {
            let expected = row[column(command)];
            assert_eq!(next(from, command), expected, "{command:?} from {from:?}");
            seen += 1;
        }
    }
    assert_eq!(seen, 32, "every state and command is in the table");
}

#[test]
fn a_command_never_moves_a_final_state_somewhere_else() {
    for from in S::ALL.into_iter().filter(|s| s.is_final()) {
        for command in COMMANDS {
            match next(from, command) {
                Ok(Transition::Run { marker, .. }) => {
                    // Only a release of a sale may reopen it, as a restock.
                    assert_eq!(
                        (from, command, marker),
                        (S::Committed, Command::Release, S::Restocking)
                    );
                }
                Ok(other @ (Transition::Take { .. } | Transition::Settle(_))) => {
                    panic!("{command:?} from {from:?} gives {other:?}")
                }
                Ok(Transition::Done | Transition::AskOwner) | Err(_) => {}
            }
        }
    }
}

#[test]
fn each_marker_is_recognised_by_the_other_command() {
    // Whatever marker one command left (a crash, or a race), the other
    // command still has a defined way forward.
    for marker in [S::Committing, S::Releasing, S::Restocking] {
        assert!(next(marker, Command::Release).is_ok(), "{marker:?}");
    }
    assert_eq!(next(S::Releasing, Command::Commit), Err(Refusal::Released));
}

#[test]
fn the_sweeper_settles_every_state_between_two_others() {
    for from in S::ALL {
        let swept = next(from, Command::Sweep);
        match from {
            S::Active => assert_eq!(swept, Ok(Transition::AskOwner)),
            _ if from.is_final() => assert_eq!(swept, Ok(Transition::Done), "{from:?}"),
            _ => assert!(
                matches!(swept, Ok(Transition::Settle(_))),
                "{from:?} gives {swept:?}"
            ),
        }
    }
}

#[test]
fn only_a_reserving_reservation_may_activate() {
    for s in S::ALL {
        assert_eq!(may_activate(s), s == S::Reserving, "{s:?}");
        assert_eq!(
            may_activate(s),
            matches!(next(s, Command::Reserve), Ok(Transition::Take { .. })),
            "{s:?}"
        );
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
