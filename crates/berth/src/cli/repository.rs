//! `berth repository`: what each repository holds, and deleting repositories, images and
//! tags (names follow `az acr repository`).
//!
//! Listings are read page by page (`/berth/v1/repositories…?n=&last=`) until the end, or
//! until `--top` entries; `--output json` prints the entries of every page read as one
//! array, each as the API writes it.

use berth_api::{ManifestView, PageQuery, RepositoryDeleted, RepositoryView, TagView};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use super::client::{ApiClient, ConnectionArgs, decode};
use super::output::{OutputArgs, Table};
use super::{CliError, confirm_delete};

/// The largest page the registry serves.
const PAGE: u32 = 1000;

/// `berth repository`.
#[derive(Args, Debug)]
pub struct RepositoryArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: RepositoryCommand,
}

/// The repository commands.
#[derive(Subcommand, Debug)]
pub enum RepositoryCommand {
    /// List repositories, with their manifest and tag counts, size and last change.
    List(ListArgs),
    /// Show a repository (counts, size, created, last change), or with --image a manifest.
    Show(ShowArgs),
    /// List a repository's tags; --detail adds each one's digest, media type, size and last
    /// update.
    ShowTags(ShowTagsArgs),
    /// List a repository's manifests with their media type, size, tags, push time and, for
    /// an index, its children.
    ShowManifests(ShowManifestsArgs),
    /// Delete a repository (every manifest and tag), or with --image one manifest and all
    /// its tags. Blob bytes are freed later, by garbage collection.
    Delete(DeleteArgs),
    /// Remove a tag; the manifest stays, pullable by digest.
    Untag(UntagArgs),
}

/// The order of a listing, as `az acr repository` names it.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OrderBy {
    /// Newest first.
    #[value(name = "time_desc")]
    TimeDesc,
    /// Oldest first.
    #[value(name = "time_asc")]
    TimeAsc,
}

impl OrderBy {
    fn as_str(self) -> &'static str {
        match self {
            OrderBy::TimeDesc => "time_desc",
            OrderBy::TimeAsc => "time_asc",
        }
    }
}

/// `repository list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// List at most N repositories [default: all].
    #[arg(long, value_name = "N")]
    top: Option<u32>,
    /// By creation time instead of by name.
    #[arg(long, value_enum)]
    orderby: Option<OrderBy>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `repository show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The repository.
    #[arg(
        long,
        short = 'n',
        required_unless_present = "image",
        conflicts_with = "image"
    )]
    name: Option<String>,
    /// A manifest instead: `REPOSITORY:TAG` or `REPOSITORY@DIGEST`.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `repository show-tags`.
#[derive(Args, Debug)]
pub struct ShowTagsArgs {
    /// The repository.
    #[arg(long, short = 'n')]
    name: String,
    /// Show each tag's manifest digest, media type, size and last update.
    #[arg(long)]
    detail: bool,
    /// List at most N tags [default: all].
    #[arg(long, value_name = "N")]
    top: Option<u32>,
    /// By last update instead of by name: `time_desc` lists the newest first.
    #[arg(long, value_enum)]
    orderby: Option<OrderBy>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `repository show-manifests`.
#[derive(Args, Debug)]
pub struct ShowManifestsArgs {
    /// The repository.
    #[arg(long, short = 'n')]
    name: String,
    /// List at most N manifests [default: all].
    #[arg(long, value_name = "N")]
    top: Option<u32>,
    /// By push time instead of by digest: `time_desc` lists the newest first.
    #[arg(long, value_enum)]
    orderby: Option<OrderBy>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `repository delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The repository: every manifest and tag in it goes.
    #[arg(
        long,
        short = 'n',
        required_unless_present = "image",
        conflicts_with = "image"
    )]
    name: Option<String>,
    /// One manifest instead, and every tag naming it: `REPOSITORY@DIGEST`, or
    /// `REPOSITORY:TAG` for the manifest the tag names.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// `repository untag`.
#[derive(Args, Debug)]
pub struct UntagArgs {
    /// The tag to remove: `REPOSITORY:TAG`.
    #[arg(long, value_name = "IMAGE")]
    image: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// An image as the commands take it: `REPOSITORY:TAG` or `REPOSITORY@DIGEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Image {
    Tag { repository: String, tag: String },
    Digest { repository: String, digest: String },
}

impl Image {
    fn parse(image: &str) -> Result<Image, CliError> {
        let wrong = || {
            CliError::usage(format!(
                "`{image}` is not an image: write REPOSITORY:TAG or REPOSITORY@DIGEST (`team/app:1.0`, `team/app@sha256:…`)"
            ))
        };
        if let Some((repository, digest)) = image.split_once('@') {
            if repository.is_empty() || digest.is_empty() {
                return Err(wrong());
            }
            return Ok(Image::Digest {
                repository: repository.to_owned(),
                digest: digest.to_owned(),
            });
        }
        match image.rsplit_once(':') {
            Some((repository, tag))
                if !repository.is_empty() && !tag.is_empty() && !tag.contains('/') =>
            {
                Ok(Image::Tag {
                    repository: repository.to_owned(),
                    tag: tag.to_owned(),
                })
            }
            _ => Err(wrong()),
        }
    }

