//! Generated bucket listings for `envclone s3 diff-bench` (built with the `fake` feature): the
//! sync engine's memory and CPU measured without a server.

use async_trait::async_trait;

use crate::ports::*;
use crate::s3sync;

/// Two generated listings of `objects` keys: the target lacks 1% of the source's keys, holds
/// another version of 1%, and has 1% of its own. Copies and deletes succeed without doing
/// anything, so the benchmark measures the engine's own memory and CPU, not a server's.
pub struct SyntheticBuckets {
    pub objects: u64,
}

pub const SYNTHETIC_SOURCE: &str = "synthetic-source";
pub const SYNTHETIC_TARGET: &str = "synthetic-target";

impl SyntheticBuckets {
    fn etag(i: u64, changed: bool) -> String {
        // A cheap, well-spread 128-bit value that looks like an MD5.
        let a = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(changed);
        let b = a.rotate_left(29).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        format!("{a:016x}{b:016x}")
    }

    /// The objects of `bucket` from index `from` on, up to `max` of them.
    fn page(&self, bucket: &str, from: u64, max: usize) -> (Vec<ObjectSummary>, u64) {
        let target = bucket == SYNTHETIC_TARGET;
        let mut out = Vec::with_capacity(max);
        let mut i = from;
        while i < self.objects && out.len() < max {
            let (missing, changed, extra) = (i % 100 == 13, i % 100 == 7, i % 100 == 29);
            if !(target && missing) {
                out.push(ObjectSummary {
                    key: format!("data/{i:010}"),
                    size: 4096,
                    etag: Self::etag(i, target && changed),
                    storage_class: None,
                    restored: false,
                    checksum_algorithm: None,
                    version_id: None,
                    last_modified: None,
                });
            }
            if target && extra {
                out.push(ObjectSummary {
                    key: format!("data/{i:010}~old"),
                    size: 4096,
                    etag: Self::etag(i, true),
                    storage_class: None,
                    restored: false,
                    checksum_algorithm: None,
                    version_id: None,
                    last_modified: None,
                });
            }
            i += 1;
        }
        (out, i)
    }

