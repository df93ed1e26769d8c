//! Encrypted objects in the bucket sync engine, on the in-memory fake (issue 11, item 5).
//!
//! The fake models S3 harshly: an SSE-KMS object's ETag is no MD5 and is new with every write,
//! so a copy never has its source's ETag; a CopyObject without encryption headers gets the
//! destination bucket's default encryption; a copy carries a checksum only when it asks for one
//! or its source has one; an SSE-C object cannot be headed, read or copied without its key.
//! Before the fix (size + ETag only) every re-sync copied every SSE-KMS object again, a
//! verification reported each of them as a different ETag, and copies lost their KMS key.

use std::sync::Arc;

use envclone::fake::{FakeAws, FakeBucketConfig};
use envclone::ports::{ObjectChecksum, ObjectEncryption, ObjectHead, ObjectStore};
use envclone::s3sync::{self, BucketPath, SseMode, SyncError, SyncOptions};

use crate::support::timings;

const SRC: &str = "kms-source";
const DST: &str = "kms-target";
const KEY_A: &str = "arn:aws:kms:us-east-1:123456789012:key/aaaa-1111";
const KEY_B: &str = "arn:aws:kms:us-east-1:123456789012:key/bbbb-2222";

fn kms(key: &str) -> ObjectEncryption {
    ObjectEncryption {
        algorithm: "aws:kms".into(),
        kms_key_id: Some(key.into()),
        bucket_key: true,
    }
}

/// An SSE-KMS object as S3 writes one today: with the CRC64NVME checksum S3 computes for
/// every upload ("Checking object integrity").
fn kms_head(key: &str) -> ObjectHead {
    ObjectHead {
        content_type: Some("application/octet-stream".into()),
        encryption: Some(kms(key)),
        checksum: Some(ObjectChecksum {
            algorithm: "CRC64NVME".into(),
            value: String::new(), // computed by the fake from the bytes
            full_object: true,
        }),
        ..Default::default()
    }
}

/// The source: 30 SSE-KMS objects under KEY_A (the bucket's default) and 5 under KEY_B; the
/// target bucket's default encryption is S3's own, SSE-S3.
fn encrypted_buckets() -> (FakeAws, Arc<dyn ObjectStore>) {
    let fake = FakeAws::new(timings());
    fake.create_bucket_now(SRC);
    fake.create_bucket_now(DST);
    fake.set_bucket_config(
        SRC,
        FakeBucketConfig {
            encryption: Some(format!("aws:kms {KEY_A} bucket-key")),
            ..Default::default()
        },
    );
    for i in 0..35 {
        let key = if i < 30 { KEY_A } else { KEY_B };
        fake.put_object(
            SRC,
            &format!("docs/{i:03}.pdf"),
            format!("document {i:03}").as_bytes(),
            kms_head(key),
            &[("class", "doc")],
        );
    }
    let store: Arc<dyn ObjectStore> = Arc::new(fake.clone());
    (fake, store)
}

fn options(sse: SseMode) -> SyncOptions {
    SyncOptions {
        concurrency: 8,
        multipart_threshold: 64 * 1024,
        sse,
        ..SyncOptions::default()
    }
}

async fn sync(store: &Arc<dyn ObjectStore>, sse: SseMode) -> Result<s3sync::SyncStats, SyncError> {
    s3sync::sync(
        store.clone(),
        &BucketPath::bucket(SRC),
        &BucketPath::bucket(DST),
        &options(sse),
    )
    .await
}

async fn verify(store: &Arc<dyn ObjectStore>) -> s3sync::VerifyReport {
    s3sync::verify(
        store.clone(),
        &BucketPath::bucket(SRC),
        &BucketPath::bucket(DST),
        8,
    )
    .await
    .unwrap()
}

/// A verification finds the buckets equal, having compared so many objects by checksum and so
/// many by reading them.
async fn verifies_equal(store: &Arc<dyn ObjectStore>, by_checksum: u64, by_content: u64) {
    let report = verify(store).await;
    assert!(report.is_equal(), "{:?}", report.mismatches);
    assert_eq!(
        (report.compared_by_checksum, report.compared_by_content),
        (by_checksum, by_content)
    );
}

fn copies(fake: &FakeAws) -> usize {
    fake.calls()
        .iter()
        .filter(|c| c.operation == "s3:CopyObject")
        .count()
}

