#![doc = include_str!("../README.md")]

#[cfg(feature = "postgres")]
pub mod admin;
#[cfg(feature = "file")]
mod file;
mod flag;
mod hash;
#[cfg(feature = "openfeature")]
mod openfeature;
mod set;
#[cfg(feature = "postgres")]
pub mod store;

#[cfg(feature = "file")]
pub use file::{FileError, FileSource, load_file};
pub use flag::{Evaluation, Flag, InvalidFlag, Reason, check_flag_name, check_whitelist};
pub use hash::{bucket, murmur3_32_pair};
#[cfg(feature = "openfeature")]
pub use openfeature::FlagsProvider;
pub use set::{FlagSet, Flags};
