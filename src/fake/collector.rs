//! Events kept in memory, for tests to read what a run told its user.

use std::sync::Mutex;

use crate::events::{Event, EventSink};

/// Keeps every event emitted to it, in order.
#[derive(Default)]
pub struct Collector(pub Mutex<Vec<Event>>);

impl EventSink for Collector {
    fn emit(&self, event: &Event) {
        self.0.lock().expect("collector lock").push(event.clone());
    }
}

impl Collector {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("collector lock").clone()
    }
}
