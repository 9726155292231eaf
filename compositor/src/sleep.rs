//! The screen locks before the machine sleeps. The desktop session holds a logind "delay"
//! inhibitor for sleep; when logind announces the sleep (`PrepareForSleep(true)`), the lock
//! command runs, and the inhibitor is let go only once every output has shown the locker
//! (a page flip with the lock surfaces), so the first frame after waking up is the locker and
//! never the desktop. logind sleeps anyway after its `InhibitDelayMaxSec` (5 s by default);
//! [`LOCK_WAIT`] lets go a little before, with a warning. On wake-up a new inhibitor is taken.
//!
//! The system bus is read on a thread of its own (zbus, blocking), which hands events to the
//! event loop through a channel.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use smithay::reexports::calloop::channel::{self, Channel, Sender};
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};

use crate::state::State;

/// How long the locker may take to cover every output before sleep goes ahead without it.
pub const LOCK_WAIT: Duration = Duration::from_secs(4);

/// What the logind thread tells the event loop.
pub enum Event {
    /// A new inhibitor to hold until the next sleep.
    Held(OwnedFd),
    /// The machine is about to sleep: lock, then let go of the inhibitor.
    Preparing,
    /// The machine woke up.
    Resumed,
    /// logind could not be reached or refused; the session goes on without locking on sleep.
    Failed(String),
}

/// The session's side of the inhibitor.
#[derive(Default)]
pub struct Sleep {
    held: Option<OwnedFd>,
    /// Since when logind waits for the lock.
    preparing: Option<Instant>,
}

impl Sleep {
    /// Whether logind is waiting for the lock to show.
    pub fn preparing(&self) -> bool {
        self.preparing.is_some()
    }
}

/// Starts the logind thread; its events arrive on the returned channel.
pub fn watch() -> Channel<Event> {
    let (tx, rx) = channel::channel();
    let spawned = std::thread::Builder::new()
        .name("logind-sleep".into())
        .spawn(move || {
            if let Err(e) = run(&tx) {
                let _ = tx.send(Event::Failed(e.to_string()));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no lock before sleep: cannot start the logind thread: {e}");
    }
    rx
}

fn inhibit(manager: &zbus::blocking::Proxy<'_>) -> zbus::Result<OwnedFd> {
    let fd: zbus::zvariant::OwnedFd = manager.call(
        "Inhibit",
        &(
            "sleep",
            "Bulkhead",
            "Lock the screen before the machine sleeps",
            "delay",
        ),
    )?;
    Ok(fd.into())
}

fn run(tx: &Sender<Event>) -> zbus::Result<()> {
    let conn = zbus::blocking::Connection::system()?;
    let manager = zbus::blocking::Proxy::new(
        &conn,
        "org.freedesktop.login1",
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager",
    )?;
    // Subscribed before the first inhibitor, so no announcement falls in between.
    let signals = manager.receive_signal("PrepareForSleep")?;
    if tx.send(Event::Held(inhibit(&manager)?)).is_err() {
        return Ok(());
    }
    for msg in signals {
        let sleeping: bool = msg.body().deserialize()?;
        let event = if sleeping {
            Event::Preparing
        } else {
            // Awake again: the next sleep needs a new inhibitor, sent first.
            if tx.send(Event::Held(inhibit(&manager)?)).is_err() {
                return Ok(());
            }
            Event::Resumed
        };
        if tx.send(event).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

impl State {
    /// Handles one event of the logind thread.
    pub fn on_sleep_event(&mut self, event: Event) {
        match event {
            Event::Held(fd) => self.desk.sleep.held = Some(fd),
            Event::Failed(e) => {
                tracing::warn!("no lock before sleep: logind: {e}");
            }
            Event::Resumed => {
                self.desk.sleep.preparing = None;
                tracing::info!("woke up from sleep");
                self.desk.request_redraw();
            }
            Event::Preparing => self.prepare_for_sleep(),
        }
    }

    fn prepare_for_sleep(&mut self) {
        let Some(lock) = self.desk.config.session.lock.clone() else {
            tracing::info!("going to sleep; no lock command is configured ([session] lock)");
            self.desk.sleep.held = None;
            return;
        };
        tracing::info!("going to sleep: locking first");
        self.desk.sleep.preparing = Some(Instant::now());
        if !self.desk.lock.is_locked() {
            if let Err(e) = self.spawn_host(&lock) {
                tracing::warn!("lock before sleep: {e}");
                self.desk.sleep.held = None;
                return;
            }
        }
        self.desk.request_redraw();
        if self.backend.lock_presented() {
            self.lock_presented_everywhere();
            return;
        }
        let armed = self.desk.loop_handle.insert_source(
            Timer::from_duration(LOCK_WAIT),
            |_, _, state: &mut State| {
                if state.desk.sleep.preparing.take().is_some() {
                    tracing::warn!(
                        "the locker did not cover every output within {}s; sleeping anyway",
                        LOCK_WAIT.as_secs()
                    );
                    state.desk.sleep.held = None;
                }
                TimeoutAction::Drop
            },
        );
        if let Err(e) = armed {
            tracing::warn!("lock before sleep: no timer ({e}); letting sleep go ahead");
            self.desk.sleep.preparing = None;
            self.desk.sleep.held = None;
        }
    }

    /// Called by the backend when every output has presented a frame showing the locker.
    pub fn lock_presented_everywhere(&mut self) {
        if let Some(since) = self.desk.sleep.preparing.take() {
            tracing::info!(
                "locked on every output {} ms after the sleep announcement; sleep may go ahead",
                since.elapsed().as_millis()
            );
            self.desk.sleep.held = None;
        }
    }
}
