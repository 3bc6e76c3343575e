//! `berth gc`: garbage collection on demand, its last runs, and stopping one.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use berth_api::{GcRunRequest, GcRunView};
use clap::{Args, Subcommand};

use super::CliError;
use super::client::ConnectionArgs;
use super::output::{OutputArgs, Table};

/// `berth gc`.
#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: GcCommand,
}

/// The garbage collection commands.
#[derive(Subcommand, Debug)]
pub enum GcCommand {
    /// Collect now: free the bytes of blobs nothing references any more, apply the
    /// retention rules, remove abandoned uploads. The registry keeps serving meanwhile.
    Run(RunArgs),
    /// Show the last collections (the one under way with its progress).
    Status(StatusArgs),
    /// Stop the collection under way (what it removed stays removed).
    Stop(StatusArgs),
}

/// `berth gc run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Count what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Start it and return at once, without waiting for its end.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Just `--output`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs a garbage collection command.
pub fn run(args: GcArgs) -> Result<(), CliError> {
    let client = args.connection.connect()?;
    match args.command {
        GcCommand::Run(a) => {
            let started = client.post(&["gc", "runs"], &GcRunRequest { dry_run: a.dry_run })?;
            if a.no_wait {
                return a.output.print(started, |run: GcRunView| print_runs(&[run]));
            }
            let run: GcRunView = super::client::decode(started)?;
            let id = run.id.to_string();
            let terminal = std::io::stderr().is_terminal() && !a.output.is_json();
            loop {
                let value = client.get(&["gc", "runs", &id])?;
                let run: GcRunView = super::client::decode(value.clone())?;
                if run.finished_at.is_some() {
                    if terminal {
                        eprintln!();
                    }
                    return a.output.print(value, |run: GcRunView| print_runs(&[run]));
                }
                if terminal {
                    eprint!(
                        "\rcollecting: {} blobs, {} freed, {} tags, {} manifests, {} uploads removed so far",
                        run.blobs_removed,
                        bytes(run.bytes_freed),
                        run.tags_removed,
                        run.manifests_removed,
                        run.uploads_removed
                    );
                    std::io::stderr().flush().ok();
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        GcCommand::Status(a) => {
            let value = client.get(&["gc", "runs"])?;
            a.output
                .print(value, |runs: Vec<GcRunView>| print_runs(&runs))
        }
        GcCommand::Stop(a) => {
            let runs: Vec<GcRunView> = super::client::decode(client.get(&["gc", "runs"])?)?;
            let Some(current) = runs.iter().find(|r| r.finished_at.is_none()) else {
                return Err(CliError::failed("no garbage collection is running"));
            };
            let value = client.post(&["gc", "runs", &current.id.to_string(), "stop"], &())?;
            a.output.print(value, |run: GcRunView| print_runs(&[run]))
        }
    }
}

/// `n` bytes for people: `1.5 GB`, `230 kB`, `12 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn print_runs(runs: &[GcRunView]) {
    if runs.is_empty() {
        println!("No garbage collection has run yet.");
        return;
    }
    let mut table = Table::new(&[
        "RUN",
        "STARTED",
        "OUTCOME",
        "BLOBS",
        "FREED",
        "TAGS",
        "MANIFESTS",
        "UPLOADS",
    ]);
    for run in runs {
        let outcome = if run.dry_run {
            format!("{} (dry run: would remove)", run.outcome)
        } else {
            run.outcome.clone()
        };
        table.row([
            run.id.to_string(),
            run.started_at.clone(),
            outcome,
            run.blobs_removed.to_string(),
            bytes(run.bytes_freed),
            run.tags_removed.to_string(),
            run.manifests_removed.to_string(),
            run.uploads_removed.to_string(),
        ]);
    }
    table.print();
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_for_people() {
        assert_eq!(super::bytes(12), "12 B");
        assert_eq!(super::bytes(230_400), "230.4 kB");
        assert_eq!(super::bytes(1_500_000_000), "1.5 GB");
    }
}
