//! `--manifest inventory`: the source's latest S3 Inventory report as the job's manifest,
//! instead of a CSV of what differs (no listing of the source by envclone before the job).
//!
//! Where S3 puts a report ("Locating your inventory list", S3 User Guide): its manifest at
//! `<destination prefix>/<source bucket>/<config id>/<YYYY-MM-DDTHH-MMZ>/manifest.json` in the
//! configuration's destination bucket, the timestamp being when S3 began listing the bucket
//! for it; the manifest names the report's gzip-compressed CSV files and their columns. A job
//! reads it as `S3InventoryReport_CSV_20161130` with the manifest object's ETag ("Specifying a
//! manifest"). S3 produces an inventory daily or weekly (`InventorySchedule`; a weekly one on
//! Sundays, UTC) and may take up to 48 hours to deliver the first ("Configuring Amazon S3
//! Inventory"), so the latest report lists the bucket as it was a day or two ago (up to a week
//! and more for a weekly one): what was written since is not in it, and the local engine
//! catches up after the job (`s3batch::run`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{port, BatchError};
use crate::ports::{InventoryConfiguration, ObjectStore, PortError};
use crate::s3sync::BucketPath;

/// The report a job reads as its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReport {
    pub config_id: String,
    /// The configuration's destination bucket, which holds the report.
    pub bucket: String,
    pub manifest_key: String,
    pub etag: String,
    /// When S3 began listing the source for it (manifest.json's `creationTimestamp`).
    pub taken_at: DateTime<Utc>,
}

/// Why a configuration cannot give the job its manifest, if it cannot.
fn unfit(c: &InventoryConfiguration, source: &BucketPath) -> Option<String> {
    let filter = c.filter_prefix.as_deref().unwrap_or("");
    if !c.enabled {
        Some("it is disabled".into())
    } else if c.format != "CSV" {
        Some(format!(
            "its reports are {}; a job reads CSV inventories only (S3InventoryReport_CSV_20161130)",
            c.format
        ))
    } else if c.included_versions != "Current" {
        Some(format!(
            "it lists {} versions; a job would copy every version listed, not the current \
             objects",
            c.included_versions
        ))
    } else if filter != source.prefix {
        Some(format!(
            "it lists the keys under {filter:?}, not those under {:?}: a job copies every row of \
             the report",
            source.prefix
        ))
    } else {
        None
    }
}

/// The key prefix under which S3 puts the reports of configuration `c` of `bucket`.
fn reports_prefix(c: &InventoryConfiguration, bucket: &str) -> String {
    match c.destination_prefix.as_deref() {
        None | Some("") => format!("{bucket}/{}/", c.id),
        Some(p) => format!("{}/{bucket}/{}/", p.trim_end_matches('/'), c.id),
    }
}

/// The newest `<YYYY-MM-DDTHH-MMZ>/manifest.json` under `prefix` in `bucket`.
async fn newest_manifest(
    store: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
) -> Result<Option<(NaiveDateTime, String)>, BatchError> {
    let mut newest: Option<(NaiveDateTime, String)> = None;
    let mut token = None;
    loop {
        let page = crate::retry::retry(|| store.list_page(bucket, prefix, token.clone()))
            .await
            .map_err(port(format!(
                "listing the inventory reports s3://{bucket}/{prefix}"
            )))?;
        for o in &page.objects {
            let Some(stamp) = o
                .key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix("/manifest.json"))
            else {
                continue;
            };
            let Ok(at) = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H-%MZ") else {
                continue;
            };
            if newest.as_ref().is_none_or(|(n, _)| at > *n) {
                newest = Some((at, o.key.clone()));
            }
        }
        token = page.next_token;
        if token.is_none() {
            return Ok(newest);
        }
    }
}

/// The latest inventory report of `source` that a job can take as its manifest: of the
/// bucket's configurations (ListBucketInventoryConfigurations) that are enabled, CSV, of
/// current versions and filtered on exactly the source prefix, the newest report. Refuses,
/// naming each configuration and why, when there is none.
pub async fn latest(
    store: &dyn ObjectStore,
    source: &BucketPath,
) -> Result<InventoryReport, BatchError> {
    let bucket = source.bucket.as_str();
    let configs = match crate::retry::retry(|| store.inventory_configurations(bucket)).await {
        Ok(c) => c,
        Err(PortError::NotFound { .. }) => {
            return Err(BatchError::NoInventory {
                source_path: source.to_string(),
                why: format!("bucket {bucket} does not exist"),
            })
        }
        Err(e) => {
            return Err(BatchError::Port {
                what: format!("the inventory configurations of bucket {bucket}"),
                source: e,
            })
        }
    };
    if configs.is_empty() {
        return Err(BatchError::NoInventory {
            source_path: source.to_string(),
            why: format!(
                "bucket {bucket} has no S3 Inventory configuration (add one: daily, CSV, \
                 current versions{}; the first report comes within 48 hours)",
                if source.prefix.is_empty() {
                    String::new()
                } else {
                    format!(", filtered on {:?}", source.prefix)
                }
            ),
        });
    }
    let mut reasons = Vec::new();
    let mut best: Option<(NaiveDateTime, String, &InventoryConfiguration)> = None;
    for c in &configs {
        if let Some(why) = unfit(c, source) {
            reasons.push(format!("configuration {:?}: {why}", c.id));
            continue;
        }
        let prefix = reports_prefix(c, bucket);
        match newest_manifest(store, &c.destination_bucket, &prefix).await? {
            None => reasons.push(format!(
                "configuration {:?}: no report under s3://{}/{prefix} yet (S3 delivers the \
                 first within 48 hours of the configuration)",
                c.id, c.destination_bucket
            )),
            Some((at, key)) => {
                if best.as_ref().is_none_or(|(b, _, _)| at > *b) {
                    best = Some((at, key, c));
                }
            }
        }
    }
    let Some((_, key, config)) = best else {
        return Err(BatchError::NoInventory {
            source_path: source.to_string(),
            why: reasons.join("; "),
        });
    };
    let destination = config.destination_bucket.as_str();
    let unreadable = |why: String| BatchError::NoInventory {
        source_path: source.to_string(),
        why: format!("its latest inventory manifest s3://{destination}/{key} {why}"),
    };
    let object = crate::retry::retry(|| store.get_small_object(destination, &key))
        .await
        .map_err(port(format!("reading s3://{destination}/{key}")))?
        .ok_or_else(|| unreadable("is gone".into()))?;
    let manifest: serde_json::Value = serde_json::from_slice(&object.body)
        .map_err(|e| unreadable(format!("is not JSON ({e})")))?;
    if manifest["sourceBucket"] != bucket {
        return Err(unreadable(format!(
            "is the inventory of {}, not of {bucket}",
            manifest["sourceBucket"]
        )));
    }
    if manifest["fileFormat"] != "CSV" {
        return Err(unreadable(format!(
            "lists {} files; a job reads CSV ones",
            manifest["fileFormat"]
        )));
    }
    let taken_at = manifest["creationTimestamp"]
        .as_str()
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| unreadable("has no creationTimestamp (milliseconds)".into()))?;
    Ok(InventoryReport {
        config_id: config.id.clone(),
        bucket: destination.to_string(),
        manifest_key: key,
        etag: object.etag,
        taken_at,
    })
}
