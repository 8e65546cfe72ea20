//! The integration tests, one module per file, in one test binary (as
//! ripgrep does): the workspace's libraries are linked once, not once per
//! file (measured: the suite's own build 8.1 s -> 4.7 s, its test binaries
//! 2.0 GB -> 53 MB). Run one file's tests with
//! `cargo test --test suite faults::`, one test by its path. Files' tests
//! now run beside each other's: the few that take the whole machine or
//! bound a time hold `exclusive_slot()` so that they never overlap.

mod actions;
mod attacks;
mod burst;
mod container;
mod cpu_cap;
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
