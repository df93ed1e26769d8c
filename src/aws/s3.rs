//! The S3 adapter: `ObjectStore` over `aws_sdk_s3` (buckets, their configuration, objects,
//! copies in one request or in parts, deletion of whole versioned buckets).

mod listing;

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{port_error, CallRecord, SdkConfig, TRANSIENT};
use crate::ports::*;

pub struct S3 {
    client: aws_sdk_s3::Client,
    region: String,
    /// For a bucket listed without its CreationDate: taken as created now (never "old").
    clock: std::sync::Arc<dyn Clock>,
}

impl S3 {
    /// The adapter over a client of `config` that records its calls to `calls`.
    pub(super) fn new(
        config: &SdkConfig,
        calls: &CallRecord,
        clock: std::sync::Arc<dyn Clock>,
    ) -> S3 {
        // Path-style addressing when an endpoint is given: `bucket.localhost` does not resolve.
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .interceptor(calls.clone())
            .build();
        S3 {
            client: aws_sdk_s3::Client::from_conf(s3_config),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            clock,
        }
    }
}

/// Characters kept as they are in `x-amz-copy-source`: unreserved ones and `/`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// `x-amz-copy-source` of `key` (a version of it: "To copy a specific version of an object,
/// append `?versionId=<version-id>` to the value", CopyObject API).
fn copy_source(bucket: &str, key: &str, version: Option<&str>) -> String {
    let source = format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE));
    match version {
        Some(v) => format!("{source}?versionId={}", utf8_percent_encode(v, COPY_SOURCE)),
        None => source,
    }
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Tags in the URL-query form S3's `x-amz-tagging` header takes.
fn tagging_header(tags: &BTreeMap<String, String>) -> String {
    const QUERY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    tags.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY),
                utf8_percent_encode(v, QUERY)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// One GET of a bucket's configuration: `Ok(None)` when S3 answered its "not configured"
/// code (`none_code`), or when it refused the read for good (then listed as not carried, with
/// S3's words); missing buckets and transient errors fail the call.
fn config_read<T, E>(
    operation: &str,
    result: Result<T, SdkError<E, HttpResponse>>,
    none_code: Option<&str>,
    bucket: &str,
    kind: &str,
    report: &mut BucketConfigReport,
) -> PortResult<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if none_code.is_some() && e.code() == none_code => Ok(None),
        Err(e) => match port_error(operation, &format!("bucket {bucket}"), e) {
            e @ (PortError::NotFound { .. } | PortError::Transient { .. }) => Err(e),
            e => {
                report.not_carried.push(format!(
                    "{kind}: could not be read from {bucket} ({e}); compare it by hand"
                ));
                Ok(None)
            }
        },
    }
}

/// One PUT of a bucket's configuration: carried, or (refused for good) listed as not carried
/// with S3's words; transient errors fail the call (every PUT is idempotent: retried whole).
fn config_written<T, E>(
    operation: &str,
    result: Result<T, SdkError<E, HttpResponse>>,
    source: &str,
    target: &str,
    kind: &str,
    report: &mut BucketConfigReport,
) -> PortResult<()>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => {
            report.carried.push(kind.to_string());
            Ok(())
        }
        Err(e) => match port_error(operation, &format!("bucket {target}"), e) {
            e @ PortError::Transient { .. } => Err(e),
            e => {
                report.not_carried.push(format!(
                    "{kind}: S3 refused it on {target} ({e}); review {source}'s and set it \
                     on {target} yourself"
                ));
                Ok(())
            }
        },
    }
}

