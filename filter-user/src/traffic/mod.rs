//! What the traffic looks like: the packet samples the program hands over ([`sample`]) and
//! the per-service picture the daemon learns from them ([`baseline`]), from which attacks
//! and their signatures are told apart (issue 12).

pub mod baseline;
pub mod detect;
pub mod mine;
pub mod sample;
pub mod view;
