//! Sans-IO core shared by the sensor's three kinds of process and by the
//! collector. Nothing here opens a socket, reads a clock or sleeps: callers
//! pass bytes and "now" in, and get bytes, decisions and errors out.
//!
//! - [`ipc`]: the frames capture-workers and the uplink exchange over Unix sockets.
//! - [`pcapng`]: writing pcapng sections and checking them block by block.
//! - [`chunk`]: the compressed chunk envelope that crosses the network.
//! - [`auth`]: HMAC request authentication, the collector's proof, the replay window.
//! - [`delivery`]: delivery to the collector as a state machine: the spool, the accounting, retries.
//! - [`dedup`]: one frame seen on several interfaces, kept once.
//! - [`control`]: JSON control messages (registration, acknowledgements, errors).
//! - [`requests`]: the sensor's signed requests to the collector as plain data, and the check of each answer's proof.
//! - [`actions`]: response actions: which resets and probes to send for the segments seen,
//!   and (`actions::signed`) the action set the collector signs and each capture-worker verifies.
//! - [`supervision`]: the messages between the supervisor and its children on their control channels.
//! - [`sockdiag`]: destroying local sockets: the worker's request, the kernel's netlink message.
//! - [`tcpseg`]: TCP segments in Ethernet frames: parsing them, building resets and probes.
//! - [`bpf`]: classic BPF programs: compiling filters, the direction guard.
//! - [`filter`]: filter text leaving out the sensor's own traffic to the collector.
//! - [`privileges`]: uids and capability sets as /proc/self/status says them, for the audit trail.
//! - [`metrics`]: the Prometheus text format.
//! - [`telemetry`]: each process's typed snapshot and everything shown from it (log lines, metrics, status report, JSON line).
//! - [`timefmt`]: UTC timestamps for log lines and file names.

pub mod actions;
pub mod auth;
pub mod bpf;
pub mod children;
pub mod chunk;
pub mod control;
pub mod dedup;
pub mod delivery;
pub mod filter;
pub mod ipc;
pub mod metrics;
pub mod pcapng;
pub mod privileges;
pub mod requests;
pub mod sockdiag;
pub mod supervision;
pub mod tcpseg;
pub mod telemetry;
pub mod timefmt;

/// The version every process reports (log level 0, registration).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