impl S3 {
    /// DeleteObjects, 1,000 keys a request; a version id deletes that version (or delete
    /// marker) for good instead of adding a delete marker in a versioned bucket.
    async fn delete_identified(
        &self,
        bucket: &str,
        ids: &[(&str, Option<&str>)],
    ) -> PortResult<()> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let what = format!("bucket {bucket}");
        for batch in ids.chunks(crate::s3sync::DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|(k, v)| {
                    ObjectIdentifier::builder()
                        .key(*k)
                        .set_version_id(v.map(str::to_string))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PortError::failed("s3:DeleteObjects", e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| PortError::failed("s3:DeleteObjects", e.to_string()))?;
            let out = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| port_error("s3:DeleteObjects", &what, e))?;
            // DeleteObjects answers 200 and lists the keys it could not delete.
            if let Some(first) = out.errors().first() {
                let code = first.code().unwrap_or_default();
                let message = format!(
                    "s3://{bucket}/{}{}: {code}: {} ({} key(s) not deleted)",
                    first.key().unwrap_or_default(),
                    first
                        .version_id()
                        .map(|v| format!(" (version {v})"))
                        .unwrap_or_default(),
                    first.message().unwrap_or_default(),
                    out.errors().len()
                );
                return Err(if TRANSIENT.contains(&code) {
                    PortError::Transient {
                        operation: "s3:DeleteObjects".into(),
                        message,
                    }
                } else {
                    PortError::failed("s3:DeleteObjects", message)
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for S3 {
    fn object_url(&self, bucket: &str, key: &str) -> String {
        crate::ports::s3_object_url(&self.region, bucket, key)
    }

    async fn buckets_with_prefix(&self, prefix: &str) -> PortResult<Vec<BucketListing>> {
        let mut pages = self
            .client
            .list_buckets()
            .prefix(prefix)
            // ListBuckets lists every region's buckets; one in another region would answer
            // this client's HeadBucket with a redirect. Only this region's are envclone's here.
            .bucket_region(&self.region)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error("s3:ListBuckets", "buckets", e))?;
            for b in page.buckets() {
                let Some(name) = b.name().filter(|n| n.starts_with(prefix)) else {
                    continue;
                };
                let created = b
                    .creation_date()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                    .unwrap_or_else(|| self.clock.now());
                out.push(BucketListing {
                    name: name.to_string(),
                    created,
                });
            }
        }
        Ok(out)
    }

    async fn bucket_tags(&self, bucket: &str) -> PortResult<Option<BTreeMap<String, String>>> {
        let what = format!("bucket {bucket}");
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e) => {
                return match port_error("s3:HeadBucket", &what, e) {
                    PortError::NotFound { .. } => Ok(None),
                    other => Err(other),
                }
            }
        }
        match self.client.get_bucket_tagging().bucket(bucket).send().await {
            Ok(out) => Ok(Some(
                out.tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
            )),
            // NoSuchTagSet: a bucket without tags.
            Err(e) if e.code() == Some("NoSuchTagSet") => Ok(Some(BTreeMap::new())),
            Err(e) => Err(port_error("s3:GetBucketTagging", &what, e)),
        }
    }

    /// HeadBucket on that many connections at once: the HTTP client's pool holds no idle
    /// connection then, so each request opens one, and each goes back to the pool when its
    /// (bodiless) response has been read. HeadBucket is the lightest request a bucket
    /// answers, and it needs the `s3:ListBucket` permission the listing needs anyway; its
    /// answer is not read: an error (a missing bucket, a redirect to another region, a
    /// denial) is the listing's to report, from its own requests.
    async fn warm_up(&self, bucket: &str, connections: usize) {
        let heads = (0..connections).map(|_| self.client.head_bucket().bucket(bucket).send());
        let _ = futures::future::join_all(heads).await;
    }

    async fn create_bucket(&self, bucket: &str, tags: &BTreeMap<String, String>) -> PortResult<()> {
        use aws_sdk_s3::types::{
            BucketLocationConstraint, CreateBucketConfiguration, Tag, Tagging,
        };
        let what = format!("bucket {bucket}");
        let mut call = self.client.create_bucket().bucket(bucket);
        if self.region != "us-east-1" && !self.region.is_empty() {
            call = call.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        call.send()
            .await
            .map_err(|e| port_error("s3:CreateBucket", &what, e))?;
        let tag_set: Vec<Tag> = tags
            .iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect();
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(|e| PortError::failed("s3:PutBucketTagging", e.to_string()))?;
        self.client
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| port_error("s3:PutBucketTagging", &what, e))?;
        Ok(())
    }

    async fn copy_bucket_configuration(
        &self,
        source: &str,
        target: &str,
    ) -> PortResult<BucketConfigReport> {
        use aws_sdk_s3::types::{
            BucketLifecycleConfiguration, CorsConfiguration, MfaDeleteStatus, Tag, Tagging,
            VersioningConfiguration,
        };
        let c = &self.client;
        let mut r = BucketConfigReport::default();

        // Versioning first: lifecycle rules on noncurrent versions expect it.
        if let Some(out) = config_read(
            "s3:GetBucketVersioning",
            c.get_bucket_versioning().bucket(source).send().await,
            None,
            source,
            "versioning",
            &mut r,
        )? {
            // A bucket never versioned answers no Status.
            if let Some(status) = out.status() {
                let put = c
                    .put_bucket_versioning()
                    .bucket(target)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(status.clone())
                            .build(),
                    )
                    .send()
                    .await;
                config_written(
                    "s3:PutBucketVersioning",
                    put,
                    source,
                    target,
                    "versioning",
                    &mut r,
                )?;
            }
            // "MFA delete can be enabled only by the root user ... with its MFA device"
            // (S3 User Guide, "Configuring MFA delete").
            if out.mfa_delete() == Some(&MfaDeleteStatus::Enabled) {
                r.not_carried.push(format!(
                    "MFA delete: only {source}'s account root user with its MFA device can \
                     enable it; do so on {target} if the clone needs it"
                ));
            }
        }

        // Before the policy: the new bucket blocks public policies by default.
        if let Some(out) = config_read(
            "s3:GetPublicAccessBlock",
            c.get_public_access_block().bucket(source).send().await,
            Some("NoSuchPublicAccessBlockConfiguration"),
            source,
            "public access block",
            &mut r,
        )? {
            if let Some(block) = out.public_access_block_configuration() {
                let put = c
                    .put_public_access_block()
                    .bucket(target)
                    .public_access_block_configuration(block.clone())
                    .send()
                    .await;
                config_written(
                    "s3:PutPublicAccessBlock",
                    put,
                    source,
                    target,
                    "public access block",
                    &mut r,
                )?;
            }
        }

        if let Some(out) = config_read(
            "s3:GetBucketOwnershipControls",
            c.get_bucket_ownership_controls()
                .bucket(source)
                .send()
                .await,
            Some("OwnershipControlsNotFoundError"),
            source,
            "ownership controls",
            &mut r,
        )? {
            if let Some(controls) = out.ownership_controls() {
                let put = c
                    .put_bucket_ownership_controls()
                    .bucket(target)
                    .ownership_controls(controls.clone())
                    .send()
                    .await;
                config_written(
                    "s3:PutBucketOwnershipControls",
                    put,
                    source,
                    target,
                    "ownership controls",
                    &mut r,
                )?;
            }
        }

        if let Some(out) = config_read(
            "s3:GetBucketEncryption",
            c.get_bucket_encryption().bucket(source).send().await,
            Some("ServerSideEncryptionConfigurationNotFoundError"),
            source,
            "default encryption",
            &mut r,
        )? {
            if let Some(sse) = out.server_side_encryption_configuration() {
                let put = c
                    .put_bucket_encryption()
                    .bucket(target)
                    .server_side_encryption_configuration(sse.clone())
                    .send()
                    .await;
                config_written(
                    "s3:PutBucketEncryption",
                    put,
                    source,
                    target,
                    "default encryption",
                    &mut r,
                )?;
            }
        }

        if let Some(out) = config_read(
            "s3:GetBucketCors",
            c.get_bucket_cors().bucket(source).send().await,
            Some("NoSuchCORSConfiguration"),
            source,
            "CORS",
            &mut r,
        )? {
            if !out.cors_rules().is_empty() {
                let cors = CorsConfiguration::builder()
                    .set_cors_rules(Some(out.cors_rules().to_vec()))
                    .build()
                    .map_err(|e| PortError::failed("s3:PutBucketCors", e.to_string()))?;
                let put = c
                    .put_bucket_cors()
                    .bucket(target)
                    .cors_configuration(cors)
                    .send()
                    .await;
                config_written("s3:PutBucketCors", put, source, target, "CORS", &mut r)?;
            }
        }

        if let Some(out) = config_read(
            "s3:GetBucketLifecycleConfiguration",
            c.get_bucket_lifecycle_configuration()
                .bucket(source)
                .send()
                .await,
            Some("NoSuchLifecycleConfiguration"),
            source,
            "lifecycle",
            &mut r,
        )? {
            if !out.rules().is_empty() {
                let rules = BucketLifecycleConfiguration::builder()
                    .set_rules(Some(out.rules().to_vec()))
                    .build()
                    .map_err(|e| {
                        PortError::failed("s3:PutBucketLifecycleConfiguration", e.to_string())
                    })?;
                let put = c
                    .put_bucket_lifecycle_configuration()
                    .bucket(target)
                    .lifecycle_configuration(rules)
                    .set_transition_default_minimum_object_size(
                        out.transition_default_minimum_object_size().cloned(),
                    )
                    .send()
                    .await;
                config_written(
                    "s3:PutBucketLifecycleConfiguration",
                    put,
                    source,
                    target,
                    "lifecycle",
                    &mut r,
                )?;
            }
        }

        // The source's tags under the new bucket's own (envclone's, which win).
        let source_tags = match c.get_bucket_tagging().bucket(source).send().await {
            Ok(out) => out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            Err(e) if e.code() == Some("NoSuchTagSet") => BTreeMap::new(),
            Err(e) => {
                return Err(port_error(
                    "s3:GetBucketTagging",
                    &format!("bucket {source}"),
                    e,
                ))
            }
        };
        if source_tags.keys().any(|k| !is_aws_reserved_tag(k)) {
            let own = self.bucket_tags(target).await?.unwrap_or_default();
            let tag_set = merged_bucket_tags(&source_tags, &own)
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PortError::failed("s3:PutBucketTagging", e.to_string()))?;
            let tagging = Tagging::builder()
                .set_tag_set(Some(tag_set))
                .build()
                .map_err(|e| PortError::failed("s3:PutBucketTagging", e.to_string()))?;
            let put = c
                .put_bucket_tagging()
                .bucket(target)
                .tagging(tagging)
                .send()
                .await;
            config_written("s3:PutBucketTagging", put, source, target, "tags", &mut r)?;
        }