// (a) Before the fix the second sync copied all 35 objects again: their copies' ETags differ
// from the sources' (SSE-KMS), and size + ETag was the only test.
#[tokio::test(start_paused = true)]
async fn a_second_sync_of_sse_kms_objects_copies_nothing() {
    let (fake, store) = encrypted_buckets();
    let first = sync(&store, SseMode::Keep).await.unwrap();
    assert_eq!(first.copied, 35);
    let o = fake.object(DST, "docs/000.pdf").unwrap();
    assert_ne!(
        o.etag,
        fake.object(SRC, "docs/000.pdf").unwrap().etag,
        "the model: an SSE-KMS copy has another ETag"
    );
    let before = copies(&fake);
    // A dry run says so too (it asks the checksums inline instead of in copy tasks).
    let planned = s3sync::sync(
        store.clone(),
        &BucketPath::bucket(SRC),
        &BucketPath::bucket(DST),
        &SyncOptions {
            dry_run: true,
            ..options(SseMode::Keep)
        },
    )
    .await
    .unwrap();
    assert_eq!((planned.copied, planned.unchanged), (0, 35), "{planned:?}");
    let second = sync(&store, SseMode::Keep).await.unwrap();
    assert_eq!(
        (
            second.copied,
            second.unchanged,
            second.unchanged_by_checksum
        ),
        (0, 35, 35),
        "{second:?}"
    );
    assert_eq!(copies(&fake), before, "no CopyObject on the re-sync");
}

// (b) Before the fix a verification of a fresh SSE-KMS copy reported all 35 objects ("ETag …
// in the source, … in the target").
#[tokio::test(start_paused = true)]
async fn a_fresh_copy_of_sse_kms_objects_verifies_by_checksum() {
    let (_fake, store) = encrypted_buckets();
    sync(&store, SseMode::Keep).await.unwrap();
    let report = verify(&store).await;
    assert!(report.is_equal(), "{:?}", report.mismatches);
    assert_eq!((report.compared, report.compared_by_checksum), (35, 35));
    assert_eq!(
        report.compared_by_content, 0,
        "no object read through envclone"
    );
}

// (c) Before the fix a copy carried no encryption headers: S3 gave it the target bucket's
// default (SSE-S3 here), and the KMS keys were lost. `SseMode::DestinationDefault` (`s3 sync
// --sse destination-default`) asks for exactly that.
#[tokio::test(start_paused = true)]
async fn copies_keep_their_kms_key_unless_the_destination_default_is_asked_for() {
    let (fake, store) = encrypted_buckets();
    // A multipart SSE-KMS object too: copied in parts, CreateMultipartUpload carries the key.
    let big: Vec<u8> = (0..5 * 1024u32).map(|i| (i % 251) as u8).collect();
    fake.put_multipart_object(
        SRC,
        "big/parts.bin",
        &big,
        &[2048, 2048, 1024],
        kms_head(KEY_B),
    );
    sync(&store, SseMode::Keep).await.unwrap();
    for (key, kms_key) in [
        ("docs/000.pdf", KEY_A),
        ("docs/034.pdf", KEY_B),
        ("big/parts.bin", KEY_B),
    ] {
        let e = fake.object(DST, key).unwrap().head.encryption.unwrap();
        assert_eq!(
            (e.algorithm.as_str(), e.kms_key_id.as_deref(), e.bucket_key),
            ("aws:kms", Some(kms_key), true),
            "{key}"
        );
    }

    let (fake, store) = encrypted_buckets();
    sync(&store, SseMode::DestinationDefault).await.unwrap();
    let e = fake
        .object(DST, "docs/034.pdf")
        .unwrap()
        .head
        .encryption
        .unwrap();
    assert_eq!((e.algorithm.as_str(), e.kms_key_id), ("AES256", None));
    // Same bytes, destination's encryption as asked: a re-sync with the same choice copies
    // nothing (the checksums agree; the encryption is not a difference then).
    let again = sync(&store, SseMode::DestinationDefault).await.unwrap();
    assert_eq!((again.copied, again.unchanged), (0, 35), "{again:?}");
    // Asking to keep the sources' encryption afterwards re-copies them, with their keys.
    let keep = sync(&store, SseMode::Keep).await.unwrap();
    assert_eq!(keep.copied, 35, "{keep:?}");
    let e = fake.object(DST, "docs/034.pdf").unwrap().head.encryption;
    assert_eq!(e, Some(kms(KEY_B)));
}

