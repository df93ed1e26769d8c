//! One model of the stateful resources envclone copies: each kind (an RDS instance, an Aurora
//! cluster, an S3 bucket, a DynamoDB table, an Auto Scaling group) is one module under
//! `resources/` implementing [`ResourceKind`], and the phases loop over `resources::KINDS`
//! instead of naming resource types.
//!
//! What a run makes outside its clone stack (a snapshot, a bucket it creates, a staged
//! template) is named by a typed [`ResourceRef`] (`refs.rs`, re-exported here): the kind of
//! thing and its identifier, plus a note (why it was left, how it came to be).
//!
//! Layers (`scripts/import-graph --strict` fails on a cycle): this trait is above what its
//! signatures name — `refs`, `engine` (`CloneEngine`, its outcomes, checkpoint and waits),
//! `plan` (the plan's types), `record` (the run records), `swap`, `window` — and below the
//! kinds (`resources/`), whose registry answers which kind covers a type or made a reference
//! (`resources::of_type`, `maker_of`); the phases (`planner`, `inventory`, `clone`,
//! `recovery`, `migrate`…) are above the kinds.
//!
//! # Adding a kind
//!
//! A new kind of resource (a DynamoDB table, say) touches, outside tests and the stand-in:
//!
//! 1. `src/workflow/resources/<kind>.rs`: a unit struct implementing [`ResourceKind`]: the
//!    CloudFormation types it covers (`stack_types`; the inventory then counts a listed one as
//!    copied, and one the contract does not list as not copied, with what it lacks — it leaves
//!    `inventory::not_covered`, which is derived, so `deletion::STATEFUL_TYPES` is not
//!    edited), the nouns of what it makes (`ref_kinds`; read back from the text form without
//!    the registry: an identifier without spaces), the AWS operations it alone calls with
//!    their IAM actions and grant (`iam_operations`; `iam.rs` collects them, `e2e_iam` checks
//!    every call is granted), the parameters envclone gives the
//!    clone stack for it (`given_parameters`), its plan steps (`plan_steps`), the artifacts a
//!    run of a plan makes (`artifacts`, `artifacts_of_stack`), how to verify it (`verify`),
//!    how to remove an artifact (`remove`), what to do around the deletion of a stack holding
//!    one (`before_stack_delete`, `after_stack_delete`), and whether finalize handles it
//!    (`finalize_handles`; if not, finalize retains it) and how: its checks before the point
//!    of no return (`finalize_check`), what it does with the old environment's resources before
//!    the old stack is deleted and undoes after (`finalize_old`, `finalize_restore`), whether
//!    the old stack's records of it name what the swap made live (`swapped`), and what a failed
//!    deletion of one by the old stack means (`finalize_delete_failed`); for migrate, what its
//!    swap will move, planned and checked at preflight (`plan_swap`, into `Swaps`), how long
//!    those moves may take (`swap_time`, kept free before a deadline), which logical ids the
//!    swap renames (`swap_renames`: the template's references to them keep the pre-swap name),
//!    what it records of the clone's copies for the swap and finalize (`record_clone`: a
//!    bucket's pair and its verified objects), what the plan says of its guardrail and its
//!    moves (`guardrail_words`, `swap_steps`) and status of a migration's
//!    (`swap_status`), that it is ready to move just before the swap (`check_before_swap`, a guardrail), how the
//!    swap moves it (`swap`, forward and back, each move chosen by the pure `swap::swap_step`
//!    from what exists), marks it while the swap is open (`mark_open_migration`), checks it
//!    on the live environment after the swap (`check_after_swap`) and gives the `post_swap`
//!    hooks its live names (`post_swap_environment`), what abort tells once it swapped back
//!    (`after_swap_back`), why migrate cannot move it (`migrate_refusal`: a DynamoDB table not
//!    `shared`), and what shows that one of a migration's temporary stack served (`served_as`,
//!    for destroy);
//! 2. `src/workflow/resources/mod.rs`: `mod <kind>;` and one entry in `KINDS`;
//! 3. `src/contract.rs`: the contract's section listing resources of the kind (`tables:` for
//!    the DynamoDB table kind; the contract is parsed in one place, not by the kinds);
//! 4. for a service envclone does not call yet: its port (`src/ports/<service>.rs` and its
//!    field in `ports::Cloud`), its adapter (`src/aws/<service>.rs`, built in `aws.rs`) and its
//!    fake (`src/fake/<service>.rs`) — the DynamoDB table needed these; a kind over a service
//!    already there does not.
//!
//! The copy stage is behind the trait too: `clone_and_verify` has each kind `prepare` (create
//! what the stack is given), then runs `before_stack` of every kind in parallel (snapshots,
//! a table passed by parameter created and filled) and creates the stack with the parameters
//! they return, while `alongside_stack` copies (a bucket passed by parameter) run beside it;
//! `after_stack` fills what the stack creates (its buckets, its tables) while it completes;
//! `precopy` is the bulk copy before Standby. A kind reports in `CloneReport::copies` (the
//! databases and buckets keep `snapshots` and `buckets`) and verifies from `Checked::copies`.
//! `planned_parameters` puts the names of what it will create in the plan; `preflight` checks
//! its resources before any change (the source's exist and can be copied, the names the run
//! will use are free) and records in the plan's fields of the kind what it found (a bucket's
//! versioning, its archived objects); clone's preflight itself checks only the stack and the
//! environment. The bucket and database kinds' copies run on the engine
//! from their own files (`create_parameter_buckets`, `copy_bucket` in `resources/bucket.rs`;
//! `database_artifact`, the snapshots in `resources/database.rs`).
//!
//! Not yet behind the trait, so an existing kind's change may still touch them: the contract's
//! sections (`contract.rs` parses `databases:`, `buckets:`, `tables:`), the plan's per-kind
//! fields of the databases and buckets (`DatabasePlan`, `BucketPlan`, `scaling_groups`, filled
//! in `planner::build_plan`), Standby itself (entered and left by `clone.rs`; migrate's
//! guardrail that the source is still in it is the group kind's `check_before_swap`), and
//! the port's field in `ports::Cloud`. (`swapcheck.rs`'s scan of the template is generic:
//! what a swap renames, the attributes that change with it and the types it skips come from
//! the kinds' `swap_renames`.)
//!
//! Migrate's record stays typed per kind of move: `Swaps` (what the kinds planned) has one
//! field per kind of move, and `MigrationState` (`record.rs`) keeps its fields under the names
//! it always had — `databases: Vec<DbSwap>` (filled by the database kinds' `plan_swap`, read
//! by their swap, guardrail, abort and finalize hooks; migrate itself never reads it),
//! `protection_to_restore`, `buckets`, `bucket_records`. Not one generic list, because the
//! record is read back by every later envclone and printed as it is by `status --output json`
//! (scripts read `state.databases`): renaming the field would change that output, and a
//! generic entry would either be an enum with one variant or untyped. A kind that comes to
//! move something in the swap adds its field to `Swaps` and to `MigrationState` (with
//! `#[serde(default)]`, so older records read), in `record.rs`: a fourth file, as its port is
//! for a kind over a new service.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::contract::{Contract, Template};
use crate::model::RunId;
use crate::ports::{StackInfo, StackResource};

