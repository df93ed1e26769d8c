//! What envclone may delete, and what it must keep: how CloudFormation names the final snapshot
//! it takes of a database it deletes (so `destroy`, `gc` and `abort` delete only those, never a
//! user's own snapshot), and the stateful resource types that the cloning contract does not
//! cover (so `finalize` keeps them rather than let the old stack's deletion destroy them).

/// Resource types that hold state, with what deleting one loses (a noun phrase, for messages),
/// besides the RDS instances and clusters and the S3 buckets the first resource kinds were
/// made for. A resource kind that covers one of them (`ResourceKind::stack_types`: the
/// DynamoDB table kind covers `AWS::DynamoDB::Table`) leaves it here: what no kind covers is
/// derived, `inventory::not_covered` (this list minus every kind's types), so a new kind does
/// not touch this file. `finalize` never lets the old stack's deletion take one not covered:
/// it refuses unless the old stack's template gives each `DeletionPolicy: Retain`, and lists
/// them as kept.
pub const STATEFUL_TYPES: &[(&str, &str)] = &[
    (
        "AWS::KMS::Key",
        "everything encrypted with it: CloudFormation schedules a deleted key's deletion, and a \
         key pending deletion can no longer decrypt — a database restored from a snapshot of one \
         encrypted with it (the live one after a migrate), its snapshots, objects",
    ),
    (
        "AWS::KMS::ReplicaKey",
        "everything encrypted with it (a key pending deletion can no longer decrypt)",
    ),
    // Covered by a resource kind (`resources::dynamodb_table`) when the contract lists it
    // under `tables:`; the kind's `stack_types` say what a clone of one it does not list lacks.
    ("AWS::DynamoDB::Table", "the table's items"),
    (
        "AWS::DynamoDB::GlobalTable",
        "the table's items in every replica",
    ),
    ("AWS::EFS::FileSystem", "the file system's files"),
    ("AWS::FSx::FileSystem", "the file system's files"),
    ("AWS::EC2::Volume", "the volume's data"),
    (
        "AWS::SecretsManager::Secret",
        "the secret's value, e.g. the live database's credentials (CloudFormation deletes it \
         without a recovery window)",
    ),
    ("AWS::Logs::LogGroup", "the log events it holds"),
    ("AWS::ECR::Repository", "the images it holds"),
    ("AWS::ElastiCache::ReplicationGroup", "the cache's data"),
    ("AWS::ElastiCache::CacheCluster", "the cache's data"),
    ("AWS::ElastiCache::ServerlessCache", "the cache's data"),
    ("AWS::MemoryDB::Cluster", "the cluster's data"),
    ("AWS::Redshift::Cluster", "the warehouse's data"),
    ("AWS::Neptune::DBCluster", "the graph's data"),
    ("AWS::DocDB::DBCluster", "the cluster's documents"),
    ("AWS::OpenSearchService::Domain", "the domain's indices"),
    ("AWS::Elasticsearch::Domain", "the domain's indices"),
    ("AWS::SQS::Queue", "messages not yet consumed"),
    ("AWS::Kinesis::Stream", "records not yet expired"),
    ("AWS::MSK::Cluster", "the topics' data"),
    ("AWS::Backup::BackupVault", "the recovery points it holds"),
    ("AWS::Cognito::UserPool", "its users"),
    ("AWS::Timestream::Table", "the table's records"),
    ("AWS::Cassandra::Table", "the table's rows"),
    ("AWS::QLDB::Ledger", "the ledger's journal"),
];

/// What deleting a resource of `resource_type` would lose, if it is one of `STATEFUL_TYPES`.
pub fn stateful(resource_type: &str) -> Option<&'static str> {
    STATEFUL_TYPES
        .iter()
        .find(|(t, _)| *t == resource_type)
        .map(|(_, loses)| *loses)
}

/// Whether a `DeletionPolicy` value keeps the resource when its stack is deleted
/// (CloudFormation User Guide, "DeletionPolicy attribute": `Retain`; `RetainExceptOnCreate`
/// behaves like `Retain` except when the stack operation that created the resource rolls back).
/// A policy given by an intrinsic function (AWS::LanguageExtensions) is not read: not kept.
pub fn policy_retains(policy: Option<&serde_json::Value>) -> bool {
    matches!(
        policy.and_then(serde_json::Value::as_str),
        Some("Retain" | "RetainExceptOnCreate")
    )
}

/// The length of the random part CloudFormation appends to a name it generates.
const GUID_LENGTH: usize = 12;
/// The longest identifier the RDS resource handlers generate for a final snapshot.
const SNAPSHOT_MAX_LENGTH: usize = 255;

/// Splits `cap` characters between two names as CloudFormation does: in rounds, each name
/// gets up to half of what is left, never more than it asks for.
fn fair_split(cap: usize, wanted: [usize; 2]) -> [usize; 2] {
    let mut remaining = cap;
    let mut given = [0usize; 2];
    while remaining > 0 {
        let share = if remaining < wanted.len() {
            1
        } else {
            remaining / wanted.len()
        };
        let mut satisfied = 0;
        for i in 0..wanted.len() {
            if given[i] < wanted[i] {
                let more = share.min(wanted[i] - given[i]);
                given[i] += more;
                remaining -= more;
            } else {
                satisfied += 1;
            }
            if remaining == 0 || satisfied == wanted.len() {
                return given;
            }
        }
    }
    given
}

