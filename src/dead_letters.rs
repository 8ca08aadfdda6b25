//! `shopmesh dead-letters [<consumer>]` lists what the services' consumers
//! gave up on, with why; `shopmesh dead-letters replay <consumer>` sends
//! those events round again once the cause is fixed, and clears them.
//! Both read the bus from the environment like the services do
//! (`NATS_URL`, `NATS_STREAM`, `NATS_SUBJECT_PREFIX`, NATS credentials).

use std::process::ExitCode;

use platform::events::nats::{NatsBus, NatsSettings};

const USAGE: &str = "usage: shopmesh dead-letters [<consumer>] | dead-letters replay <consumer>";

/// Runs the command with the arguments after `dead-letters`.
pub fn main(args: &[String]) -> ExitCode {
    let (replay, consumer) = match args {
        [] => (false, None),
        [replay, consumer] if replay == "replay" => (true, Some(consumer.as_str())),
        [consumer] if consumer != "replay" => (false, Some(consumer.as_str())),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match platform::runtime::load_config("shopmesh") {
        Ok(config) => config,
        Err(code) => return code,
    };
    let Some(url) = config.nats_url.clone() else {
        eprintln!("shopmesh: dead letters are kept by NATS JetStream; set NATS_URL");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("shopmesh: {err}");
            return ExitCode::FAILURE;
        }
    };
    let settings = NatsSettings::from_config(&config);
    let outcome = runtime.block_on(async {
        // The deployment's stream as it is: a tool changes nothing of it.
        let bus = NatsBus::attach(&url, settings).await?;
        match (replay, consumer) {
            (true, Some(consumer)) => {
                let replay = bus.replay_dead_letters(consumer).await?;
                for (letter, why) in &replay.skipped {
                    println!("skipped #{letter}: {why}");
                }
                println!(
                    "{} dead letter(s) of {consumer} published again, {} skipped",
                    replay.replayed,
                    replay.skipped.len()
                );
            }
            _ => {
                let letters = bus.dead_letters(consumer).await?;
                for letter in &letters {
                    let (kind, id, about) = letter
                        .envelope
                        .as_ref()
                        .map_or(("(undecodable)", "", ""), |e| {
                            (e.r#type.as_str(), e.id.as_str(), e.aggregate_id.as_str())
                        });
                    println!(
                        "{} #{} {kind} {id} ({about}) after {} attempt(s): {}",
                        letter.consumer, letter.sequence, letter.attempts, letter.error
                    );
                }
                println!("{} dead letter(s)", letters.len());
            }
        }
        Ok::<(), platform::events::BusError>(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shopmesh: {err}");
            ExitCode::FAILURE
        }
    }
}