use crate::s3sync::VerifyReport;

use crate::events::Emitter;

use super::engine::{BucketOutcome, CheckResult, Checkpoint, CloneEngine, CopyOutcome, Created};
use super::plan::{ClonePlan, SourceEnv};
use super::record::{MigrationState, PlanRecord, Swaps};
use super::swap::Direction;
use super::window::{QuietWindow, WindowNeeds};
use super::{PreflightError, StepError};
use crate::journal::RunStore;

pub use super::refs::{join, RefKind, ResourceRef, BATCH_JOB, STACK, STAGED_TEMPLATE};

/// What removing a run's resources did: what is gone, what remains and why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removal {
    pub removed: Vec<ResourceRef>,
    pub left: Vec<ResourceRef>,
}

/// Which run is removing, and what it recorded before creating.
#[derive(Debug, Clone, Copy)]
pub struct RunScope<'a> {
    pub run_id: &'a str,
    /// Identifiers whose creation the run recorded before the call (so an untagged one, left by
    /// a crash between creating and tagging, is still known to be the run's).
    pub creating: &'a [String],
}

impl RunScope<'_> {
    /// `r`, left because it does not carry the run's tag.
    pub fn not_ours(&self, r: ResourceRef) -> ResourceRef {
        r.with_note(format!(
            "not tagged envclone:run={}; not deleted",
            self.run_id
        ))
    }
}

