//! `berth import`: the registry copies an image from another registry (`POST
//! /berth/v1/imports`), and the command follows the job until it ends, or returns at once
//! with `--no-wait`; `berth import list | show | cancel` look at and stop jobs.
//!
//! As with `az acr import`, `--username` and `--password` are the *source's* credentials;
//! the registry to manage is the last `berth login` (or `--server`, with `BERTH_USERNAME`
//! and `BERTH_PASSWORD` for its admin).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_api::{ImportCreate, ImportState, ImportView};
use clap::{Args, Subcommand};

use super::CliError;
use super::client::{ApiClient, ConnectionArgs, decode};
use super::output::{Format, OutputArgs, Table, print_json};

/// `berth import`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ImportArgs {
    #[command(subcommand)]
    command: Option<ImportCommand>,
    #[command(flatten)]
    start: StartArgs,
    #[command(flatten)]
    connection: ManagementConnection,
}

/// Looking at imports, and stopping them.
#[derive(Subcommand, Debug)]
enum ImportCommand {
    /// List the imports the registry remembers (running, waiting, and those of the last
    /// day), the newest first.
    List(ListArgs),
    /// Show an import: its state, progress and, if it failed, why.
    Show(IdArgs),
    /// Cancel an import that is waiting or running. What it stored stays (whole), no tag
    /// is set, and importing again reuses it.
    Cancel(IdArgs),
}

/// `berth import list`.
#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    output: OutputArgs,
}

/// `berth import show|cancel`.
#[derive(Args, Debug)]
struct IdArgs {
    /// The import's id, as `berth import` printed it.
    #[arg(long)]
    id: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// `berth import --source …`.
#[derive(Args, Debug)]
struct StartArgs {
    /// The image to import: REGISTRY[:PORT]/REPOSITORY[:TAG][@DIGEST], or a Docker Hub
    /// name (alpine:3.20). http:// or https:// in front names the scheme; without one,
    /// HTTPS, except for loopback addresses of the registry's machine.
    #[arg(long, required = true, value_name = "SOURCE")]
    source: Option<String>,
    /// Where to store it, REPOSITORY[:TAG]; repeat for more tags (one repository) [default:
    /// the source's repository and tag].
    #[arg(long = "image", short = 't', value_name = "REPOSITORY[:TAG]")]
    images: Vec<String>,
    /// User name at the source [default: anonymous].
    #[arg(long, short = 'u', requires = "source_password")]
    username: Option<String>,
    /// Password or access token at the source.
    #[arg(
        long,
        short = 'p',
        env = "BERTH_SOURCE_PASSWORD",
        hide_env_values = true,
        conflicts_with = "password_stdin",
        group = "source_password"
    )]
    password: Option<String>,
    /// Read the source's password from standard input.
    #[arg(long, group = "source_password")]
    password_stdin: bool,
    /// Copy the referrers (signatures, SBOMs, attestations) too.
    #[arg(long)]
    include_referrers: bool,
    /// Move a tag that points at another manifest (without it, such an import fails).
    #[arg(long)]
    force: bool,
    /// Allow plain HTTP to a source that is not on the registry's machine.
    #[arg(long)]
    source_insecure: bool,
    /// PEM file of CA certificates the registry should trust for the source, beside its
    /// system store (read here, sent with the request).
    #[arg(long, value_name = "FILE")]
    source_ca_cert: Option<PathBuf>,
    /// Return once the import has started, without waiting for it.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// The registry to manage. (`--username` and `--password` are the source's here; the
/// admin's come from the saved login, or `BERTH_USERNAME` and `BERTH_PASSWORD`.)
#[derive(Args, Debug)]
struct ManagementConnection {
    /// Registry to import into, as `host:port` or a URL [default: the last `berth login`].
    #[arg(
        long,
        short = 's',
        env = "BERTH_SERVER",
        global = true,
        help_heading = "Connection"
    )]
    server: Option<String>,
    /// PEM file of CA certificates to trust for that registry [default: the saved login's].
    #[arg(
        long,
        env = "BERTH_CA_CERT",
        global = true,
        value_name = "FILE",
        help_heading = "Connection"
    )]
    ca_cert: Option<PathBuf>,
    /// Allow plain HTTP to a --server that is not on this machine.
    #[arg(long, global = true, help_heading = "Connection")]
    insecure: bool,
}

