//! The parsers under fuzzing that live in heavy crates, compiled here from their source
//! files. Each of these files depends on nothing but `std` (and `thiserror`) by design; a
//! dependency added to one of them shows up here as a build error of the fuzz targets.

#![allow(dead_code, missing_docs)]

/// `berth-server`'s `/v2/…` path parser.
#[path = "../../crates/berth-server/src/route.rs"]
pub mod route;

/// `berth-server`'s `Range` and `Content-Range` parsers.
#[path = "../../crates/berth-server/src/range.rs"]
pub mod range;

/// `berth-sync`'s connection string parser.
#[path = "../../crates/berth-sync/src/connection.rs"]
pub mod connection;
