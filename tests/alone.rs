//! The integration tests that take the whole machine, in a test binary of
//! their own: 200 veths created at once (the kernel and 200 capture-workers
//! take both CPUs for a while) and a UDP flood under a CPU cap whose sender
//! must keep its rate. Cargo runs test binaries one after another, so no
//! test of `suite` runs beside them (beside the burst, a container test
//! and the slow clients' test of `suite` failed); `exclusive_slot()` keeps
//! them from running beside each other. Run one with
//! `cargo test --test alone burst::`.

mod burst;
mod cpu_cap;