    fn repository(&self) -> &str {
        match self {
            Image::Tag { repository, .. } | Image::Digest { repository, .. } => repository,
        }
    }
}

/// `/berth/v1/repositories/<name…>/<rest…>`, the name's `/` kept as path separators.
fn path<'a>(name: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut path = vec!["repositories"];
    path.extend(name.split('/'));
    path.extend(rest);
    path
}

/// Reads pages of `path` (in `order`) until the end or `top` entries; every entry as the
/// API wrote it.
fn read_pages(
    client: &ApiClient,
    path: &[&str],
    key: &str,
    top: Option<u32>,
    order: Option<OrderBy>,
) -> Result<Vec<Value>, CliError> {
    let mut entries = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let want = top.map_or(PAGE, |top| {
            (top as usize - entries.len()).min(PAGE as usize) as u32
        });
        if want == 0 {
            return Ok(entries);
        }
        let query = PageQuery {
            n: Some(want),
            last: last.take(),
            orderby: order.map(|o| o.as_str().to_owned()),
        };
        let mut page = client.get_query(path, &query)?;
        if let Some(Value::Array(items)) = page.get_mut(key).map(Value::take) {
            entries.extend(items);
        }
        match page.get("next").and_then(Value::as_str) {
            Some(next) => last = Some(next.to_owned()),
            None => return Ok(entries),
        }
    }
}

/// Runs a repository command.
pub fn run(args: RepositoryArgs) -> Result<(), CliError> {
    let client = args.connection.connect()?;
    match args.command {
        RepositoryCommand::List(a) => {
            let entries = read_pages(&client, &["repositories"], "repositories", a.top, a.orderby)?;
            a.output
                .print(Value::Array(entries), |list: Vec<RepositoryView>| {
                    print_repositories(&list)
                })
        }
        RepositoryCommand::Show(a) => match (a.name, a.image) {
            (_, Some(image)) => {
                let (_, view) = resolve(&client, &Image::parse(&image)?)?;
                a.output.print(view, |m: ManifestView| {
                    print_manifests(&[m]);
                })
            }
            (Some(name), None) => {
                let view = client.get(&path(&name, &[]))?;
                a.output
                    .print(view, |r: RepositoryView| print_repository(&r))
            }
            (None, None) => unreachable!("clap requires --name or --image"),
        },
        RepositoryCommand::ShowTags(a) => {
            let entries = read_pages(
                &client,
                &path(&a.name, &["_tags"]),
                "tags",
                a.top,
                a.orderby,
            )?;
            let detail = a.detail;
            a.output.print(Value::Array(entries), |tags: Vec<TagView>| {
                print_tags(&tags, detail)
            })
        }
        RepositoryCommand::ShowManifests(a) => {
            let entries = read_pages(
                &client,
                &path(&a.name, &["_manifests"]),
                "manifests",
                a.top,
                a.orderby,
            )?;
            a.output
                .print(Value::Array(entries), |manifests: Vec<ManifestView>| {
                    print_manifests(&manifests)
                })
        }
        RepositoryCommand::Delete(a) => match (a.name, a.image) {
            (_, Some(image)) => delete_image(&client, &Image::parse(&image)?, a.yes, &a.output),
            (Some(name), None) => {
                confirm_delete(
                    &format!("repository `{name}` with every manifest and tag in it"),
                    a.yes,
                )?;
                let answer = client.delete(&path(&name, &[]))?;
                a.output.print(answer, |d: RepositoryDeleted| {
                    println!(
                        "Deleted repository `{}`: {} manifest(s), {} tag(s), {} blob link(s).",
                        d.name, d.manifests_deleted, d.tags_deleted, d.blob_links_removed
                    );
                    eprintln!("{GC_NOTE}");
                })
            }
            (None, None) => unreachable!("clap requires --name or --image"),
        },
        RepositoryCommand::Untag(a) => {
            let Image::Tag { repository, tag } = Image::parse(&a.image)? else {
                return Err(CliError::usage(format!(
                    "`{}` names a digest; untag takes REPOSITORY:TAG (to delete a manifest, use `berth repository delete --image`)",
                    a.image
                )));
            };
            let answer = client.delete(&path(&repository, &["_tags", &tag]))?;
            a.output.print(answer, |t: TagView| {
                println!(
                    "Untagged `{repository}:{tag}`; its manifest stays, pullable as `{repository}@{}`.",
                    t.digest
                );
            })
        }
    }
}