/// The fixed part of the identifier CloudFormation gives the final snapshot of database
/// `logical_id` of stack `stack_name` when its DeletionPolicy is Snapshot (AWS's default for
/// RDS): the identifier is this prefix followed by 12 random letters and digits.
///
/// This is the RDS resource handlers' naming (aws-cloudformation-resource-providers-rds,
/// DBInstance and DBCluster DeleteHandler: `IdentifierUtils.generateResourceIdentifier(stack
/// id, "Snapshot-" + logical id, request token, 255)`, then leading, doubled and trailing
/// hyphens removed and lowercased; RDS keeps snapshot identifiers lowercase anyway): the stack
/// name and `Snapshot-<logical id>` share 241 characters fairly, joined by a hyphen — e.g.
/// `prod-snapshot-database-` for `Database` of stack `prod`.
pub fn final_snapshot_prefix(stack_name: &str, logical_id: &str) -> String {
    let stack = collapse_hyphens(stack_name.trim_start_matches('-'));
    let resource = format!("Snapshot-{logical_id}");
    // 13 characters are kept for the random part and its hyphen, one for the separator.
    let free = SNAPSHOT_MAX_LENGTH - (GUID_LENGTH + 1) - 1;
    let [for_stack, for_resource] =
        fair_split(free, [stack.chars().count(), resource.chars().count()]);
    let prefix: String = stack
        .chars()
        .take(for_stack)
        .chain(std::iter::once('-'))
        .chain(resource.chars().take(for_resource))
        .take(SNAPSHOT_MAX_LENGTH - (GUID_LENGTH + 1))
        .collect();
    collapse_hyphens(&format!("{prefix}-"))
        .trim_start_matches('-')
        .to_lowercase()
}

fn collapse_hyphens(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

/// Whether `snapshot_id` is named as CloudFormation names the final snapshot of database
/// `logical_id` of stack `stack_name` (see `final_snapshot_prefix`). A user's own snapshot of
/// the same database is not, unless named to look like one.
pub fn is_final_snapshot_name(snapshot_id: &str, stack_name: &str, logical_id: &str) -> bool {
    let id = snapshot_id.to_lowercase();
    let prefix = final_snapshot_prefix(stack_name, logical_id);
    id.strip_prefix(&prefix).is_some_and(|random| {
        random.len() == GUID_LENGTH
            && random
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_snapshot_names_as_cloudformation_makes_them() {
        // As seen on AWS: Elastic Beanstalk's stack deleting its database.
        assert_eq!(
            final_snapshot_prefix("awseb-e-mpab5bjwm2-stack", "AWSEBRDSDatabase"),
            "awseb-e-mpab5bjwm2-stack-snapshot-awsebrdsdatabase-"
        );
        assert!(is_final_snapshot_name(
            "awseb-e-mpab5bjwm2-stack-snapshot-awsebrdsdatabase-1x2y3z4a5b6c",
            "awseb-e-mpab5bjwm2-stack",
            "AWSEBRDSDatabase"
        ));
        assert!(is_final_snapshot_name(
            "exp-a-snapshot-database-AbCdEf012345",
            "exp-a",
            "Database"
        ));
        // A user's snapshot of the same database, another database's, another stack's.
        for other in [
            "exp-a-db-before-upgrade",
            "exp-a-snapshot-database-manual",
            "exp-a-snapshot-database-abcdef0123456",
            "exp-a-snapshot-database-abcdef01234!",
            "exp-a-snapshot-reports-abcdef012345",
            "exp-ab-snapshot-database-abcdef012345",
        ] {
            assert!(
                !is_final_snapshot_name(other, "exp-a", "Database"),
                "{other}"
            );
        }
    }

    #[test]
    fn long_names_share_the_room_fairly() {
        let stack = "s".repeat(128);
        let logical = "L".repeat(255);
        let prefix = final_snapshot_prefix(&stack, &logical);
        // 121 of the stack name, a hyphen, 120 of `Snapshot-<logical id>`, a hyphen.
        assert_eq!(prefix.len(), 243);
        assert!(prefix.starts_with(&format!("{}-snapshot-lll", "s".repeat(121))));
        assert_eq!(prefix.len() + GUID_LENGTH, SNAPSHOT_MAX_LENGTH);
        assert_eq!(fair_split(241, [4, 17]), [4, 17]);
        assert_eq!(fair_split(241, [200, 17]), [200, 17]);
        assert_eq!(fair_split(241, [128, 264]), [121, 120]);
    }

    #[test]
    fn only_retain_policies_keep_a_resource() {
        let v = |s: &str| serde_json::Value::String(s.into());
        assert!(policy_retains(Some(&v("Retain"))));
        assert!(policy_retains(Some(&v("RetainExceptOnCreate"))));
        assert!(!policy_retains(Some(&v("Delete"))));
        assert!(!policy_retains(Some(&v("Snapshot"))));
        assert!(!policy_retains(None));
        assert!(!policy_retains(Some(
            &serde_json::json!({"Fn::If": ["c", "Retain", "Delete"]})
        )));
        assert!(stateful("AWS::KMS::Key").is_some());
        assert!(stateful("AWS::EC2::VPC").is_none());
        assert!(stateful(crate::contract::BUCKET).is_none());
    }
}
