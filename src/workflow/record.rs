//! A run's record in the run store, as one tagged enum: a clone run or a migration.
//!
//! The tag is the record's `command` field (`"clone"` or `"migrate"`), which every envclone
//! has written since run records exist (clone runs since crash safety, migrations since
//! `migrate`), so a record of an older version reads as it is; the fields added since are
//! `#[serde(default)]` in their structs. A record whose `command` is missing or names another
//! kind is refused with what was found, never guessed at.
//!
//! The records themselves are here too, below the resource kinds that read them: a clone's
//! (`CloneRecord`, with its `PlanRecord`), a migration's (`MigrationState`, with its `DbSwap`s;
//! `Swaps`, what the kinds planned for the swap),
//! and what a run made by its recorded plan (`RunResources`, built in `recovery`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::{Contract, Template};
use crate::journal::RunStore;
use crate::model::{EnvName, RunId};
use crate::ports::{DbKind, DnsRecord};
use crate::s3sync;

use super::engine::{StandbyRecord, WindowMark};
use super::plan::{BucketPlan, ClonePlan, DatabasePlan, TemplateStaging, MASK};
use super::refs::ResourceRef;
use super::StepError;

/// What the run store holds for one run. (One is loaded per command: the variants' sizes do
/// not matter, and unboxed they match by value.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum RunRecord {
    /// `envclone clone` (and `resume` / `abort` of one).
    Clone(CloneRecord),
    /// `envclone migrate` (and `finalize`, `resume`, `abort` of one).
    Migrate(MigrationState),
}

/// The `command` values a record may carry.
const KINDS: [&str; 2] = ["clone", "migrate"];

