//! Progress events: what the workflow tells the user (text or JSON lines) and the journal.
//!
//! The workflow emits events through an `EventSink`; the binary prints them, the journal
//! appends them to disk, tests collect them (`fake::Collector`).

use std::sync::Arc;

use serde::Serialize;

use crate::ports::Clock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A step begins (for a mutating step: the intent, recorded before the call).
    Start,
    /// A step ended well (the result).
    Done,
    /// A step failed.
    Failed,
    /// Something worth knowing within a step.
    Info,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub time: String,
    pub run_id: String,
    /// Stable machine name of the step: `standby.enter`, `snapshot`, `bucket.copy`, …
    pub step: String,
    pub phase: Phase,
    /// The resource the event is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    pub message: String,
}

pub trait EventSink: Send + Sync {
    fn emit(&self, event: &Event);
}

/// Sends every event to several sinks (the console and the journal).
pub struct Fanout(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Fanout {
    fn emit(&self, event: &Event) {
        for sink in &self.0 {
            sink.emit(event);
        }
    }
}

/// A run's handle for emitting events with its id and the time filled in.
#[derive(Clone)]
pub struct Emitter {
    pub run_id: String,
    pub sink: Arc<dyn EventSink>,
    /// Stamps each event's time.
    pub clock: Arc<dyn Clock>,
}

impl Emitter {
    pub fn emit(
        &self,
        step: &str,
        phase: Phase,
        resource: Option<&str>,
        message: impl Into<String>,
    ) {
        self.sink.emit(&Event {
            time: self
                .clock
                .now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            run_id: self.run_id.clone(),
            step: step.to_string(),
            phase,
            resource: resource.map(str::to_string),
            message: message.into(),
        });
    }
    pub fn start(&self, step: &str, resource: Option<&str>, message: impl Into<String>) {
        self.emit(step, Phase::Start, resource, message)
    }
    pub fn done(&self, step: &str, resource: Option<&str>, message: impl Into<String>) {
        self.emit(step, Phase::Done, resource, message)
    }
    pub fn info(&self, step: &str, resource: Option<&str>, message: impl Into<String>) {
        self.emit(step, Phase::Info, resource, message)
    }
    pub fn warn(&self, step: &str, resource: Option<&str>, message: impl Into<String>) {
        self.emit(step, Phase::Warning, resource, message)
    }
    pub fn failed(&self, step: &str, resource: Option<&str>, message: impl Into<String>) {
        self.emit(step, Phase::Failed, resource, message)
    }
}
