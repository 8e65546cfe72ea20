//! Response actions as the running collector holds them: the book
//! ([`crate::actions`], `actions.json`), the key every set is signed with
//! ([`crate::action_key`]), a version every sensor's channel watches to
//! send the set again when it changes, and which sensors have a channel
//! open. Reports from sensors only mark the book dirty; the periodic
//! driver writes it.

use super::lock;
use crate::action_key::ActionKey;
use crate::actions::Book;
use ossensor_shared::actions::signed::SignedSet;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

pub struct Actions {
    /// Response actions (kept in `DATA_DIR/actions.json`).
    book: Mutex<Book>,
    /// Signs every set of actions the sensors receive.
    pub key: ActionKey,
    /// Bumped on every change of the set in force; each sensor's WebSocket
    /// watches it.
    version: tokio::sync::watch::Sender<u64>,
    /// Reports arrived since the book was last written.
    dirty: AtomicBool,
    /// Open response-action channels per sensor.
    channels: Mutex<BTreeMap<String, usize>>,
}

impl Actions {
    pub fn new(book: Book, key: ActionKey) -> Actions {
        Actions { book: Mutex::new(book), key, version: tokio::sync::watch::Sender::new(0), dirty: AtomicBool::new(false), channels: Mutex::default() }
    }

    /// The book, locked.
    pub fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }

    /// The set in force now, signed with the action key.
    pub fn signed(&self) -> SignedSet {
        let set = self.book().action_set(ossensor_host::clock::now_ns());
        self.key.sign(&set)
    }

    /// Tells every sensor's WebSocket to send the set in force again.
    pub fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// A report changed the book: written by the periodic driver.
    pub fn reported(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the book if reports changed it.
    pub fn save_if_reported(&self) -> std::io::Result<()> {
        if self.dirty.swap(false, Ordering::Relaxed) {
            self.book().save()?;
        }
        Ok(())
    }

    /// A channel of `sensor` opened (`open`) or closed.
    pub fn set_channel_open(&self, sensor: &str, open: bool) {
        let mut m = lock(&self.channels);
        let n = m.entry(sensor.to_string()).or_default();
        if open {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(sensor);
            }
        }
    }

    /// Sensors with an open response-action channel.
    pub fn channels_open(&self) -> Vec<String> {
        lock(&self.channels).keys().cloned().collect()
    }
}