impl ManagementConnection {
    fn connect(&self) -> Result<ApiClient, CliError> {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        ConnectionArgs {
            server: self.server.clone(),
            username: from_env("BERTH_USERNAME"),
            password: from_env("BERTH_PASSWORD"),
            ca_cert: self.ca_cert.clone(),
            insecure: self.insecure,
        }
        .connect()
        .map_err(|e| {
            if e.exit_code() == 3 {
                // The generic hint names --password, which is the source's here.
                e.hint("run `berth login <host:port>` first, or set BERTH_USERNAME and BERTH_PASSWORD: `berth import`'s --username and --password are the source's")
            } else {
                e
            }
        })
    }
}

/// Runs `berth import`.
pub fn run(args: ImportArgs) -> Result<(), CliError> {
    match args.command {
        None => start(args.start, &args.connection),
        Some(ImportCommand::List(a)) => {
            let client = args.connection.connect()?;
            let value = client.get(&["imports"])?;
            a.output
                .print(value, |imports: Vec<ImportView>| print_list(&imports))
        }
        Some(ImportCommand::Show(a)) => {
            let client = args.connection.connect()?;
            let value = client.get(&["imports", &a.id])?;
            a.output
                .print(value, |import: ImportView| print_one(&import))
        }
        Some(ImportCommand::Cancel(a)) => {
            let client = args.connection.connect()?;
            let value = client.post(&["imports", &a.id, "cancel"], &serde_json::json!({}))?;
            a.output
                .print(value, |import: ImportView| print_one(&import))
        }
    }
}