// (d) The checksum path compares, it does not skip: an SSE-KMS object rewritten in the target
// with other bytes of the same size (a new ETag, as every SSE-KMS write has) is a difference
// for the verification, and the next sync copies it — only it.
#[tokio::test(start_paused = true)]
async fn a_changed_encrypted_object_of_the_same_size_is_found_by_its_checksum() {
    let (fake, store) = encrypted_buckets();
    sync(&store, SseMode::Keep).await.unwrap();
    fake.put_object(
        DST,
        "docs/007.pdf",
        b"tampered 007",
        kms_head(KEY_A),
        &[("class", "doc")],
    );
    assert_eq!(b"tampered 007".len(), b"document 007".len());
    let report = verify(&store).await;
    assert_eq!(report.mismatches.len(), 1, "{:?}", report.mismatches);
    assert_eq!(report.mismatches[0].key, "docs/007.pdf");
    assert!(
        report.mismatches[0]
            .problem
            .contains("content differs (CRC64NVME checksum"),
        "{}",
        report.mismatches[0].problem
    );
    let stats = sync(&store, SseMode::Keep).await.unwrap();
    assert_eq!((stats.copied, stats.unchanged), (1, 34), "{stats:?}");
    assert!(verify(&store).await.is_equal());
}

// A source object without a checksum (written before S3 kept one for every upload) cannot be
// compared with its copy without reading it: it is copied again, counted, never skipped.
#[tokio::test(start_paused = true)]
async fn an_encrypted_object_without_a_checksum_is_copied_again_and_counted() {
    let (fake, store) = encrypted_buckets();
    fake.put_object(
        SRC,
        "old/legacy.bin",
        b"written in 2019",
        ObjectHead {
            encryption: Some(kms(KEY_A)),
            ..Default::default()
        },
        &[],
    );
    sync(&store, SseMode::Keep).await.unwrap();
    let copy = fake.object(DST, "old/legacy.bin").unwrap();
    assert_eq!(
        copy.head.checksum.map(|c| c.algorithm),
        Some("CRC64NVME".to_string()),
        "the copy asked for a checksum"
    );
    let again = sync(&store, SseMode::Keep).await.unwrap();
    assert_eq!(
        (again.copied, again.copied_without_checksum, again.unchanged),
        (1, 1, 35),
        "{again:?}"
    );
    // The verification reads the two (the bytes through envclone) rather than guess.
    verifies_equal(&store, 35, 1).await;
}

// The unencrypted common case keeps its fast path: no HeadObject for a first sync of
// single-part SSE-S3 objects (each copy's ETag is its source's), none for the no-op.
#[tokio::test(start_paused = true)]
async fn unencrypted_objects_are_copied_and_compared_without_a_head_object() {
    let fake = FakeAws::new(timings());
    fake.create_bucket_now(SRC);
    fake.create_bucket_now(DST);
    for i in 0..50 {
        fake.put_object(
            SRC,
            &format!("plain/{i:03}"),
            format!("plain {i}").as_bytes(),
            ObjectHead::default(),
            &[],
        );
    }
    let store: Arc<dyn ObjectStore> = Arc::new(fake.clone());
    assert_eq!(sync(&store, SseMode::Keep).await.unwrap().copied, 50);
    assert_eq!(sync(&store, SseMode::Keep).await.unwrap().unchanged, 50);
    let heads = fake
        .calls()
        .iter()
        .filter(|c| c.operation == "s3:HeadObject")
        .count();
    assert_eq!(heads, 0);
    // The copies asked for a checksum all the same (sources without one).
    let copy = fake.object(DST, "plain/000").unwrap();
    assert_eq!(
        copy.head.checksum.map(|c| c.algorithm),
        Some("CRC64NVME".to_string())
    );
}