    /// The smallest index whose plain key sorts after `after`.
    fn first_index_after(&self, after: &str) -> u64 {
        let (mut lo, mut hi) = (0, self.objects);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if format!("data/{mid:010}").as_str() > after {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    fn unsupported(operation: &str) -> PortError {
        PortError::failed(
            operation,
            "the synthetic listings have only small single-part objects",
        )
    }
}

#[async_trait]
impl ObjectStore for SyntheticBuckets {
    fn object_url(&self, bucket: &str, key: &str) -> String {
        crate::ports::s3_object_url("us-east-1", bucket, key)
    }
    async fn buckets_with_prefix(&self, _prefix: &str) -> PortResult<Vec<BucketListing>> {
        Err(Self::unsupported("s3:ListBuckets"))
    }
    async fn bucket_tags(
        &self,
        _bucket: &str,
    ) -> PortResult<Option<std::collections::BTreeMap<String, String>>> {
        Ok(Some(Default::default()))
    }
    async fn create_bucket(
        &self,
        bucket: &str,
        _tags: &std::collections::BTreeMap<String, String>,
    ) -> PortResult<()> {
        Err(PortError::AlreadyExists {
            what: format!("bucket {bucket}"),
        })
    }
    async fn list_page_after(
        &self,
        bucket: &str,
        _prefix: &str,
        start_after: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> PortResult<ListPage> {
        let max = max_keys.clamp(1, PAGE_KEYS);
        let (objects, next) = match (token, start_after) {
            (Some(token), _) => self.page(bucket, token.parse().unwrap_or(0), max),
            (None, Some(after)) => {
                // Keys grow with their index: find the first index whose key (or whose
                // `~old` twin) sorts after `after`, then drop what does not.
                let from = self.first_index_after(after).saturating_sub(1);
                let (mut objects, next) = self.page(bucket, from, max);
                objects.retain(|o| o.key.as_str() > after);
                (objects, next)
            }
            (None, None) => self.page(bucket, 0, max),
        };
        tokio::task::yield_now().await;
        Ok(ListPage {
            objects,
            next_token: (next < self.objects).then(|| next.to_string()),
        })
    }
    async fn head_object_version(
        &self,
        bucket: &str,
        key: &str,
        _version: Option<&str>,
        _part_number: Option<u32>,
    ) -> PortResult<ObjectHead> {
        // Asked for the objects whose ETags differ (the 1% changed): plain MD5-like ETags, no
        // encryption, as listed.
        let (index, old) = match key.strip_prefix("data/") {
            Some(rest) => (rest.trim_end_matches("~old"), rest.ends_with("~old")),
            None => return Err(Self::unsupported("s3:HeadObject")),
        };
        let i: u64 = index
            .parse()
            .map_err(|_| Self::unsupported("s3:HeadObject"))?;
        let changed = old || (bucket == SYNTHETIC_TARGET && i % 100 == 7);
        tokio::task::yield_now().await;
        Ok(ObjectHead {
            size: 4096,
            etag: Self::etag(i, changed),
            ..ObjectHead::default()
        })
    }
    async fn object_tags_version(
        &self,
        _bucket: &str,
        _key: &str,
        _version: Option<&str>,
    ) -> PortResult<std::collections::BTreeMap<String, String>> {
        Err(Self::unsupported("s3:GetObjectTagging"))
    }
    async fn copy_object_version(
        &self,
        _src_bucket: &str,
        src_key: &str,
        _src_version: Option<&str>,
        _dst_bucket: &str,
        _dst_key: &str,
        _request: &crate::ports::CopyRequest,
    ) -> PortResult<crate::ports::CopiedObject> {
        tokio::task::yield_now().await;
        Ok(crate::ports::CopiedObject {
            etag: src_key.to_string(),
            encryption: None,
        })
    }
    async fn create_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        _head: &ObjectHead,
        _tags: &std::collections::BTreeMap<String, String>,
    ) -> PortResult<String> {
        Err(Self::unsupported("s3:CreateMultipartUpload"))
    }
    async fn upload_part_copy_version(
        &self,
        _source: (&str, &str, Option<&str>),
        _if_match: Option<&str>,
        _dst_bucket: &str,
        _dst_key: &str,
        _upload_id: &str,
        _part: u32,
        _first: u64,
        _last: u64,
    ) -> PortResult<crate::ports::CopiedPart> {
        Err(Self::unsupported("s3:UploadPartCopy"))
    }
    async fn complete_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        _upload_id: &str,
        _parts: &[crate::ports::CopiedPart],
    ) -> PortResult<String> {
        Err(Self::unsupported("s3:CompleteMultipartUpload"))
    }
    async fn abort_multipart(&self, _bucket: &str, _key: &str, _upload_id: &str) -> PortResult<()> {
        Err(Self::unsupported("s3:AbortMultipartUpload"))
    }
    async fn delete_bucket(&self, _bucket: &str) -> PortResult<()> {
        Err(Self::unsupported("s3:DeleteBucket"))
    }
    async fn put_small_object(
        &self,
        _b: &str,
        _k: &str,
        _body: Vec<u8>,
        _c: Option<&str>,
    ) -> PortResult<String> {
        Err(Self::unsupported("s3:PutObject"))
    }
    async fn get_small_object(
        &self,
        _b: &str,
        _k: &str,
    ) -> PortResult<Option<crate::ports::SmallObject>> {
        Err(Self::unsupported("s3:GetObject"))
    }
    async fn delete_object(&self, _b: &str, _k: &str) -> PortResult<()> {
        Err(Self::unsupported("s3:DeleteObject"))
    }
    async fn delete_objects(&self, _bucket: &str, keys: &[String]) -> PortResult<()> {
        tokio::task::yield_now().await;
        if keys.len() > s3sync::DELETE_BATCH {
            return Err(PortError::failed("s3:DeleteObjects", "MalformedXML"));
        }
        Ok(())
    }
    async fn content_md5_version(
        &self,
        _bucket: &str,
        _key: &str,
        _version: Option<&str>,
    ) -> PortResult<String> {
        Err(Self::unsupported("s3:GetObject"))
    }
    async fn copy_bucket_configuration(
        &self,
        _source: &str,
        _target: &str,
    ) -> PortResult<crate::ports::BucketConfigReport> {
        Err(Self::unsupported("s3:GetBucketVersioning"))
    }
    async fn versioning(&self, _bucket: &str) -> PortResult<Option<String>> {
        Err(Self::unsupported("s3:GetBucketVersioning"))
    }
    async fn inventory_configurations(
        &self,
        _bucket: &str,
    ) -> PortResult<Vec<crate::ports::InventoryConfiguration>> {
        Err(Self::unsupported("s3:ListBucketInventoryConfigurations"))
    }
    async fn list_versions_page(
        &self,
        _bucket: &str,
        _marker: Option<(String, String)>,
    ) -> PortResult<crate::ports::VersionPage> {
        Err(Self::unsupported("s3:ListObjectVersions"))
    }
    async fn delete_versions(
        &self,
        _bucket: &str,
        _versions: &[crate::ports::ObjectVersion],
    ) -> PortResult<()> {
        Err(Self::unsupported("s3:DeleteObjects"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::s3sync::{BucketPath, SyncOptions};

    #[tokio::test]
    async fn the_synthetic_listings_differ_by_one_percent_each_way() {
        let store: Arc<dyn ObjectStore> = Arc::new(SyntheticBuckets { objects: 2_500 });
        let stats = s3sync::sync(
            store,
            &BucketPath::bucket(SYNTHETIC_SOURCE),
            &BucketPath::bucket(SYNTHETIC_TARGET),
            &SyncOptions {
                delete: true,
                ..SyncOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(stats.listed, 2_500);
        assert_eq!(stats.copied, 50); // 25 changed + 25 missing
        assert_eq!(stats.deleted, 25);
        assert_eq!(stats.unchanged, 2_450);
    }
}
