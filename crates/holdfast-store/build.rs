//! Rebuilds the crate when a migration file is added or removed:
//! `sqlx::migrate!` embeds the files it finds at build time, and without
//! this Cargo would only notice edits to files it had already embedded.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