// SSE-C: S3 keeps no key, so envclone can neither head nor copy such an object. Before the
// fix each one failed as an anonymous "copying … failed: InvalidRequest"; now the sync copies
// the rest and refuses with the count, the first keys, and what to do.
#[tokio::test(start_paused = true)]
async fn objects_encrypted_with_a_customer_key_are_refused_by_name() {
    let (fake, store) = encrypted_buckets();
    for i in 0..7 {
        fake.put_customer_key_object(SRC, &format!("secret/{i}.bin"), b"customer-key data");
    }
    let err = sync(&store, SseMode::Keep).await.unwrap_err();
    match &err {
        SyncError::CustomerKey {
            bucket,
            count,
            keys,
        } => {
            assert_eq!((bucket.as_str(), *count, keys.len()), (SRC, 7, 5));
            assert_eq!(keys[0], "secret/0.bin");
        }
        other => panic!("expected the SSE-C refusal, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("7 object(s) are encrypted with a customer-provided key (SSE-C)")
            && message.contains("\"secret/0.bin\"")
            && message.contains("--copy-source-sse-customer-key"),
        "{message}"
    );
    assert_eq!(
        fake.object_keys(DST).len(),
        35,
        "the other objects were copied"
    );
    assert!(fake.object(DST, "secret/0.bin").is_none());
}

fn copy_calls(fake: &FakeAws) -> usize {
    fake.calls()
        .iter()
        .filter(|c| c.operation == "s3:CopyObject" || c.operation == "s3:UploadPartCopy")
        .count()
}

// Issue 11, item 5 (the multipart gap). Before the fix a copy in parts asked for no checksum
// (CreateMultipartUpload without ChecksumAlgorithm): the copy had none, so every re-sync copied
// the SSE-KMS objects that go in parts again (`copied_without_checksum`) and a verification
// read them through envclone. Now the upload asks for CRC64NVME (FULL_OBJECT), the parts'
// checksums are given back to CompleteMultipartUpload, and the copy's checksum is the source's.
#[tokio::test(start_paused = true)]
async fn sse_kms_objects_copied_in_parts_are_compared_by_checksum() {
    let (fake, store) = encrypted_buckets();
    // Above the sync's multipart threshold (64 KiB here): copied in 5 MiB parts (AWS's least).
    let single: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    fake.put_object(SRC, "big/single.bin", &single, kms_head(KEY_A), &[]);
    // Multipart sources: the run's first goes in parts, then by CopyObject (neither keeps an
    // SSE-KMS ETag), the second in parts.
    let big: Vec<u8> = (0..5 * 1024u32).map(|i| (i % 251) as u8).collect();
    for key in ["big/parts-1.bin", "big/parts-2.bin"] {
        fake.put_multipart_object(SRC, key, &big, &[2048, 2048, 1024], kms_head(KEY_B));
    }
    let first = sync(&store, SseMode::Keep).await.unwrap();
    assert_eq!(first.copied, 38, "{first:?}");
    for key in ["big/single.bin", "big/parts-2.bin"] {
        let (s, d) = (
            fake.object(SRC, key).unwrap(),
            fake.object(DST, key).unwrap(),
        );
        assert!(!d.parts.is_empty(), "{key}: copied in parts");
        assert_ne!(
            s.etag, d.etag,
            "the model: an SSE-KMS copy has another ETag"
        );
        let c = d.head.checksum.expect("the upload asked for a checksum");
        assert_eq!((c.algorithm.as_str(), c.full_object), ("CRC64NVME", true));
        assert_eq!(Some(c), s.head.checksum, "{key}: the full-object CRC64NVME");
        assert_eq!(d.head.encryption, s.head.encryption, "{key}");
    }
    let before = copy_calls(&fake);
    let second = sync(&store, SseMode::Keep).await.unwrap();
    assert_eq!(
        (
            second.copied,
            second.copied_without_checksum,
            second.unchanged_by_checksum
        ),
        (0, 0, 38),
        "{second:?}"
    );
    assert_eq!(copy_calls(&fake), before, "nothing copied on the re-sync");
    verifies_equal(&store, 38, 0).await;
}

// The fake's model of checksums on multipart uploads, which the test above relies on
// (CreateMultipartUpload ChecksumAlgorithm/ChecksumType, UploadPartCopy CopyPartResult,
// CompleteMultipartUpload CompletedPart; "Checking object integrity").
#[tokio::test(start_paused = true)]
async fn the_fake_models_part_checksums_as_s3_does() {
    use envclone::fake::checksum_of;
    use envclone::ports::CopiedPart;
    let (fake, store) = encrypted_buckets();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 241) as u8).collect();
    fake.put_object(SRC, "raw.bin", &data, kms_head(KEY_A), &[]);
    let asking = |algorithm: &str, full_object: bool| ObjectHead {
        checksum: Some(ObjectChecksum {
            algorithm: algorithm.into(),
            value: String::new(),
            full_object,
        }),
        ..Default::default()
    };
    let create = |head: ObjectHead| {
        let store = store.clone();
        async move {
            store
                .create_multipart(DST, "k", &head, &Default::default())
                .await
        }
    };
    let parts = |upload: String| {
        let store = store.clone();
        async move {
            let mut out = Vec::new();
            for (n, (first, last)) in [(0, 1999), (2000, 2999)].into_iter().enumerate() {
                let part = store
                    .upload_part_copy(SRC, "raw.bin", DST, "k", &upload, n as u32 + 1, first, last)
                    .await
                    .unwrap();
                out.push(part);
            }
            (upload, out)
        }
    };
    let refused = |e: envclone::ports::PortError| e.to_string();

    // Without an algorithm: no part checksums, and no object checksum.
    let (id, got) = parts(create(ObjectHead::default()).await.unwrap()).await;
    assert!(got.iter().all(|p| p.checksum.is_none()), "{got:?}");
    store.complete_multipart(DST, "k", &id, &got).await.unwrap();
    assert_eq!(fake.object(DST, "k").unwrap().head.checksum, None);

    // CRC64NVME is FULL_OBJECT only.
    let e = create(asking("CRC64NVME", false)).await.unwrap_err();
    assert!(refused(e).contains("InvalidRequest"));

    // With CRC64NVME: each part's checksum comes back and must be given back.
    let (id, got) = parts(create(asking("CRC64NVME", true)).await.unwrap()).await;
    assert_eq!(
        got[0].checksum,
        Some((
            "CRC64NVME".to_string(),
            checksum_of("CRC64NVME", &data[..2000])
        ))
    );
    let missing: Vec<CopiedPart> = got
        .iter()
        .map(|p| CopiedPart {
            checksum: None,
            ..p.clone()
        })
        .collect();
    let e = store
        .complete_multipart(DST, "k", &id, &missing)
        .await
        .unwrap_err();
    assert!(refused(e).contains("InvalidPart"));
    let (id, got) = parts(create(asking("CRC64NVME", true)).await.unwrap()).await;
    let mut wrong = got.clone();
    wrong[1].checksum = got[0].checksum.clone();
    let e = store
        .complete_multipart(DST, "k", &id, &wrong)
        .await
        .unwrap_err();
    assert!(refused(e).contains("BadDigest"));
    let (id, got) = parts(create(asking("CRC64NVME", true)).await.unwrap()).await;
    store.complete_multipart(DST, "k", &id, &got).await.unwrap();
    let c = fake.object(DST, "k").unwrap().head.checksum.unwrap();
    assert_eq!(
        (c.value, c.full_object),
        (checksum_of("CRC64NVME", &data), true),
        "the whole content's"
    );
    assert_eq!(
        fake.object(SRC, "raw.bin")
            .unwrap()
            .head
            .checksum
            .unwrap()
            .value,
        checksum_of("CRC64NVME", &data),
        "equal to the single-part object's"
    );

    // CRC32 COMPOSITE: the checksum of the parts' checksums, `-2`; not the content's.
    let (id, got) = parts(create(asking("CRC32", false)).await.unwrap()).await;
    store.complete_multipart(DST, "k", &id, &got).await.unwrap();
    let c = fake.object(DST, "k").unwrap().head.checksum.unwrap();
    assert!(c.value.ends_with("-2") && !c.full_object, "{c:?}");
    assert_ne!(c.value.trim_end_matches("-2"), checksum_of("CRC32", &data));
}