        if let Some(out) = config_read(
            "s3:GetBucketPolicy",
            c.get_bucket_policy().bucket(source).send().await,
            Some("NoSuchBucketPolicy"),
            source,
            "bucket policy",
            &mut r,
        )? {
            if let Some(policy) = out.policy() {
                let put = c
                    .put_bucket_policy()
                    .bucket(target)
                    .policy(rewrite_bucket_policy(policy, source, target))
                    .send()
                    .await;
                config_written(
                    "s3:PutBucketPolicy",
                    put,
                    source,
                    target,
                    "bucket policy",
                    &mut r,
                )?;
            }
        }

        // These point at other resources (topics, queues, functions, destination buckets) of
        // the source's environment: not carried.
        if let Some(out) = config_read(
            "s3:GetBucketNotificationConfiguration",
            c.get_bucket_notification_configuration()
                .bucket(source)
                .send()
                .await,
            None,
            source,
            "event notifications",
            &mut r,
        )? {
            if !out.topic_configurations().is_empty()
                || !out.queue_configurations().is_empty()
                || !out.lambda_function_configurations().is_empty()
                || out.event_bridge_configuration().is_some()
            {
                r.not_carried.push(format!(
                    "event notifications: they send to topics, queues, functions or \
                     EventBridge of {source}'s environment; configure {target}'s own if the \
                     clone needs them"
                ));
            }
        }
        if let Some(out) = config_read(
            "s3:GetBucketReplication",
            c.get_bucket_replication().bucket(source).send().await,
            Some("ReplicationConfigurationNotFoundError"),
            source,
            "replication",
            &mut r,
        )? {
            if out.replication_configuration().is_some() {
                r.not_carried.push(format!(
                    "replication: it writes to {source}'s destination buckets; configure \
                     {target}'s own if the clone needs it"
                ));
            }
        }
        Ok(r)
    }

    async fn list_page_after(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> PortResult<ListPage> {
        // RestoreStatus tells which archived objects have a restored copy (copyable).
        let mut call = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(max_keys.clamp(1, PAGE_KEYS) as i32)
            .optional_object_attributes(aws_sdk_s3::types::OptionalObjectAttributes::RestoreStatus);
        if !prefix.is_empty() {
            call = call.prefix(prefix);
        }
        if let (Some(after), None) = (start_after, &token) {
            call = call.start_after(after);
        }
        let fast = listing::FastListing::default();
        let parsed = fast.slot();
        let out = call
            .set_continuation_token(token)
            .customize()
            .interceptor(fast)
            .send()
            .await
            .map_err(|e| port_error("s3:ListObjectsV2", &format!("bucket {bucket}"), e))?;
        if let Some(page) = parsed.lock().expect("listing slot lock").take() {
            return Ok(page);
        }
        Ok(page_of(&out))
    }

    async fn head_object_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        part_number: Option<u32>,
    ) -> PortResult<ObjectHead> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .set_part_number(part_number.map(|n| n as i32))
            // Without it HeadObject leaves the x-amz-checksum-* headers out ("Checking object
            // integrity"; HeadObject API, x-amz-checksum-mode). For an SSE-KMS object it needs
            // kms:Decrypt, which copying it needs anyway.
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| port_error("s3:HeadObject", &format!("s3://{bucket}/{key}"), e))?;
        let checksum = [
            ("CRC64NVME", out.checksum_crc64_nvme()),
            ("CRC32C", out.checksum_crc32_c()),
            ("CRC32", out.checksum_crc32()),
            ("SHA256", out.checksum_sha256()),
            ("SHA1", out.checksum_sha1()),
        ]
        .into_iter()
        .find_map(|(algorithm, value)| {
            value.map(|value| ObjectChecksum {
                algorithm: algorithm.to_string(),
                value: value.to_string(),
                full_object: out.checksum_type()
                    != Some(&aws_sdk_s3::types::ChecksumType::Composite)
                    && !value.contains('-'),
            })
        });
        Ok(ObjectHead {
            encryption: out.server_side_encryption().map(|a| ObjectEncryption {
                algorithm: a.as_str().to_string(),
                kms_key_id: out.ssekms_key_id().map(str::to_string),
                bucket_key: out.bucket_key_enabled() == Some(true),
            }),
            checksum,
            size: out.content_length().unwrap_or_default().max(0) as u64,
            etag: unquote(out.e_tag().unwrap_or_default()),
            content_type: out.content_type().map(str::to_string),
            content_encoding: out.content_encoding().map(str::to_string),
            content_disposition: out.content_disposition().map(str::to_string),
            content_language: out.content_language().map(str::to_string),
            cache_control: out.cache_control().map(str::to_string),
            storage_class: out
                .storage_class()
                .map(|c| c.as_str().to_string())
                .filter(|c| c != "STANDARD"),
            metadata: out
                .metadata()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default(),
            parts_count: out.parts_count().map(|n| n as u32),
        })
    }

    async fn object_tags_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> PortResult<BTreeMap<String, String>> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| port_error("s3:GetObjectTagging", &format!("s3://{bucket}/{key}"), e))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    async fn copy_object_version(
        &self,
        src_bucket: &str,
        src_key: &str,
        src_version: Option<&str>,
        dst_bucket: &str,
        dst_key: &str,
        request: &CopyRequest,
    ) -> PortResult<CopiedObject> {
        use aws_sdk_s3::types::{
            ChecksumAlgorithm, MetadataDirective, ServerSideEncryption, StorageClass,
            TaggingDirective,
        };
        let encryption = request.encryption.as_ref();
        let out = self
            .client
            .copy_object()
            .bucket(dst_bucket)
            .key(dst_key)
            .copy_source(copy_source(src_bucket, src_key, src_version))
            .metadata_directive(MetadataDirective::Copy)
            .tagging_directive(TaggingDirective::Copy)
            .set_storage_class(request.storage_class.as_deref().map(StorageClass::from))
            // CopyObject API: x-amz-server-side-encryption, -aws-kms-key-id and
            // -bucket-key-enabled; without them the destination bucket's default applies.
            .set_server_side_encryption(
                encryption.map(|e| ServerSideEncryption::from(e.algorithm.as_str())),
            )
            .set_ssekms_key_id(encryption.and_then(|e| e.kms_key_id.clone()))
            .set_bucket_key_enabled(encryption.filter(|e| e.is_kms()).map(|e| e.bucket_key))
            // x-amz-checksum-algorithm: S3 computes the copy's checksum from the copied bytes.
            .set_checksum_algorithm(
                request
                    .checksum_algorithm
                    .as_deref()
                    .map(ChecksumAlgorithm::from),
            )
            .send()
            .await
            .map_err(|e| port_error("s3:CopyObject", &format!("s3://{src_bucket}/{src_key}"), e))?;
        Ok(CopiedObject {
            etag: unquote(
                out.copy_object_result()
                    .and_then(|r| r.e_tag())
                    .unwrap_or_default(),
            ),
            encryption: out.server_side_encryption().map(|a| ObjectEncryption {
                algorithm: a.as_str().to_string(),
                kms_key_id: out.ssekms_key_id().map(str::to_string),
                bucket_key: out.bucket_key_enabled() == Some(true),
            }),
        })
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        head: &ObjectHead,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<String> {
        use aws_sdk_s3::types::StorageClass;
        let mut call = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(head.content_type.clone())
            .set_content_encoding(head.content_encoding.clone())
            .set_content_disposition(head.content_disposition.clone())
            .set_content_language(head.content_language.clone())
            .set_cache_control(head.cache_control.clone())
            .set_storage_class(head.storage_class.as_deref().map(StorageClass::from))
            .set_metadata(Some(head.metadata.clone().into_iter().collect()));
        if let Some(e) = &head.encryption {
            use aws_sdk_s3::types::ServerSideEncryption;
            call = call
                .server_side_encryption(ServerSideEncryption::from(e.algorithm.as_str()))
                .set_ssekms_key_id(e.kms_key_id.clone());
            if e.is_kms() {
                call = call.bucket_key_enabled(e.bucket_key);
            }
        }
        if let Some(c) = &head.checksum {
            // CreateMultipartUpload `ChecksumAlgorithm` and `ChecksumType`: each part then
            // carries a checksum of that algorithm, and the object a full-object one (the
            // checksum of the whole content) or a composite one (of the parts' checksums).
            use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType};
            call = call
                .checksum_algorithm(ChecksumAlgorithm::from(c.algorithm.as_str()))
                .checksum_type(if c.full_object {
                    ChecksumType::FullObject
                } else {
                    ChecksumType::Composite
                });
        }
        if !tags.is_empty() {
            call = call.tagging(tagging_header(tags));
        }
        let out = call.send().await.map_err(|e| {
            port_error(
                "s3:CreateMultipartUpload",
                &format!("s3://{bucket}/{key}"),
                e,
            )
        })?;
        out.upload_id().map(str::to_string).ok_or_else(|| {
            PortError::failed("s3:CreateMultipartUpload", "no upload id in the answer")
        })
    }

    async fn upload_part_copy_version(
        &self,
        (src_bucket, src_key, src_version): (&str, &str, Option<&str>),
        if_match: Option<&str>,
        dst_bucket: &str,
        dst_key: &str,
        upload_id: &str,
        part: u32,
        first: u64,
        last: u64,
    ) -> PortResult<CopiedPart> {
        let out = self
            .client
            .upload_part_copy()
            .bucket(dst_bucket)
            .key(dst_key)
            .upload_id(upload_id)
            .part_number(part as i32)
            .copy_source(copy_source(src_bucket, src_key, src_version))
            .copy_source_range(format!("bytes={first}-{last}"))
            // An entity tag, quoted as HTTP's If-Match takes it.
            .set_copy_source_if_match(if_match.map(|etag| format!("\"{etag}\"")))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "s3:UploadPartCopy",
                    &format!("s3://{src_bucket}/{src_key} part {part}"),
                    e,
                )
            })?;
        let result = out.copy_part_result();
        // CopyPartResult carries the part's checksum of the upload's algorithm, if any.
        let checksum = result.and_then(|r| {
            [
                ("CRC64NVME", r.checksum_crc64_nvme()),
                ("CRC32C", r.checksum_crc32_c()),
                ("CRC32", r.checksum_crc32()),
                ("SHA256", r.checksum_sha256()),
                ("SHA1", r.checksum_sha1()),
            ]
            .into_iter()
            .find_map(|(a, v)| v.map(|v| (a.to_string(), v.to_string())))
        });
        Ok(CopiedPart {
            etag: unquote(result.and_then(|r| r.e_tag()).unwrap_or_default()),
            checksum,
        })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        completed: &[CopiedPart],
    ) -> PortResult<String> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let parts = completed
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let etag = &part.etag;
                let builder = CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(format!("\"{etag}\""));
                // CompletedPart.ChecksumCRC64NVME etc.: the part's checksum, given back.
                let builder = match part.checksum.clone() {
                    Some((a, v)) => match a.as_str() {
                        "CRC64NVME" => builder.checksum_crc64_nvme(v),
                        "CRC32C" => builder.checksum_crc32_c(v),
                        "CRC32" => builder.checksum_crc32(v),
                        "SHA256" => builder.checksum_sha256(v),
                        _ => builder.checksum_sha1(v),
                    },
                    None => builder,
                };
                builder.build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "s3:CompleteMultipartUpload",
                    &format!("s3://{bucket}/{key}"),
                    e,
                )
            })?;
        Ok(unquote(out.e_tag().unwrap_or_default()))
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> PortResult<()> {
        self.client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "s3:AbortMultipartUpload",
                    &format!("s3://{bucket}/{key}"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> PortResult<()> {
        let ids: Vec<(&str, Option<&str>)> = keys.iter().map(|k| (k.as_str(), None)).collect();
        self.delete_identified(bucket, &ids).await
    }

    async fn noncurrent_versions_expire(&self, bucket: &str) -> PortResult<bool> {
        let answer = self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await;
        let out = match answer {
            Ok(out) => out,
            Err(e) => {
                let what = format!("bucket {bucket}");
                return match port_error("s3:GetBucketLifecycleConfiguration", &what, e) {
                    // No configuration at all.
                    PortError::NotFound { .. } => Ok(false),
                    PortError::Failed { message, .. }
                        if message.contains("NoSuchLifecycleConfiguration") =>
                    {
                        Ok(false)
                    }
                    e @ PortError::Transient { .. } => Err(e),
                    // Not readable (e.g. AccessDenied): it may.
                    _ => Ok(true),
                };
            }
        };
        Ok(out.rules().iter().any(|rule| {
            rule.status() == &aws_sdk_s3::types::ExpirationStatus::Enabled
                && rule.noncurrent_version_expiration().is_some()
        }))
    }

    async fn versioning(&self, bucket: &str) -> PortResult<Option<String>> {
        let out = self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| port_error("s3:GetBucketVersioning", &format!("bucket {bucket}"), e))?;
        Ok(out.status().map(|s| s.as_str().to_string()))
    }

    async fn list_versions_page(
        &self,
        bucket: &str,
        marker: Option<(String, String)>,
    ) -> PortResult<VersionPage> {
        let (key_marker, version_marker) = match marker {
            Some((k, v)) => (Some(k), Some(v)),
            None => (None, None),
        };
        let out = self
            .client
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .map_err(|e| port_error("s3:ListObjectVersions", &format!("bucket {bucket}"), e))?;
        let time = |t: Option<&aws_sdk_s3::primitives::DateTime>| {
            t.and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                .unwrap_or_default()
        };
        let mut versions: Vec<ObjectVersion> = out
            .versions()
            .iter()
            .map(|v| ObjectVersion {
                key: v.key().unwrap_or_default().to_string(),
                version_id: v.version_id().unwrap_or("null").to_string(),
                delete_marker: false,
                last_modified: time(v.last_modified()),
                is_latest: v.is_latest() == Some(true),
                size: v.size().unwrap_or_default().max(0) as u64,
                etag: unquote(v.e_tag().unwrap_or_default()),
                storage_class: v
                    .storage_class()
                    .map(|c| c.as_str().to_string())
                    .filter(|c| c != "STANDARD"),
                checksum_algorithm: v
                    .checksum_algorithm()
                    .first()
                    .map(|a| a.as_str().to_string()),
            })
            .chain(out.delete_markers().iter().map(|m| ObjectVersion {
                key: m.key().unwrap_or_default().to_string(),
                version_id: m.version_id().unwrap_or("null").to_string(),
                delete_marker: true,
                last_modified: time(m.last_modified()),
                is_latest: m.is_latest() == Some(true),
                size: 0,
                etag: String::new(),
                storage_class: None,
                checksum_algorithm: None,
            }))
            .collect();
        // S3 sends versions and delete markers interleaved, by key and newest first; the SDK
        // hands them over as two lists. Put back: by key, the current entry first, then by
        // LastModified, newest first (the sort is stable: each list keeps S3's order). Two
        // entries of one key within the same second, one a version and one a delete marker,
        // cannot be ordered again from what the SDK keeps (see `s3sync::as_of`).
        versions.sort_by(|a, b| {
            a.key
                .cmp(&b.key)
                .then(b.is_latest.cmp(&a.is_latest))
                .then(b.last_modified.cmp(&a.last_modified))
        });
        let next = match (out.is_truncated(), out.next_key_marker()) {
            (Some(true), Some(key)) => Some((
                key.to_string(),
                out.next_version_id_marker().unwrap_or_default().to_string(),
            )),
            _ => None,
        };
        Ok(VersionPage { versions, next })
    }

    async fn delete_versions(&self, bucket: &str, versions: &[ObjectVersion]) -> PortResult<()> {
        let ids: Vec<(&str, Option<&str>)> = versions
            .iter()
            .map(|v| (v.key.as_str(), Some(v.version_id.as_str())))
            .collect();
        self.delete_identified(bucket, &ids).await
    }

    async fn put_small_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        condition: Option<&str>,
    ) -> PortResult<String> {
        let what = format!("s3://{bucket}/{key}");
        let mut call = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(body.into());
        match condition {
            Some("*") => call = call.if_none_match("*"),
            Some(etag) => call = call.if_match(etag),
            None => {}
        }
        match call.send().await {
            Ok(out) => Ok(unquote(out.e_tag().unwrap_or_default())),
            Err(e) => Err(port_error("s3:PutObject", &what, e)),
        }
    }

    async fn get_small_object(&self, bucket: &str, key: &str) -> PortResult<Option<SmallObject>> {
        let what = format!("s3://{bucket}/{key}");
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = unquote(out.e_tag().unwrap_or_default());
                // GetObject always answers with Last-Modified (Amazon S3 API Reference,
                // GetObject: "Date and time when the object was last modified").
                let last_modified = out
                    .last_modified()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                    .ok_or_else(|| {
                        PortError::failed(
                            "s3:GetObject",
                            format!("{what}: the answer carries no Last-Modified"),
                        )
                    })?;
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| PortError::Transient {
                        operation: "s3:GetObject".into(),
                        message: e.to_string(),
                    })?
                    .into_bytes()
                    .to_vec();
                Ok(Some(SmallObject {
                    body,
                    etag,
                    last_modified,
                }))
            }
            Err(e) => match port_error("s3:GetObject", &what, e) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> PortResult<()> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| port_error("s3:DeleteObject", &format!("s3://{bucket}/{key}"), e))?;
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> PortResult<()> {
        self.client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| port_error("s3:DeleteBucket", &format!("bucket {bucket}"), e))?;
        Ok(())
    }

    async fn content_md5_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> PortResult<String> {
        use md5::{Digest, Md5};
        let what = format!("s3://{bucket}/{key}");
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| port_error("s3:GetObject", &what, e))?;
        let mut body = out.body;
        let mut hasher = Md5::new();
        while let Some(chunk) = body.try_next().await.map_err(|e| PortError::Transient {
            operation: "s3:GetObject".into(),
            message: e.to_string(),
        })? {
            hasher.update(&chunk);
        }
        Ok(format!("{:x}", hasher.finalize()))
    }

    async fn inventory_configurations(
        &self,
        bucket: &str,
    ) -> PortResult<Vec<InventoryConfiguration>> {
        const OP: &str = "s3:ListBucketInventoryConfigurations";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_bucket_inventory_configurations()
                .bucket(bucket)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| port_error(OP, &format!("bucket {bucket}"), e))?;
            for c in page.inventory_configuration_list() {
                let destination = c.destination().and_then(|d| d.s3_bucket_destination());
                out.push(InventoryConfiguration {
                    id: c.id().to_string(),
                    enabled: c.is_enabled(),
                    destination_bucket: destination
                        .map(|d| {
                            let arn = d.bucket();
                            arn.strip_prefix("arn:aws:s3:::").unwrap_or(arn).to_string()
                        })
                        .unwrap_or_default(),
                    destination_prefix: destination.and_then(|d| d.prefix()).map(str::to_string),
                    format: destination
                        .map(|d| d.format().as_str().to_string())
                        .unwrap_or_default(),
                    included_versions: c.included_object_versions().as_str().to_string(),
                    filter_prefix: c.filter().map(|f| f.prefix().to_string()),
                    frequency: c
                        .schedule()
                        .map(|s| s.frequency().as_str().to_string())
                        .unwrap_or_default(),
                });
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() || page.is_truncated() != Some(true) {
                return Ok(out);
            }
        }
    }
}