/// A resource of the clone stack about to be deleted: `kept` when its DeletionPolicy keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Doomed<'a> {
    pub resource: &'a StackResource,
    pub kept: bool,
}

/// An environment being verified: its stack as it is now, and what the run copied.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'a> {
    pub contract: &'a Contract,
    pub stack: &'a StackInfo,
    pub resources: &'a [StackResource],
    /// (source, target) buckets to compare object for object.
    pub bucket_pairs: &'a [(String, String)],
    /// Targets copied as of a moment (a versioned source, after the window): compared with
    /// the source as of it.
    pub bucket_as_of: &'a [(String, chrono::DateTime<chrono::Utc>)],
    /// Archived source objects were left out of the copy (`--skip-archived`).
    pub skip_archived: bool,
    /// What the run copied of the kinds without a field of their own in the report (a
    /// table): each kind compares those of its own (`CopyOutcome::kind`).
    pub copies: &'a [CopyOutcome],
}

/// The copy stage of one run, as each kind sees it (`ResourceKind::prepare` …
/// `after_stack`).
#[derive(Clone, Copy)]
pub struct CopyRun<'a> {
    pub engine: &'a CloneEngine,
    pub plan: &'a ClonePlan,
    pub events: &'a Emitter,
    /// What the run made so far (the failure report's left-behind list): a kind adds what it
    /// creates.
    pub created: &'a Created,
    /// Told before a change that abort could not otherwise find (an untagged bucket).
    pub checkpoint: Checkpoint<'a>,
    /// The source's quiet window (clone): T, and the signal a kind fires when work it must
    /// do inside the window is done (`ResourceKind::window_needs`).
    pub window: &'a QuietWindow,
}

/// What one copy of a kind produced, for the clone's report. The databases and buckets keep
/// the report's fields they always had (`snapshots`, `buckets`, read by the printers and by
/// scripts); a new kind reports in `copies`.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// What the clone stack restores a database from (`DB snapshot <id>`, a clone point), with
    /// its position among the report's snapshots (the contract's order).
    Snapshot {
        position: usize,
        label: String,
    },
    Bucket(BucketOutcome),
    Copy(CopyOutcome),
}

/// What a kind made before the clone stack: the parameters it gives the stack, and what it
/// copied.
#[derive(Debug, Clone, Default)]
pub struct BeforeStack {
    pub parameters: BTreeMap<String, String>,
    pub outcomes: Vec<Outcome>,
}

/// A resource of the new template that migrate's swap renames (`ResourceKind::swap_renames`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renamed {
    pub logical_id: String,
    /// The attributes (`Fn::GetAtt`) whose values change with its identifier; `Ref` always does.
    pub attributes: &'static [&'static str],
    /// The types of the template's resources that refer to it by a link the rename keeps (a
    /// cluster's member instances): not scanned.
    pub linked_types: &'static [&'static str],
}

/// Where in a clone's plan a kind's steps go (`ResourceKind::plan_steps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanStage {
    /// Quieting the source (Standby), first.
    Quiesce,
    /// Before the copies: creating what the stack is given (a bucket passed by parameter).
    Prepare,
    /// The copies, made in parallel while the source is quiet (snapshots, bucket copies).
    Copy,
    /// Once the clone stack exists (filling what it created).
    AfterStack,
    /// Returning the source to service, last.
    Resume,
}

/// How the least-privilege policy (`envclone iam-policy`, `crate::iam`) grants an IAM action
/// a kind needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Reading, on any resource (the source is not tagged).
    Read,
    /// Creating, only with the run's tag in the request (`aws:RequestTag/envclone:run`).
    CreateTagged,
    /// Writing into or removing, only what carries the run's tag
    /// (`aws:ResourceTag/envclone:run`).
    TaggedResource,
}

