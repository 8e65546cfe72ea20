//! The supervisor's control channels to its children: one `SOCK_SEQPACKET`
//! socket pair per child, made by the supervisor before the child starts.
//! Each message is one bincode-encoded datagram; a message that hands over
//! a connection carries it as a file descriptor (`SCM_RIGHTS`).
//!
//! These channels are how capture-workers and the uplink meet: the
//! supervisor makes a stream socket pair for each worker and gives one end
//! to the worker and the other to the uplink. No socket has a name in the
//! file system, so no other process, whatever its uid, can pose as either.
//! The supervisor also pins the collector's action key here and hands it to
//! the workers: the uplink offers the key, it never gives it to a worker.

use crate::actions::signed::PublicKey;
use serde::{Deserialize, Serialize};

/// Largest message either side accepts.
pub const MAX_MESSAGE: usize = 4096;
/// The fd a capture-worker finds its control channel at (fd 3 is its
/// socket-destroy channel).
pub const WORKER_CONTROL_FD: i32 = 4;
/// The fd the uplink finds its control channel at.
pub const UPLINK_CONTROL_FD: i32 = 3;

/// Supervisor → capture-worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    /// A new connection to the uplink: the descriptor sent with this
    /// message. It replaces any previous one.
    Uplink,
    /// The collector's action key, as the supervisor pinned it.
    ActionKey(PublicKey),
}

/// Capture-worker → supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The connection to the uplink failed (closed, or it sent a malformed
    /// frame): a new one, please.
    NeedUplink,
}

/// Supervisor → uplink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToUplink {
    /// A capture-worker's connection: the descriptor sent with this
    /// message. Its hello must name this interface and pid.
    Worker { interface: String, pid: u32 },
}

/// Uplink → supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromUplink {
    /// The action key the collector named at registration (in an answer
    /// that proved the shared key). The supervisor pins the first one.
    ActionKey(PublicKey),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_little_endian().with_fixed_int_encoding().with_limit::<MAX_MESSAGE>()
}

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(msg, config()).expect("control messages encode")
}

/// One datagram's message; anything else (trailing bytes included) is an
/// error that says what was wrong.
pub fn decode<T: for<'de> Deserialize<'de>>(datagram: &[u8]) -> Result<T, String> {
    if datagram.len() > MAX_MESSAGE {
        return Err(format!("message of {} bytes (at most {MAX_MESSAGE})", datagram.len()));
    }
    let (msg, used) = bincode::serde::decode_from_slice(datagram, config()).map_err(|e| e.to_string())?;
    if used != datagram.len() {
        return Err(format!("{} bytes after the message", datagram.len() - used));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip_and_trailing_bytes_are_refused() {
        let key = PublicKey([7; 32]);
        for m in [ToWorker::Uplink, ToWorker::ActionKey(key)] {
            assert_eq!(decode::<ToWorker>(&encode(&m)).unwrap(), m);
        }
        let w = ToUplink::Worker { interface: "eth0".into(), pid: 42 };
        assert_eq!(decode::<ToUplink>(&encode(&w)).unwrap(), w);
        assert_eq!(decode::<FromUplink>(&encode(&FromUplink::ActionKey(key))).unwrap(), FromUplink::ActionKey(key));
        assert_eq!(decode::<FromWorker>(&encode(&FromWorker::NeedUplink)).unwrap(), FromWorker::NeedUplink);
        let mut long = encode(&FromWorker::NeedUplink);
        long.push(0);
        assert!(decode::<FromWorker>(&long).unwrap_err().contains("1 bytes after"));
        assert!(decode::<FromUplink>(&[9, 0, 0, 0]).is_err(), "no such variant");
    }

    proptest! {
        #[test]
        fn any_datagram_is_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode::<ToWorker>(&bytes);
            let _ = decode::<FromWorker>(&bytes);
            let _ = decode::<ToUplink>(&bytes);
            let _ = decode::<FromUplink>(&bytes);
        }
    }
}