/// An SDK timestamp as chrono's.
pub(crate) fn sdk_time(
    t: &aws_sdk_s3::primitives::DateTime,
) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// A ListObjectsV2 page as the SDK decoded it (`listing::parse_page` reads the same fields the
/// same way, faster; this is for the answers it leaves to the SDK).
fn page_of(out: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> ListPage {
    ListPage {
        objects: out
            .contents()
            .iter()
            .map(|o| ObjectSummary {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or_default().max(0) as u64,
                etag: unquote(o.e_tag().unwrap_or_default()),
                storage_class: o
                    .storage_class()
                    .map(|c| c.as_str().to_string())
                    .filter(|c| c != "STANDARD"),
                // "If the object restoration has completed, [IsRestoreInProgress] returns
                // the value FALSE ... If the object hasn't been restored, there is no
                // header response" (S3 API Reference, RestoreStatus).
                restored: o
                    .restore_status()
                    .is_some_and(|r| r.is_restore_in_progress() == Some(false)),
                checksum_algorithm: o
                    .checksum_algorithm()
                    .first()
                    .map(|a| a.as_str().to_string()),
                version_id: None,
                last_modified: o.last_modified().and_then(sdk_time),
            })
            .collect(),
        next_token: if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_string)
        } else {
            None
        },
    }
}