fn start(args: StartArgs, connection: &ManagementConnection) -> Result<(), CliError> {
    let source = args
        .source
        .ok_or_else(|| CliError::usage("give the image to import with --source"))?;
    let password = if args.password_stdin {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input).map_err(|e| {
            CliError::usage(format!("cannot read the password from standard input: {e}"))
        })?;
        Some(input.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        args.password
    };
    if password.is_some() && args.username.is_none() {
        return Err(CliError::usage("a source password needs its --username"));
    }
    let ca_certificates = match &args.source_ca_cert {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!(
                "cannot read the CA certificates of --source-ca-cert `{}`: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    let client = connection.connect()?;
    let body = ImportCreate {
        source,
        images: args.images,
        username: args.username,
        password,
        include_referrers: args.include_referrers,
        force: args.force,
        insecure: args.source_insecure,
        ca_certificates,
    };
    let job: ImportView = decode(client.post(&["imports"], &body)?)?;
    let id = job.id.clone();
    let interactive = std::io::stderr().is_terminal();
    eprintln!("Import {id} started: {} into {}.", job.source, target(&job));
    if args.no_wait {
        eprintln!("Follow it with: berth import show --id {id}");
        return print(&args.output, &job);
    }
    if interactive {
        eprintln!(
            "It runs in the registry: Ctrl-C stops waiting, not the import (`berth import cancel --id {id}` does)."
        );
    }
    let started = Instant::now();
    let mut job = job;
    while !is_finished(job.state) {
        std::thread::sleep(poll_interval(started.elapsed()));
        job = decode(client.get(&["imports", &id])?)?;
        if interactive {
            eprint!("\r\x1b[2K{}", progress_line(&job));
            std::io::stderr().flush().ok();
        }
    }
    if interactive {
        eprint!("\r\x1b[2K");
    }
    match job.state {
        ImportState::Succeeded => print(&args.output, &job),
        _ => Err(failure(&job)),
    }
}

/// How long to wait before asking again: often at first (small images finish in moments),
/// then once a second.
fn poll_interval(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(3) {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    }
}

fn is_finished(state: ImportState) -> bool {
    matches!(
        state,
        ImportState::Succeeded | ImportState::Failed | ImportState::Cancelled
    )
}

/// A job that did not succeed, as a command failure naming the source and the code.
fn failure(job: &ImportView) -> CliError {
    let error = match &job.error {
        Some(e) => CliError::failed(format!(
            "import {} of {} failed: {}: {}",
            job.id, job.source, e.code, e.message
        )),
        None => CliError::failed(format!(
            "import {} of {} ended {}",
            job.id, job.source, job.state
        )),
    };
    error.hint(match job.error.as_ref().map(|e| e.code.as_str()) {
        Some("SOURCE_UNAUTHORIZED") => {
            "give the source's credentials with --username and --password (or --password-stdin)"
                .to_owned()
        }
        Some("CONFLICT") => "pass --force to move the tag".to_owned(),
        Some("SOURCE_UNREACHABLE") => {
            "the registry itself connects to the source: check the address from the registry's machine (and --source-ca-cert for a private CA)".to_owned()
        }
        _ => format!("details: berth import show --id {} -o json", job.id),
    })
}

fn print(output: &OutputArgs, job: &ImportView) -> Result<(), CliError> {
    match output.output {
        Format::Json => print_json(&serde_json::to_value(job).expect("a view serialises")),
        Format::Table => print_one(job),
    }
    Ok(())
}

/// `repository:tag[,tag…]`, or the repository alone when stored by digest.
fn target(job: &ImportView) -> String {
    if job.tags.is_empty() {
        job.repository.clone()
    } else {
        format!("{}:{}", job.repository, job.tags.join(","))
    }
}

fn progress_line(job: &ImportView) -> String {
    let p = &job.progress;
    if p.blobs == 0 {
        return format!("{}: {} manifests read", job.state, p.manifests);
    }
    format!(
        "{}: {}/{} blobs, {} of {}",
        job.state,
        p.blobs_done,
        p.blobs,
        bytes(p.bytes_done),
        bytes(p.bytes)
    )
}

fn print_one(job: &ImportView) {
    let p = &job.progress;
    let mut table = Table::fields();
    table
        .field("ID", job.id.clone())
        .field("State", job.state.to_string())
        .field("Source", job.source.clone())
        .field("Repository", job.repository.clone())
        .field(
            "Tags",
            if job.tags.is_empty() {
                "(none: stored by digest)".to_owned()
            } else {
                job.tags.join(", ")
            },
        )
        .field("Digest", job.digest.clone().unwrap_or_default())
        .field("Media type", job.media_type.clone().unwrap_or_default())
        .field(
            "Manifests",
            if job.include_referrers {
                format!(
                    "{} of {} stored ({} referrers)",
                    p.manifests_done, p.manifests, p.referrers
                )
            } else {
                format!("{} of {} stored", p.manifests_done, p.manifests)
            },
        )
        .field(
            "Blobs",
            format!(
                "{} of {} in place ({} already here)",
                p.blobs_done, p.blobs, p.blobs_reused
            ),
        )
        .field(
            "Fetched",
            format!("{} of {}", bytes(p.bytes_done), bytes(p.bytes)),
        )
        .field("Created", job.created_at.clone())
        .field("Started", job.started_at.clone().unwrap_or_default())
        .field("Finished", job.finished_at.clone().unwrap_or_default());
    if let Some(e) = &job.error {
        table.field("Error", format!("{}: {}", e.code, e.message));
    }
    table.print();
}

fn print_list(imports: &[ImportView]) {
    let mut table = Table::new(&["ID", "STATE", "SOURCE", "TARGET", "PROGRESS", "CREATED"]);
    for job in imports {
        table.row([
            job.id.clone(),
            job.state.to_string(),
            job.source.clone(),
            target(job),
            match &job.error {
                Some(e) => e.code.clone(),
                None => format!("{}/{} blobs", job.progress.blobs_done, job.progress.blobs),
            },
            job.created_at.clone(),
        ]);
    }
    table.print();
}

/// A byte count for people: `512 B`, `12.3 MB` (powers of 1000, as registries show sizes).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_for_people() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_000), "1.0 kB");
        assert_eq!(bytes(12_345_678), "12.3 MB");
        assert_eq!(bytes(3_000_000_000), "3.0 GB");
    }
}
