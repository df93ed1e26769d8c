//! Run records kept in memory, for tests that stop a run and resume or abort it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::journal::RunStore;

/// Keeps run states in memory, by run id.
#[derive(Default)]
pub struct MemoryRunStore(pub Mutex<BTreeMap<String, serde_json::Value>>);

impl RunStore for MemoryRunStore {
    fn save(&self, run_id: &str, state: &serde_json::Value) -> std::io::Result<()> {
        self.0
            .lock()
            .expect("store lock")
            .insert(run_id.to_string(), state.clone());
        Ok(())
    }

    fn load(&self, run_id: &str) -> std::io::Result<Option<serde_json::Value>> {
        Ok(self.0.lock().expect("store lock").get(run_id).cloned())
    }
}