impl RunRecord {
    /// The record of `run_id`, None if the store has none.
    pub fn load(store: &dyn RunStore, run_id: &str) -> Result<Option<RunRecord>, String> {
        match store.load(run_id) {
            Ok(Some(value)) => RunRecord::from_value(run_id, value).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("cannot read the record of run {run_id}: {e}")),
        }
    }

    /// Reads a stored record (of this version or an older one).
    pub fn from_value(run_id: &str, value: serde_json::Value) -> Result<RunRecord, String> {
        let kind = value
            .get("command")
            .and_then(|c| c.as_str())
            .map(str::to_string);
        // Each kind is read from the JSON value itself, not through serde's internally tagged
        // enum: that buffers the record and cannot read back map keys that are numbers (a
        // copied bucket's record keeps a u16-keyed map, `"105"` in JSON), which serde_json
        // reads directly.
        let unreadable = |kind: &str, e: serde_json::Error| {
            format!("the record of run {run_id} ({kind}) is unreadable: {e}")
        };
        match kind.as_deref() {
            Some("clone") => serde_json::from_value(value)
                .map(RunRecord::Clone)
                .map_err(|e| unreadable("clone", e)),
            Some("migrate") => serde_json::from_value(value)
                .map(RunRecord::Migrate)
                .map_err(|e| unreadable("migrate", e)),
            found => Err(format!(
                "the record of run {run_id} is not one envclone can read: its `command` is {}, \
                 expected \"clone\" or \"migrate\"; it was written by another program or a \
                 newer envclone — use that, or move the record out of the state directory",
                found.map_or_else(|| "missing".to_string(), |k| format!("{k:?}"))
            )),
        }
    }

    /// Writes the record (replacing the run's previous one).
    pub fn save(&self, store: &dyn RunStore) -> std::io::Result<()> {
        let value = serde_json::to_value(self).expect("run records serialize");
        store.save(self.run_id(), &value)
    }

    /// `clone` or `migrate`, as the record names it.
    pub fn command(&self) -> &'static str {
        match self {
            RunRecord::Clone(_) => KINDS[0],
            RunRecord::Migrate(_) => KINDS[1],
        }
    }

    pub fn run_id(&self) -> &str {
        match self {
            RunRecord::Clone(r) => &r.run_id,
            RunRecord::Migrate(m) => &m.run_id,
        }
    }

    /// The environment the run started from.
    pub fn env(&self) -> &str {
        match self {
            RunRecord::Clone(r) => &r.env,
            RunRecord::Migrate(m) => &m.env,
        }
    }

    pub fn target_stack(&self) -> &str {
        match self {
            RunRecord::Clone(r) => &r.target_stack,
            RunRecord::Migrate(m) => &m.target_stack,
        }
    }

    pub fn started_at(&self) -> &str {
        match self {
            RunRecord::Clone(r) => &r.started_at,
            RunRecord::Migrate(m) => &m.started_at,
        }
    }

    /// The phase as the record spells it (`running`, `swapped`, …).
    pub fn phase(&self) -> String {
        let phase = match self {
            RunRecord::Clone(r) => serde_json::to_value(r.phase),
            RunRecord::Migrate(m) => serde_json::to_value(m.phase),
        };
        match phase.expect("phases serialize") {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// What the run left half done: a clone still `running` (the source may be in Standby,
    /// the clone half made), a migration neither finalized nor aborted. None when it finished.
    pub fn left_part_way(&self) -> Option<String> {
        match self {
            RunRecord::Migrate(m)
                if !matches!(m.phase, MigratePhase::Finalized | MigratePhase::Aborted) =>
            {
                Some(format!(
                    "its migration of {} stopped at phase {}",
                    m.env,
                    self.phase()
                ))
            }
            RunRecord::Clone(r) if r.phase == ClonePhase::Running => Some(format!(
                "its clone of {} stopped while running (the source may be in Standby, the clone \
                 half made)",
                r.env
            )),
            _ => None,
        }
    }

    pub fn into_clone(self) -> Option<CloneRecord> {
        match self {
            RunRecord::Clone(r) => Some(r),
            RunRecord::Migrate(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClonePhase {
    Running,
    Succeeded,
    /// Stopped by an error or Ctrl-C: the source was returned to service; what the run made
    /// is in `left_behind`.
    Failed,
    Aborted,
}

/// The plan as stored: everything needed to resume, NoEcho values masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub source_env: String,
    pub source_stack: String,
    pub target_env: String,
    pub target_stack: String,
    pub template_origin: String,
    pub template_body: String,
    pub parameters: BTreeMap<String, String>,
    pub databases: Vec<DatabasePlan>,
    pub buckets: Vec<BucketPlan>,
    pub scaling_groups: Vec<String>,
    pub standby: bool,
    pub tags: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    /// Hooks from `envclone.toml`, run after the contract's own.
    #[serde(default)]
    pub extra_hooks: crate::contract::Hooks,
    /// `--skip-archived` was given: a resume leaves archived objects out too.
    #[serde(default)]
    pub skip_archived: bool,
    /// Where the template is put for CreateStack when it is over the TemplateBody limit.
    #[serde(default)]
    pub template_staging: Option<TemplateStaging>,
    #[serde(default)]
    pub noecho: Vec<super::plan::NoEchoParameter>,
    /// What the clone stack creates, classified at preflight (absent in older records).
    #[serde(default)]
    pub inventory: super::plan::Inventory,
}

impl PlanRecord {
    pub fn from_plan(plan: &ClonePlan) -> Self {
        PlanRecord {
            source_env: plan.source_env.clone(),
            source_stack: plan.source_stack.clone(),
            target_env: plan.target_env.to_string(),
            target_stack: plan.target_stack.clone(),
            template_origin: plan.template.origin.clone(),
            template_body: plan.template.body.clone(),
            parameters: plan.display_parameters(),
            databases: plan.databases.clone(),
            buckets: plan.buckets.clone(),
            scaling_groups: plan.scaling_groups.clone(),
            standby: plan.standby,
            tags: plan.tags.clone(),
            capabilities: plan.capabilities.clone(),
            extra_hooks: plan.extra_hooks.clone(),
            skip_archived: plan.skip_archived,
            template_staging: plan.template_staging.clone(),
            noecho: plan.noecho.clone(),
            inventory: plan.inventory.clone(),
        }
    }

    pub fn to_plan(&self, run_id: &str) -> Result<ClonePlan, String> {
        let template = Template::parse(&self.template_origin, &self.template_body)
            .map_err(|e| e.to_string())?;
        let mut contract = Contract::from_template(&template).map_err(|e| e.to_string())?;
        contract.hooks.append(&self.extra_hooks);
        let masked: Vec<&String> = self
            .parameters
            .iter()
            .filter(|(_, v)| v.as_str() == MASK)
            .map(|(k, _)| k)
            .collect();
        if !masked.is_empty() {
            return Err(format!(
                "the run passed NoEcho parameter(s) {masked:?}, which are never recorded; it cannot \
                 be resumed — abort it and start a new clone"
            ));
        }
        Ok(ClonePlan {
            run_id: RunId::from_existing(run_id),
            source_env: self.source_env.clone(),
            source_stack: self.source_stack.clone(),
            target_env: EnvName::parse(&self.target_env).map_err(|e| e.to_string())?,
            target_stack: self.target_stack.clone(),
            template,
            contract,
            parameters: self.parameters.clone(),
            databases: self.databases.clone(),
            buckets: self.buckets.clone(),
            scaling_groups: self.scaling_groups.clone(),
            standby: self.standby,
            tags: self.tags.clone(),
            capabilities: self.capabilities.clone(),
            extra_hooks: self.extra_hooks.clone(),
            skip_archived: self.skip_archived,
            archived: Vec::new(),
            template_staging: self.template_staging.clone(),
            noecho: self.noecho.clone(),
            inventory: self.inventory.clone(),
        })
    }
}

/// What a run created, to be removed (abort, destroy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResources {
    pub run_id: String,
    pub stack: String,
    /// What the run made outside its stack, by kind (`ResourceKind::artifacts`): the buckets it
    /// created, the snapshots it took, the bucket it staged its template in.
    pub artifacts: Vec<ResourceRef>,
    /// Buckets it recorded before creating them (untagged if it died right after).
    pub creating: Vec<String>,
    /// The template the run put in S3 for CreateStack (a bucket of its own is in `artifacts`).
    pub staged_templates: Vec<TemplateStaging>,
    /// The buckets its plan copies by S3 Batch Operations jobs: a job of the run still running
    /// is cancelled before anything is removed.
    pub batch_buckets: Vec<BucketPlan>,
}

/// A clone run as recorded in the run store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneRecord {
    pub run_id: String,
    pub env: String,
    pub target_stack: String,
    pub started_at: String,
    pub phase: ClonePhase,
    pub plan: PlanRecord,
    pub standby: Vec<StandbyRecord>,
    /// Buckets whose creation the run started (recorded before the call).
    #[serde(default)]
    pub creating: Vec<String>,
    pub left_behind: Vec<ResourceRef>,
    /// The window's T (a resumed run reuses it) and when the source returned to service, if
    /// before the end of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowMark>,
}

/// Where a migration stands. Recorded before and after each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigratePhase {
    Cloning,
    /// The clone is verified; the source is in Standby; nothing swapped yet.
    Cloned,
    Swapping,
    /// Identifiers and DNS point at the new environment; the old one is out of service.
    Swapped,
    Finalizing,
    /// The old environment is deleted: the point of no return has passed.
    Finalized,
    /// Swapped back (or never swapped); the source is back in service.
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbSwap {
    pub logical_id: String,
    /// The identifier clients use: the source's before the swap, the clone's after.
    pub source_id: String,
    /// Where the source's database goes during the swap (`<id>-old-<stamp>`).
    pub old_id: String,
    /// The identifier the clone stack created its database with (and CloudFormation's record).
    pub clone_id: String,
    /// A DB instance, or an Aurora cluster (renamed as a whole; its instances keep their names).
    #[serde(default)]
    pub kind: DbKind,
}

/// What a migration's swap moves, as the kinds planned it at preflight
/// (`ResourceKind::plan_swap`), one field per kind of move; recorded in the run's
/// [`MigrationState`] when the run starts ([`MigrationState::begin`]), read back by a resume
/// ([`MigrationState::swaps`]). Not serialized itself: the state's fields are the record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swaps {
    /// The databases renamed (the RDS instance and Aurora cluster kinds), in the contract's
    /// order.
    pub databases: Vec<DbSwap>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSwap {
    /// The hosted zone's id (a run recorded by an older envclone has its name: resolved by
    /// name then).
    pub zone: String,
    pub before: DnsRecord,
    pub after: DnsRecord,
}

/// Everything needed to finish or undo a migration, kept in the run store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationState {
    pub run_id: String,
    pub env: String,
    pub source_stack: String,
    pub target_stack: String,
    pub started_at: String,
    pub phase: MigratePhase,
    pub standby: Vec<StandbyRecord>,
    /// The databases the swap renames (`Swaps::databases`; filled and read by the database
    /// kinds only). Typed and under this name because the record is read back by every later
    /// envclone and printed as it is by `status --output json` (see `resource.rs`).
    pub databases: Vec<DbSwap>,
    pub dns: Option<DnsSwap>,
    /// (source bucket, new environment's bucket) pairs, re-verified before finalize.
    pub buckets: Vec<(String, String)>,
    /// What each source bucket held, copied and verified, when the clone was verified (the
    /// same order as `buckets`): finalize compares the old buckets with this, not with the new
    /// ones, which the new environment may have changed since the swap. Empty in the state of
    /// an older envclone: finalize then compares with the new buckets as before.
    #[serde(default)]
    pub bucket_records: Vec<s3sync::CopiedRecord>,
    /// Resources of the run that exist, for status and abort.
    pub created: Vec<ResourceRef>,
    /// Kept on purpose by finalize (final snapshots, buckets holding the old data).
    pub kept: Vec<String>,
    /// The clone's plan, so an interrupted migration can be resumed.
    #[serde(default)]
    pub plan: Option<PlanRecord>,
    /// Live databases whose deletion protection finalize turned on and must turn off again
    /// (recorded before it does, so an interrupted finalize restores them too).
    #[serde(default)]
    pub protection_to_restore: Vec<(DbKind, String)>,
    /// envclone turned the old stack's termination protection on for the swap (recorded
    /// before it did); abort turns it off again.
    #[serde(default)]
    pub old_stack_protected: bool,
    /// True from the start of the run until the swap's first step (recorded before it): the
    /// new environment never served, holds nothing of its own, and `abort` removes it with
    /// everything else the run made. False in a record that predates this field, so its
    /// abort keeps the new environment as it always did.
    #[serde(default)]
    pub never_swapped: bool,
    /// Buckets whose creation the run started (recorded before the call), for `abort`.
    #[serde(default)]
    pub creating: Vec<String>,
    /// When the swap was complete (RFC 3339): resolvers may answer with the old entry record
    /// for its TTL after that, so finalize waits for it before deleting the old environment.
    #[serde(default)]
    pub swapped_at: Option<String>,
}

impl MigrationState {
    /// The state of migration run `clone.run_id` as it starts (phase `Cloning`, started
    /// `started_at`), with what its swap will move.
    pub fn begin(clone: &ClonePlan, started_at: String, swaps: Swaps) -> Self {
        let Swaps { databases } = swaps;
        MigrationState {
            run_id: clone.run_id.to_string(),
            env: clone.source_env.clone(),
            source_stack: clone.source_stack.clone(),
            target_stack: clone.target_stack.clone(),
            started_at,
            phase: MigratePhase::Cloning,
            standby: Vec::new(),
            databases,
            dns: None,
            buckets: Vec::new(),
            bucket_records: Vec::new(),
            created: Vec::new(),
            kept: Vec::new(),
            plan: Some(PlanRecord::from_plan(clone)),
            protection_to_restore: Vec::new(),
            old_stack_protected: false,
            never_swapped: true,
            creating: Vec::new(),
            swapped_at: None,
        }
    }

    /// What the run's swap moves, as recorded (a resume goes on with it).
    pub fn swaps(&self) -> Swaps {
        Swaps {
            databases: self.databases.clone(),
        }
    }
}

pub(super) fn save(store: &dyn RunStore, state: &MigrationState) -> Result<(), StepError> {
    RunRecord::Migrate(state.clone())
        .save(store)
        .map_err(|e| StepError::Refused {
            step: "state".into(),
            message: format!(
                "could not record the run's state ({e}); stopping before any further change"
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::MemoryRunStore;

    /// A clone record as envclone wrote it before `creating`, and before the plan's
    /// `extra_hooks`, `skip_archived`, `template_staging`, `noecho` and `inventory` existed.
    const OLD_CLONE: &str = r#"{
        "run_id": "20261121231500-00af",
        "command": "clone",
        "env": "prod",
        "target_stack": "staging-test",
        "started_at": "2026-11-21T23:15:00Z",
        "phase": "running",
        "plan": {
            "source_env": "prod",
            "source_stack": "prod",
            "target_env": "staging-test",
            "target_stack": "staging-test",
            "template_origin": "stack prod",
            "template_body": "Resources: {}",
            "parameters": {"EnvironmentName": "staging-test"},
            "databases": [],
            "buckets": [],
            "scaling_groups": ["prod-web"],
            "standby": true,
            "tags": {"envclone:run": "20261121231500-00af"},
            "capabilities": []
        },
        "standby": [{
            "group": "prod-web",
            "instance_ids": ["i-0123456789abcdef0"],
            "original_min_size": 1,
            "original_desired": 2
        }],
        "left_behind": ["DB snapshot envclone-20261121231500-00af-prod-db"]
    }"#;

    /// A migration record as envclone wrote it before `bucket_records`, `plan`,
    /// `protection_to_restore`, `old_stack_protected`, `never_swapped`, `creating` and
    /// `swapped_at` existed (and before a database's `kind`).
    const OLD_MIGRATION: &str = r#"{
        "run_id": "20261121231500-00b0",
        "command": "migrate",
        "env": "prod",
        "source_stack": "prod",
        "target_stack": "prod-20261121231500-00b0",
        "started_at": "2026-11-21T23:15:00Z",
        "phase": "swapped",
        "standby": [],
        "databases": [{
            "logical_id": "Database",
            "source_id": "prod-db",
            "old_id": "prod-db-old-20261121231500",
            "clone_id": "prod-20261121231500-00b0-db"
        }],
        "dns": null,
        "buckets": [["prod-uploads", "prod-20261121231500-00b0-uploads"]],
        "created": ["stack prod-20261121231500-00b0"],
        "kept": []
    }"#;

    fn stored(json: &str) -> MemoryRunStore {
        let store = MemoryRunStore::default();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let run = value["run_id"].as_str().unwrap().to_string();
        store.save(&run, &value).unwrap();
        store
    }

    #[test]
    fn an_old_clone_record_reads_as_a_clone() {
        let store = stored(OLD_CLONE);
        let record = RunRecord::load(&store, "20261121231500-00af")
            .unwrap()
            .expect("recorded");
        assert_eq!(record.command(), "clone");
        assert_eq!(record.phase(), "running");
        assert_eq!(
            record.left_part_way().as_deref(),
            Some(
                "its clone of prod stopped while running (the source may be in Standby, the \
                 clone half made)"
            )
        );
        let RunRecord::Clone(clone) = record else {
            panic!("a clone record read as {record:?}");
        };
        assert_eq!(clone.phase, ClonePhase::Running);
        assert_eq!(clone.creating, Vec::<String>::new());
        assert_eq!(clone.standby[0].original_max_size, None);
        assert_eq!(clone.plan.scaling_groups, ["prod-web"]);
        assert_eq!(
            crate::workflow::resource::join(&clone.left_behind, ", "),
            "DB snapshot envclone-20261121231500-00af-prod-db"
        );
    }

    #[test]
    fn an_old_migration_record_reads_as_a_migration() {
        let store = stored(OLD_MIGRATION);
        let record = RunRecord::load(&store, "20261121231500-00b0")
            .unwrap()
            .expect("recorded");
        assert_eq!(record.command(), "migrate");
        assert_eq!(
            record.left_part_way().as_deref(),
            Some("its migration of prod stopped at phase swapped")
        );
        let RunRecord::Migrate(m) = record else {
            panic!("a migration record read as {record:?}");
        };
        assert_eq!(m.phase, MigratePhase::Swapped);
        assert_eq!(m.databases[0].kind, crate::ports::DbKind::Instance);
        assert!(!m.never_swapped && !m.old_stack_protected);
        assert_eq!(m.plan, None);
        assert_eq!(m.swapped_at, None);
    }

    /// The swap's moves are recorded under `databases`, as every envclone wrote them (older
    /// runs read back, `status --output json` prints the same field): what a run recorded is
    /// what a resume goes on with.
    #[test]
    fn the_swaps_are_recorded_under_databases() {
        let record = RunRecord::load(&stored(OLD_MIGRATION), "20261121231500-00b0")
            .unwrap()
            .expect("recorded");
        let RunRecord::Migrate(m) = &record else {
            panic!("a migration record read as {record:?}");
        };
        let recorded = vec![DbSwap {
            logical_id: "Database".into(),
            source_id: "prod-db".into(),
            old_id: "prod-db-old-20261121231500".into(),
            clone_id: "prod-20261121231500-00b0-db".into(),
            kind: DbKind::Instance,
        }];
        assert_eq!(
            m.swaps(),
            Swaps {
                databases: recorded.clone()
            }
        );
        let store = MemoryRunStore::default();
        record.save(&store).unwrap();
        let value = store.load("20261121231500-00b0").unwrap().unwrap();
        assert_eq!(
            value["databases"],
            serde_json::json!([{
                "logical_id": "Database",
                "source_id": "prod-db",
                "old_id": "prod-db-old-20261121231500",
                "clone_id": "prod-20261121231500-00b0-db",
                "kind": "instance"
            }])
        );
        assert!(value.get("swaps").is_none(), "{value}");
    }

    /// A record is written with its tag and reads back the same.
    #[test]
    fn a_record_reads_back_as_written() {
        for json in [OLD_CLONE, OLD_MIGRATION] {
            let record = RunRecord::from_value("r", serde_json::from_str(json).unwrap()).unwrap();
            let store = MemoryRunStore::default();
            record.save(&store).unwrap();
            let value = store.load(record.run_id()).unwrap().unwrap();
            assert_eq!(value["command"], record.command());
            assert_eq!(
                RunRecord::load(&store, record.run_id()).unwrap(),
                Some(record)
            );
        }
    }

    /// A migration of this version, with what its copied buckets held: the partitions' map is
    /// keyed by numbers, written as JSON strings (`"105"`), and must read back. (It did not
    /// through serde's internally tagged enum: fake_aurora's finalize test caught that.)
    #[test]
    fn a_migration_with_bucket_records_reads_back() {
        let mut value: serde_json::Value = serde_json::from_str(OLD_MIGRATION).unwrap();
        value["bucket_records"] = serde_json::json!([
            {"objects": 3, "partitions": {"7": [1, "0a"], "105": [2, "ff01"]}}
        ]);
        value["never_swapped"] = true.into();
        value["swapped_at"] = "2026-11-21T23:40:00Z".into();
        let record = RunRecord::from_value("20261121231500-00b0", value).unwrap();
        let RunRecord::Migrate(m) = &record else {
            panic!("read as {record:?}");
        };
        assert_eq!(
            m.bucket_records[0].partitions,
            std::collections::BTreeMap::from([
                (7, (1, "0a".to_string())),
                (105, (2, "ff01".to_string()))
            ])
        );
        assert!(m.never_swapped);
        let store = MemoryRunStore::default();
        record.save(&store).unwrap();
        assert_eq!(
            RunRecord::load(&store, "20261121231500-00b0").unwrap(),
            Some(record)
        );
    }

    /// A record of another kind (or of none) is refused naming what it found, not read as
    /// whichever struct happens to accept its fields.
    #[test]
    fn a_record_of_a_wrong_kind_is_refused() {
        let mut value: serde_json::Value = serde_json::from_str(OLD_MIGRATION).unwrap();
        value["command"] = "destroy".into();
        let err = RunRecord::from_value("20261121231500-00b0", value.clone()).unwrap_err();
        assert!(
            err.contains("run 20261121231500-00b0")
                && err.contains("its `command` is \"destroy\", expected \"clone\" or \"migrate\""),
            "{err}"
        );
        value.as_object_mut().unwrap().remove("command");
        let err = RunRecord::from_value("20261121231500-00b0", value).unwrap_err();
        assert!(err.contains("its `command` is missing"), "{err}");
        // A migration's fields under the clone tag: refused, naming the field it lacks.
        let mut value: serde_json::Value = serde_json::from_str(OLD_MIGRATION).unwrap();
        value["command"] = "clone".into();
        value["phase"] = "running".into();
        let err = RunRecord::from_value("20261121231500-00b0", value).unwrap_err();
        assert!(
            err.contains("the record of run 20261121231500-00b0 (clone) is unreadable")
                && err.contains("missing field `plan`"),
            "{err}"
        );
    }
}
