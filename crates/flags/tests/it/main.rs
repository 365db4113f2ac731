//! groundwork-flags' integration tests, in one test binary. `no_alloc.rs` stays a binary of its
//! own: it counts the allocations of the whole process.

#[cfg(feature = "postgres")]
mod common;
mod evaluation;
mod names;
mod openfeature;
mod sources;
mod store;
mod variants;
mod variants_admin;
mod variants_store;
