//! A reference model of the XDP program's decision, in plain Rust: what the program does
//! with a frame, given the same limits, lists and state, without a kernel. The differential
//! test (`tests/differential.rs`) runs the real program and this model side by side and
//! compares every frame's verdict, class and outcome.
//!
//! Modules: [`parse`] (the parser of `filter-ebpf/src/parse.rs`), [`decide`] (the policy of
//! `filter-ebpf/src/{main,limit,admission,prefix,lists,maps}.rs`).
//!
//! The model is a reading of the program, not of its documentation: where the two disagree,
//! the model follows the program and says so with a `PROGRAM BUG:` comment.

pub mod decide;
pub mod parse;

pub use decide::{Decision, Event, List, Model, XDP_DROP, XDP_PASS};
pub use parse::{Parsed, parse};
