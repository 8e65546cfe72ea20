//! The integration tests, one module per file, in one test binary (as
//! ripgrep does): the workspace's libraries are linked once, not once per
//! file (measured: the suite's own build 8.1 s -> 4.7 s, its test binaries
//! 2.0 GB -> 53 MB). Run one file's tests with
//! `cargo test --test suite faults::`, one test by its path. Files' tests
//! run beside each other's; the two that take the whole machine are in
//! `tests/alone.rs`, a binary cargo runs on its own.

mod actions;
mod attacks;
mod container;
mod dedup;
mod end_to_end;
mod faults;
mod fleet;
mod harness_selftest;
mod metrics;
mod packages;
mod resilience;
mod status;
mod supervisor_cli;