/// An AWS API operation a kind's adapter calls (`dynamodb:Scan`, as the SDK's call record
/// names it), the IAM actions it needs, and how the policy grants them.
#[derive(Debug, Clone, Copy)]
pub struct IamOperation {
    pub operation: &'static str,
    pub actions: &'static [&'static str],
    pub grant: Grant,
}

/// One kind of stateful resource. See the module doc for what a new kind touches.
#[async_trait]
pub trait ResourceKind: Send + Sync {
    /// Short name, for messages and tests (`rds-instance`).
    fn name(&self) -> &'static str;

    /// The CloudFormation types of this kind, each with what a clone of one lacks when the
    /// contract does not cover it (a noun phrase for the inventory's messages).
    fn stack_types(&self) -> &'static [(&'static str, &'static str)];

    /// The nouns of the references this kind makes outside a stack (`DB snapshot`).
    fn ref_kinds(&self) -> &'static [RefKind];
    /// The AWS operations this kind alone calls, with their IAM actions: `iam.rs` maps and
    /// grants them with the engine's own (`e2e_iam` checks every call made is granted).
    fn iam_operations(&self) -> &'static [IamOperation] {
        &[]
    }

    /// Whether finalize deals with this kind's resources of the old stack itself (a database:
    /// its final snapshot kept; a bucket: S3 refuses to delete one that holds objects). A kind
    /// that does not is retained by finalize, like every stateful resource it does not cover
    /// (`inventory::finalize_loss`).
    fn finalize_handles(&self) -> bool {
        false
    }

    /// The logical ids of the clone's template that start with their data because of this
    /// kind's resources of `contract` (a listed database, a cluster's instances, a listed
    /// bucket): the inventory counts them as copied.
    fn copied_ids(&self, _template: &Template, _contract: &Contract) -> Vec<String> {
        Vec::new()
    }

    /// The parameters of the clone stack envclone sets for this kind's resources of
    /// `contract` (a snapshot, a source cluster, a bucket's name): the source's values never
    /// carry over into them.
    fn given_parameters(&self, _contract: &Contract) -> Vec<String> {
        Vec::new()
    }

    /// Values of the parameters envclone gives the clone stack that are known when the plan is
    /// made (the name of something the run will create), so the plan shows them; a
    /// `--parameter` given for one wins. `migrating`: the stack becomes the environment
    /// itself (migrate's new stack).
    fn planned_parameters(
        &self,
        _contract: &Contract,
        _target_stack: &str,
        _migrating: bool,
    ) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Read-only checks of this kind's resources before the first change (the source's
    /// exist and can be copied, what the run would create is free); a refusal names what to
    /// do. What the checks find that the run needs goes into `plan`'s fields of this kind (a
    /// bucket: whether its source keeps versions, its archived objects). The kinds are
    /// checked in the order of `resources::KINDS`.
    async fn preflight(
        &self,
        _engine: &CloneEngine,
        _source: &SourceEnv,
        _plan: &mut ClonePlan,
    ) -> Result<(), PreflightError> {
        Ok(())
    }

    /// The plan's steps for this kind at `stage`, with the real names (`plan clone`,
    /// `--dry-run`).
    fn plan_steps(&self, _plan: &ClonePlan, _stage: PlanStage) -> Vec<String> {
        Vec::new()
    }

    /// What this kind's resources of `plan` need of the source's quiet window in a clone
    /// (`workflow::window`): work it does inside the window, named, for which it calls
    /// `run.window.done(name)` when done; resources that need the source quiet until the
    /// clone stack exists. By default a kind needs the whole window (today's: Standby until
    /// the clone is verified).
    fn window_needs(&self, _plan: &ClonePlan) -> WindowNeeds {
        WindowNeeds {
            inside: Vec::new(),
            whole: vec![super::window::WholeWindow::Unspecified { kind: self.name() }],
            outside: Vec::new(),
        }
    }

    /// Quick creation, before anything is copied, of what the clone stack will be given (a
    /// bucket passed by parameter): the copies of every kind may then start. Called again
    /// after a pre-copy (a kind skips what it already made).
    async fn prepare(&self, _run: &CopyRun<'_>) -> Result<(), StepError> {
        Ok(())
    }

    /// The bulk copy made while the source still serves (before Standby, `--no-precopy` turns
    /// it off), so the copy during Standby is only the delta. Prepares first.
    async fn precopy(&self, _run: &CopyRun<'_>) -> Result<Vec<Outcome>, StepError> {
        Ok(Vec::new())
    }

    /// What the clone stack needs before it is created, made while the source is quiet (a
    /// snapshot or clone point; a table passed by parameter, created and filled): the
    /// parameters it gives the stack. The kinds run in parallel; the stack is created once
    /// every kind has answered.
    async fn before_stack(&self, _run: &CopyRun<'_>) -> Result<BeforeStack, StepError> {
        Ok(BeforeStack::default())
    }

    /// Copies that run alongside `before_stack` and the stack's creation, which the stack does
    /// not wait for (a bucket passed by parameter, created by `prepare`).
    async fn alongside_stack(&self, _run: &CopyRun<'_>) -> Result<Vec<Outcome>, StepError> {
        Ok(Vec::new())
    }

    /// Once the clone stack exists (`plan.target_stack`): fills what it creates (a bucket, a table),
    /// each as soon as the stack has made it, while the stack completes.
    async fn after_stack(&self, _run: &CopyRun<'_>) -> Result<Vec<Outcome>, StepError> {
        Ok(Vec::new())
    }

    /// What a run of `plan` makes of this kind outside its clone stack, named before the run
    /// (so abort finds them after a crash, by name, and removes them when they carry the run's
    /// tag).
    fn artifacts(&self, plan: &PlanRecord) -> Vec<ResourceRef>;

    /// What the stack `stack` (made by a run from a template with `contract`) was given of
    /// this kind by parameter: destroy finds an environment's artifacts from its stack alone.
    fn artifacts_of_stack(&self, contract: &Contract, stack: &StackInfo) -> Vec<ResourceRef>;

    /// Before the run's stack is deleted: its resources of this kind (`doomed`). Returns what
    /// `after_stack_delete` needs to tell what the deletion itself made (e.g. the snapshots a
    /// database had before).
    async fn before_stack_delete(
        &self,
        _engine: &CloneEngine,
        _doomed: &[Doomed<'_>],
    ) -> Result<Vec<ResourceRef>, StepError> {
        Ok(Vec::new())
    }

    /// After the run's stack `stack` was deleted: removes what the deletion made of its
    /// resources of this kind (a final snapshot), leaving what `artifacts` (the run's own,
    /// removed by `remove`) names and what existed `before`.
    async fn after_stack_delete(
        &self,
        _engine: &CloneEngine,
        _stack: &str,
        _doomed: &[Doomed<'_>],
        _before: Vec<ResourceRef>,
        _artifacts: &[ResourceRef],
        _out: &mut Removal,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// What of this kind `target` holds as a copy of `source`'s (`envclone verify ENV
    /// --against SRC`, with no run at hand), paired by the contract from both stacks, for
    /// `verify` to compare (`Checked::copies`); a resource `target` has and `source` lacks is
    /// a failed check in `checks`. The buckets pair in `verify_env` itself (their own field).
    fn paired_copies(
        &self,
        _contract: &Contract,
        _source: &SourceEnv,
        _target: &SourceEnv,
        _checks: &mut Vec<CheckResult>,
    ) -> Vec<CopyOutcome> {
        Vec::new()
    }

    /// Checks the parameters the clone stack is about to be created with, for this kind's
    /// resources: the last check before CreateStack (a database restored to T refuses a source
    /// without its time, which CloudFormation would turn into a read replica of the source).
    fn check_stack_parameters(
        &self,
        _plan: &ClonePlan,
        _parameters: &BTreeMap<String, String>,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// Verifies the environment's resources of this kind (after a clone, after migrate's
    /// swap, `envclone check`): one result per check in `checks`; a bucket comparison's full
    /// report in `reports`. Errors only when a check cannot be made at all.
    async fn verify(
        &self,
        _engine: &CloneEngine,
        _env: &Checked<'_>,
        _checks: &mut Vec<CheckResult>,
        _reports: &mut Vec<VerifyReport>,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// The swap (migrate; back again in abort): moves this kind's resources of the new
    /// environment to the identifiers clients use (`Direction::Forward`), or back, each move
    /// chosen from what exists now (`migrate::swap_step`, a pure function), so it can be re-run
    /// after any stop. Forward also marks what now serves with the identifier CloudFormation's
    /// record names. A kind that cannot be swapped refuses the migration in
    /// `migrate_refusal` instead.
    async fn swap(
        &self,
        _engine: &CloneEngine,
        _state: &MigrationState,
        _direction: Direction,
        _events: &Emitter,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// After migrate's swap, on the live environment (`resources`: the new stack's): waits,
    /// at most `timeout` each (the environment is live: a long wait is an outage), until this
    /// kind's resources answer (a database available at the identifier clients use, a group's
    /// instances InService and Healthy). Each failure goes to `failures` (the swap then swaps
    /// back); what passes may be told to `events` under step `verify.after_swap`.
    async fn check_after_swap(
        &self,
        _engine: &CloneEngine,
        _state: &MigrationState,
        _resources: &[StackResource],
        _timeout: std::time::Duration,
        _events: &Emitter,
        _failures: &mut Vec<String>,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// The environment the `post_swap` hooks are given for this kind's resources of the swap,
    /// as they are live after it (a database: `ENVCLONE_DATABASE_<LogicalId>` its identifier,
    /// `…_ENDPOINT` its endpoint).
    async fn post_swap_environment(
        &self,
        _engine: &CloneEngine,
        _state: &MigrationState,
        _env: &mut BTreeMap<String, String>,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// Marks (`open`: before the swap's first move) or unmarks (once the swap is settled
    /// either way) this kind's resources of the swap as part of an open migration, so clone,
    /// migrate and destroy refuse them under whichever identifier they are.
    async fn mark_open_migration(
        &self,
        _engine: &CloneEngine,
        _state: &MigrationState,
        _open: bool,
        _step: &str,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// Migrate's preflight (read-only): plans how the swap moves this kind's resources of
    /// `plan` (the clone onto the new template from `origin`, run `run_id`) into `swaps` (a
    /// database: the identifier it moves away to, free, and the clone's, set by the template);
    /// a refusal names what to change.
    async fn plan_swap(
        &self,
        _engine: &CloneEngine,
        _plan: &ClonePlan,
        _run_id: &RunId,
        _origin: &str,
        _swaps: &mut Swaps,
    ) -> Result<(), PreflightError> {
        Ok(())
    }

    /// How long the swap's moves of this kind's resources of `swaps` may take at most, kept
    /// free before a migration's deadline (a database: two renames, each "effective in about
    /// 10 minutes" on AWS).
    fn swap_time(&self, _swaps: &Swaps) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// What of `plan`'s template the swap renames (a database): its logical id, the attributes
    /// whose values change with its identifier, the types that refer to it by a link the
    /// rename keeps. What the template hands on of them keeps the pre-swap value
    /// (`swapcheck::endpoint_references` finds it).
    fn swap_renames(&self, _plan: &ClonePlan) -> Vec<Renamed> {
        Vec::new()
    }

    /// Migrate, once the clone of `plan` is made and verified (`outcomes`: what every kind
    /// copied, `CloneReport::outcomes`): records in `state` what the swap and finalize need of
    /// this kind's copies (a bucket: its pair, the bucket the run created, the record of the
    /// verified objects finalize checks the old bucket against). An error aborts the migration
    /// before the swap (the source returns to service).
    async fn record_clone(
        &self,
        _engine: &CloneEngine,
        _plan: &ClonePlan,
        _outcomes: &[Outcome],
        _state: &mut MigrationState,
        _events: &Emitter,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// What migrate's guardrails check of this kind's resources of `plan`, in a few words for
    /// the plan's guardrails step (`databases available`); equal words of two kinds are said
    /// once.
    fn guardrail_words(&self, _plan: &ClonePlan) -> Vec<String> {
        Vec::new()
    }

    /// The plan's steps for the swap's moves of this kind's resources of `swaps` (`plan
    /// migrate`, `--dry-run`).
    fn swap_steps(&self, _swaps: &Swaps) -> Vec<String> {
        Vec::new()
    }

    /// What a migration's record says of this kind's moves in `swaps`, one line each, for the
    /// operator (`envclone status`): `database:  <id> (old database renamed …)`.
    fn swap_status(&self, _swaps: &Swaps) -> Vec<String> {
        Vec::new()
    }

    /// Migrate's guardrails, just before the swap: this kind's resources of the swap are
    /// ready to move (a database: available under both identifiers; a group: its instances
    /// still in Standby, no scaling activity in flight). A refusal (step
    /// `guardrails`) says what is not; nothing was changed.
    async fn check_before_swap(
        &self,
        _engine: &CloneEngine,
        _state: &MigrationState,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// After abort swapped back: what the operator must know of this kind's resources of the
    /// swap, told to `events` under step `abort` (a database: writes made to the new one since
    /// the swap stay in it).
    fn after_swap_back(&self, _state: &MigrationState, _events: &Emitter) {}

    /// Why `envclone migrate` cannot move this kind's resources of `contract` (the new
    /// template's, from `origin`) for environment `env`, in words for the operator (what to do
    /// instead); None when it can. Checked before anything else of the migration.
    fn migrate_refusal(&self, _contract: &Contract, _env: &str, _origin: &str) -> Option<String> {
        None
    }

    /// What shows that `r`, one of this kind's resources of a migration's temporary stack,
    /// served as environment `env` (the swap renamed or marked it); None if nothing does
    /// (destroy may then remove the stack like a clone's).
    async fn served_as(
        &self,
        _engine: &CloneEngine,
        _r: &StackResource,
        _env: &str,
    ) -> Result<Option<String>, crate::ports::PortError> {
        Ok(None)
    }

    /// Whether the swap renames this kind's resources of the old stack into the new ones'
    /// identifiers (a database), so the old stack's records of them name what serves after
    /// the swap: finalize deals with them itself (`finalize_old`) and does not ask for their
    /// DeletionPolicy (`finalize_preflight`).
    fn swapped(&self) -> bool {
        false
    }

    /// Finalize, before its point of no return: the old environment's resources of this kind
    /// may go (a bucket: every object the old environment wrote has its copy in the new one).
    /// A refusal says what to do; nothing was deleted.
    async fn finalize_check(
        &self,
        _engine: &CloneEngine,
        _state: &MigrationState,
        _events: &Emitter,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// Finalize, before the old stack is deleted: deals with the old environment's resources
    /// of this kind (a database: final snapshot kept, the renamed old one deleted, the live
    /// one protected from the old stack's deletion — recorded in `state` before, and `store`d).
    async fn finalize_old(
        &self,
        _engine: &CloneEngine,
        _state: &mut MigrationState,
        _store: &dyn RunStore,
        _events: &Emitter,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// Finalize, after the old stack's deletion whatever its outcome: undoes what
    /// `finalize_old` set on the live resources (a database's deletion protection).
    async fn finalize_restore(
        &self,
        _engine: &CloneEngine,
        _state: &MigrationState,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// Finalize, when the old stack's deletion failed on `r`, one of this kind's resources
    /// (DELETE_FAILED): None if that is not expected (finalize stops and says so); else the
    /// deletion is retried retaining it, and Some(kept) is what the report lists as kept, if
    /// anything (a bucket still holding the old data).
    fn finalize_delete_failed(&self, _r: &StackResource) -> Option<Option<String>> {
        None
    }

    /// Removes one artifact of a run (`what`, of one of `ref_kinds`) if it carries the run's
    /// tag (or its creation was recorded), recording it as removed or left with the reason;
    /// one already gone is neither.
    async fn remove(
        &self,
        engine: &CloneEngine,
        what: &ResourceRef,
        run: RunScope<'_>,
        out: &mut Removal,
    ) -> Result<(), StepError>;
}