/// Printed after a deletion, on standard error.
const GC_NOTE: &str = "The blobs' bytes stay on disk until garbage collection (`berth gc run`, or its schedule) frees those nothing references any more.";

/// The manifest an image names (resolving a tag), as the API shows it.
fn resolve(client: &ApiClient, image: &Image) -> Result<(String, Value), CliError> {
    let digest = match image {
        Image::Digest { digest, .. } => digest.clone(),
        Image::Tag { repository, tag } => {
            let tag: TagView = decode(client.get(&path(repository, &["_tags", tag]))?)?;
            tag.digest
        }
    };
    let view = client.get(&path(image.repository(), &["_manifests", &digest]))?;
    Ok((digest, view))
}

fn delete_image(
    client: &ApiClient,
    image: &Image,
    yes: bool,
    output: &OutputArgs,
) -> Result<(), CliError> {
    let repository = image.repository();
    let (digest, view) = resolve(client, image)?;
    let manifest: ManifestView = decode(view)?;
    let tags = if manifest.tags.is_empty() {
        "untagged".to_owned()
    } else {
        format!("tagged {}", manifest.tags.join(", "))
    };
    confirm_delete(&format!("manifest `{repository}@{digest}` ({tags})"), yes)?;
    let answer = client.delete(&path(repository, &["_manifests", &digest]))?;
    output.print(answer, |m: ManifestView| {
        let tags = if m.tags.is_empty() {
            String::new()
        } else {
            format!(" and its tag(s) {}", m.tags.join(", "))
        };
        println!("Deleted `{repository}@{}`{tags}.", m.digest);
        eprintln!("{GC_NOTE}");
    })
}

/// Bytes for people: `512 B`, `1.5 KiB`, `20.0 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn print_repositories(repositories: &[RepositoryView]) {
    let mut table = Table::new(&["NAME", "MANIFESTS", "TAGS", "SIZE", "LAST UPDATE"]);
    for r in repositories {
        table.row([
            r.name.clone(),
            r.manifest_count.to_string(),
            r.tag_count.to_string(),
            size(r.size),
            r.updated_at.clone(),
        ]);
    }
    table.print();
}

fn print_repository(r: &RepositoryView) {
    Table::fields()
        .field("Name", r.name.clone())
        .field("Manifests", r.manifest_count.to_string())
        .field("Tags", r.tag_count.to_string())
        .field("Blobs", r.blob_count.to_string())
        .field("Size", format!("{} ({} bytes)", size(r.size), r.size))
        .field("Created", r.created_at.clone())
        .field("Last update", r.updated_at.clone())
        .print();
}

fn print_tags(tags: &[TagView], detail: bool) {
    if !detail {
        let mut table = Table::new(&["TAG"]);
        for t in tags {
            table.row([t.name.clone()]);
        }
        table.print();
        return;
    }
    let mut table = Table::new(&["TAG", "DIGEST", "MEDIA TYPE", "SIZE", "LAST UPDATE"]);
    for t in tags {
        table.row([
            t.name.clone(),
            t.digest.clone(),
            t.media_type.clone(),
            size(t.size),
            t.updated_at.clone(),
        ]);
    }
    table.print();
}

fn print_manifests(manifests: &[ManifestView]) {
    let mut table = Table::new(&[
        "DIGEST",
        "MEDIA TYPE",
        "PLATFORM",
        "SIZE",
        "TAGS",
        "CREATED",
    ]);
    for m in manifests {
        table.row([
            m.digest.clone(),
            m.media_type.clone(),
            String::new(),
            size(m.size),
            m.tags.join(","),
            m.created_at.clone(),
        ]);
        // An index's children under it, indented, with their platforms and own sizes.
        for c in &m.children {
            table.row([
                format!("  {}", c.digest),
                c.media_type.clone(),
                c.platform.clone().unwrap_or_default(),
                size(c.size),
                String::new(),
                String::new(),
            ]);
        }
    }
    table.print();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images() {
        let tag = |r: &str, t: &str| Image::Tag {
            repository: r.into(),
            tag: t.into(),
        };
        assert_eq!(
            Image::parse("team/app:1.0").unwrap(),
            tag("team/app", "1.0")
        );
        assert_eq!(
            Image::parse("app@sha256:ab").unwrap(),
            Image::Digest {
                repository: "app".into(),
                digest: "sha256:ab".into()
            }
        );
        for wrong in ["app", "app:", ":v1", "@sha256:ab", "app@", "host:5000/app"] {
            assert!(Image::parse(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(20 << 20), "20.0 MiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn names_keep_their_slashes_in_the_path() {
        assert_eq!(
            path("team/app", &["_tags", "v1"]),
            ["repositories", "team", "app", "_tags", "v1"]
        );
    }
}
