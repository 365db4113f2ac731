#![doc = include_str!("../README.md")]

#[cfg(feature = "postgres")]
pub mod admin;
#[cfg(feature = "file")]
mod file;
mod flag;
mod hash;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "openfeature")]
mod openfeature;
mod rule;
mod set;
#[cfg(feature = "postgres")]
mod spec;
#[cfg(feature = "postgres")]
pub mod store;
mod variant;

#[cfg(feature = "file")]
pub use file::{FileError, FileSource, load_file};
pub use flag::{
    Evaluation, Flag, InvalidFlag, Reason, Resolution, check_flag_name, check_whitelist,
};
pub use hash::{VARIANT_SEPARATOR, bucket, murmur3_32_pair, murmur3_32_parts, variant_point};
#[cfg(feature = "metrics")]
pub use metrics::{EVALUATIONS, UNKNOWN_EVALUATIONS, record_usage};
#[cfg(feature = "openfeature")]
pub use openfeature::{ConfigurationChanged, FlagsProvider};
pub use rule::{Attribute, Attributes, Context, Operator, Rule, RuleValue};
pub use set::{FlagSet, FlagUsage, Flags, FlagsChanged, Resolved};
pub use variant::{Payload, TOTAL_WEIGHT, Variant};
