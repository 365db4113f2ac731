#![doc = include_str!("../README.md")]

mod flag;
mod hash;
mod set;

pub use flag::{Evaluation, Flag, Reason};
pub use hash::{bucket, murmur3_32_pair};
pub use set::{FlagSet, Flags};