// What the engine cannot compare, it says: a multipart source whose checksum is COMPOSITE
// (CRC32 here, `<value>-<parts>`) is not comparable with a copy's full-object CRC64NVME, so
// the copy made in parts is copied again on each re-sync and counted as such.
#[tokio::test(start_paused = true)]
async fn a_composite_checksum_source_copied_in_parts_is_copied_again_and_counted() {
    let (fake, store) = encrypted_buckets();
    let big: Vec<u8> = (0..5 * 1024u32).map(|i| (i % 251) as u8).collect();
    // The first multipart object of a run pilots (parts, then CopyObject, which carries the
    // source's checksum); the second goes in parts only.
    for key in ["big/a.bin", "big/b.bin"] {
        let mut head = kms_head(KEY_B);
        head.checksum = Some(ObjectChecksum {
            algorithm: "CRC32".into(),
            value: "AAAAAA==-3".into(),
            full_object: false,
        });
        fake.put_multipart_object(SRC, key, &big, &[2048, 2048, 1024], head);
    }
    sync(&store, SseMode::Keep).await.unwrap();
    let again = sync(&store, SseMode::Keep).await.unwrap();
    assert_eq!(
        (again.copied, again.copied_without_checksum, again.unchanged),
        (1, 1, 36),
        "{again:?}"
    );
}
