//! The `ossensor` supervisor as a library, so its pieces are tested on their own.
//!
//! - [`variables`]: every variable the sensor reads, declared once (name, old
//!   name, config-file key, default, check, secrecy, summary, docs).
//! - [`config`]: the command line, the environment and env files (stage 1,
//!   exactly what the user gave), then the validated [`config::Config`] (stage 2).
//! - [`envfile`]: Docker `--env-file` parsing.
//! - [`ere`]: the interface-name patterns (POSIX ERE as `grep -E` reads them).
//! - [`cfgfile`]: the generated INI config file: render, parse, write safely.
//! - [`interfaces`]: which interfaces to capture (pure selection + thin /sys, /proc readers).
//! - [`privileges`]: the children's user and capabilities, dropped between fork and exec.
//! - [`children`]: starting a child with its configuration on stdin.
//! - [`restart`]: restart backoff.
//! - [`netlink`]: wake-ups when interfaces come and go.
//! - [`sockdestroy`]: destroying local sockets for the workers (response actions).
//! - [`supervise`]: the event loop, restarts and ordered shutdown.

pub mod action_key;
pub mod cfgfile;
pub mod children;
pub mod config;
#[cfg(test)]
mod configuration_doc;
pub mod envfile;
pub mod ere;
pub mod interfaces;
pub mod netlink;
pub mod privileges;
pub mod restart;
pub mod sockdestroy;
pub mod supervise;
pub mod variables;
