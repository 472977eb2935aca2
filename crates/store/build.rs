//! `sqlx::migrate!` embeds `migrations/` when this crate is compiled, but
//! cargo does not know it reads them: a migration added or edited without
//! a change to this crate's sources would leave the binaries with the old
//! set (and `projsync migrate` would refuse the database as edited).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
