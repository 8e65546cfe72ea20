//! The thin layer over the host that the sans-IO core (`ossensor-shared`)
//! leaves out: everything here reads the clock, the environment, /proc or
//! standard input, draws random numbers, or makes system calls.
//!
//! - [`log`]: the level-based log every process writes, and the syslog audit trail.
//! - [`clock`]: the time, for callers of the core.
//! - [`nonce`], [`random_key`]: random numbers the core takes as inputs.
//! - [`privileges`]: this process's uids and capability sets, read from /proc and audited.
//! - [`child`]: a child's start: its configuration from standard input.
//! - [`seqpacket`]: the control channels' datagrams, each carrying a descriptor.
//! - [`alloc_count`]: a counting allocator for the tests of the hot path.

pub mod alloc_count;
pub mod child;
pub mod clock;
pub mod log;
pub mod privileges;
pub mod seqpacket;

/// A fresh random nonce for a signed request: 32 lowercase hex digits.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).expect("the kernel's random source");
    hex::encode(b)
}

/// A random 128-bit key (a keyed hash's: whoever chooses what is hashed
/// must not know it).
pub fn random_key() -> [u64; 2] {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).expect("the kernel's random source");
    [u64::from_le_bytes(b[..8].try_into().expect("8 bytes")), u64::from_le_bytes(b[8..].try_into().expect("8 bytes"))]
}
