//! The fake S3's synthetic bulks (`FakeAws::put_synthetic`): millions of objects whose key,
//! size, ETag, version id and LastModified are derived from their index instead of stored, and
//! the copies of them into another bucket, kept as one bit and one time per object. A bucket
//! holds its bulks in `Slot`s beside its stored objects; `fake.rs` merges both into every
//! listing and lookup, and turns a bulk object into a stored one (`FakeBucket::materialize`)
//! before anything changes it, so a key is always either stored or in one slot, never both.

use std::ops::Bound;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{FakeObject, Synthetic};

/// `count` objects put at once: key `<prefix><index, 10 digits>`, sizes spread around
/// `total_bytes / count` (half to one and a half times it, in pairs that add up to twice it,
/// so the sizes sum to `total_bytes` exactly), an MD5-like ETag of the index.
#[derive(Debug)]
pub(super) struct BulkSpec {
    /// Unique per bulk: ETags differ between bulks.
    pub id: u64,
    pub prefix: String,
    pub count: u64,
    pub total_bytes: u64,
}

/// A cheap, well-spread 64-bit mix (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl BulkSpec {
    pub fn key(&self, i: u64) -> String {
        format!("{}{i:010}", self.prefix)
    }

    /// The index of `key` in this bulk, if it is one of its keys.
    pub fn index_of(&self, key: &str) -> Option<u64> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest.parse().ok().filter(|i| *i < self.count)
    }

    /// The first index whose key lies past `bound` (keys grow with their index).
    pub fn first_index_past(&self, bound: Bound<&str>) -> u64 {
        let past = |i: u64| match bound {
            Bound::Unbounded => true,
            Bound::Included(b) => self.key(i).as_str() >= b,
            Bound::Excluded(b) => self.key(i).as_str() > b,
        };
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if past(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    pub fn size(&self, i: u64) -> u64 {
        let average = self.total_bytes / self.count.max(1);
        let remainder = self.total_bytes % self.count.max(1);
        let extra = u64::from(i < remainder);
        let pairs = self.count / 2;
        if i >= pairs * 2 {
            return average + extra; // the odd one out
        }
        let spread = if average >= 2 {
            mix(self.id ^ (i / 2).wrapping_mul(0x2545_F491_4F6C_DD1D)) % (average / 2)
        } else {
            0
        };
        if i.is_multiple_of(2) {
            average + spread + extra
        } else {
            average - spread + extra
        }
    }

    /// The MD5 the object's bytes would have (32 hex digits).
    pub fn digest(&self, i: u64) -> String {
        let a = mix(self.id.wrapping_mul(0x1000_0000_01B3) ^ i);
        let b = mix(a ^ 0x5851_F42D_4C95_7F2D);
        format!("{a:016x}{b:016x}")
    }
}

/// One bulk as a bucket holds it: which of its keys are current here, and how they were
/// written. Every object of a slot shares `template`'s metadata, tags and encryption.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub spec: Arc<BulkSpec>,
    present: Vec<u64>,
    live: u64,
    /// Makes this slot's version ids unique in the bucket.
    salt: u64,
    /// Written while versioning was enabled: each object has a version id (else `null`).
    pub versioned: bool,
    /// What each object has besides its size, ETag, checksum value and LastModified.
    pub template: FakeObject,
    /// LastModified of every object (`put_synthetic`), or the base of `offsets_ms` (copies).
    base: DateTime<Utc>,
    /// Copies: each object's LastModified, in milliseconds after `base`.
    offsets_ms: Option<Vec<u32>>,
}

impl Slot {
    /// Every object of `spec` current, written at `at` (`put_synthetic`).
    pub fn full(
        spec: Arc<BulkSpec>,
        salt: u64,
        versioned: bool,
        template: FakeObject,
        at: DateTime<Utc>,
    ) -> Self {
        let words = spec.count.div_ceil(64) as usize;
        let mut present = vec![u64::MAX; words];
        if !spec.count.is_multiple_of(64) {
            present[words - 1] = (1u64 << (spec.count % 64)) - 1;
        }
        Slot {
            live: spec.count,
            spec,
            present,
            salt,
            versioned,
            template,
            base: at,
            offsets_ms: None,
        }
    }

    /// None of `spec`'s objects yet: copies of them arrive one by one (`set`).
    pub fn empty(
        spec: Arc<BulkSpec>,
        salt: u64,
        versioned: bool,
        template: FakeObject,
        base: DateTime<Utc>,
    ) -> Self {
        let count = spec.count as usize;
        Slot {
            present: vec![0; count.div_ceil(64)],
            live: 0,
            spec,
            salt,
            versioned,
            template,
            base,
            offsets_ms: Some(vec![0; count]),
        }
    }

    pub fn has(&self, i: u64) -> bool {
        i < self.spec.count && self.present[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Object `i`'s key is current here (a copy slot: written at `at`).
    pub fn set(&mut self, i: u64, at: DateTime<Utc>) {
        if let Some(offsets) = &mut self.offsets_ms {
            let ms = (at - self.base).num_milliseconds();
            offsets[i as usize] = u32::try_from(ms).unwrap_or_else(|_| {
                panic!(
                    "synthetic bulk {}: a copy written {ms} ms after its slot was made does \
                     not fit the slot's 32-bit times (at most ~49 days); start a new fake",
                    self.spec.prefix
                )
            });
        }
        if !self.has(i) {
            self.present[(i / 64) as usize] |= 1 << (i % 64);
            self.live += 1;
        }
    }

    pub fn clear(&mut self, i: u64) {
        if self.has(i) {
            self.present[(i / 64) as usize] &= !(1 << (i % 64));
            self.live -= 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn version_id(&self, i: u64) -> String {
        if self.versioned {
            format!("{:016x}.s{}.{i}", mix(self.salt ^ mix(i)), self.salt)
        } else {
            "null".into()
        }
    }

    pub fn last_modified(&self, i: u64) -> DateTime<Utc> {
        match &self.offsets_ms {
            None => self.base,
            Some(offsets) => self.base + chrono::Duration::milliseconds(offsets[i as usize].into()),
        }
    }

    /// Object `i` as a stored object would be (no bytes: `synthetic` says its size and MD5).
    pub fn object(&self, i: u64) -> FakeObject {
        let spec = &self.spec;
        let (size, digest) = (spec.size(i), spec.digest(i));
        let mut o = self.template.clone();
        if let Some(c) = &mut o.head.checksum {
            // As a copy computes it (`FakeObject::checksum_input`).
            c.value = super::checksum_of(&c.algorithm, digest.as_bytes());
        }
        o.etag = digest.clone();
        o.head.size = size;
        o.head.etag = digest.clone();
        o.last_modified = self.last_modified(i);
        o.synthetic = Some(Synthetic {
            size,
            digest,
            bulk: self.spec.clone(),
            index: i,
        });
        o
    }

    /// The indices of the present objects whose keys lie past `bound` and start with `prefix`,
    /// in key order, at most `max` of them.
    pub fn indices_from(&self, bound: Bound<&str>, prefix: &str, max: usize) -> Vec<u64> {
        let bound = match bound {
            Bound::Unbounded => Bound::Included(prefix),
            Bound::Included(b) | Bound::Excluded(b) if b < prefix => Bound::Included(prefix),
            other => other,
        };
        let mut out = Vec::new();
        let mut i = self.spec.first_index_past(bound);
        while i < self.spec.count && out.len() < max {
            let word = self.present[(i / 64) as usize] >> (i % 64);
            if word == 0 {
                i = (i / 64 + 1) * 64;
                continue;
            }
            i += u64::from(word.trailing_zeros());
            if i >= self.spec.count {
                break;
            }
            if !self.spec.key(i).starts_with(prefix) {
                break;
            }
            out.push(i);
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! A bulk against the same objects stored: a twin fake whose bulk is materialized (every
    //! object stored, same sizes, ETags, version ids and times) and whose copies are stored is
    //! put through the same calls; every answer must be the same, version ids of copies
    //! compared by their order within their key (each fake makes its own).

    use std::collections::BTreeMap;

    use super::*;
    use crate::fake::{FakeAws, Timings};
    use crate::ports::*;

    const SRC: &str = "src";
    const DST: &str = "dst";
    const PLAIN: &str = "plain";
    /// More than a ListObjectsV2 or ListObjectVersions page.
    const N: u64 = 2_300;

    fn twin(compact: bool) -> FakeAws {
        let fake = FakeAws::new(Timings::default());
        for b in [SRC, DST, PLAIN] {
            fake.create_bucket_now(b);
        }
        fake.enable_versioning(SRC);
        fake.enable_versioning(DST);
        // Stored objects before, among and after the bulk's keys.
        for key in ["a.txt", "bulk/0000000007-between", "bulk/", "zz"] {
            fake.put_object(SRC, key, key.as_bytes(), ObjectHead::default(), &[]);
        }
        fake.put_synthetic(SRC, "bulk/", N, N * 500_000);
        if !compact {
            let mut s = fake.lock();
            s.store_synthetic_copies = true;
            let b = s.buckets.get_mut(SRC).unwrap();
            for key in b.current_keys() {
                b.materialize(&key);
            }
            assert!(b.slots.iter().all(Slot::is_empty));
        }
        fake
    }

    async fn listing(fake: &FakeAws, bucket: &str, prefix: &str) -> Vec<ObjectSummary> {
        let (mut out, mut token) = (Vec::new(), None);
        loop {
            let page = fake.list_page(bucket, prefix, token).await.unwrap();
            out.extend(page.objects);
            match page.next_token {
                Some(t) => token = Some(t),
                None => return out,
            }
        }
    }

    /// Every version, version ids replaced by their rank within their key (newest 0).
    async fn versions(fake: &FakeAws, bucket: &str) -> Vec<ObjectVersion> {
        let (mut out, mut marker) = (Vec::<ObjectVersion>::new(), None);
        loop {
            let page = fake.list_versions_page(bucket, marker).await.unwrap();
            out.extend(page.versions);
            match page.next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        let mut rank: BTreeMap<String, usize> = BTreeMap::new();
        for v in &mut out {
            if v.version_id != "null" {
                let r = rank.entry(v.key.clone()).or_default();
                v.version_id = format!("v{r}");
                *r += 1;
            }
        }
        out
    }

    /// Everything a clone and its verify read of a bucket.
    async fn state(fake: &FakeAws, bucket: &str) -> String {
        let mut out = format!("{:?}\n", listing(fake, bucket, "").await);
        out += &format!("{:?}\n", listing(fake, bucket, "bulk/00000001").await);
        // A whole page and a page sized as the sync engine sizes a range's last one.
        for max_keys in [crate::ports::PAGE_KEYS, 7] {
            let after = fake
                .list_page_after(bucket, "bulk/", Some("bulk/0000000999"), None, max_keys)
                .await
                .unwrap();
            out += &format!("{after:?}\n");
        }
        for key in fake.object_keys(bucket) {
            let head = fake.head_object(bucket, &key, None).await.unwrap();
            let tags = fake.object_tags(bucket, &key).await.unwrap();
            let md5 = fake.content_md5(bucket, &key).await.unwrap();
            out += &format!("{key} {head:?} {tags:?} {md5}\n");
        }
        out
    }

    async fn run(fake: &FakeAws, compact: bool) -> Vec<String> {
        let mut seen = vec![
            state(fake, SRC).await,
            format!("{:?}", versions(fake, SRC).await),
        ];
        // Copies into a versioned and an unversioned bucket, some by version id.
        let listed = fake.list_versions_page(SRC, None).await.unwrap().versions;
        let request = CopyRequest {
            checksum_algorithm: Some("CRC64NVME".into()),
            ..Default::default()
        };
        for (n, key) in fake.object_keys(SRC).into_iter().enumerate() {
            let version = listed
                .iter()
                .find(|v| v.key == key && v.is_latest)
                .map(|v| v.version_id.clone())
                .filter(|_| n % 2 == 0);
            for dst in [DST, PLAIN] {
                let v = version.as_deref();
                fake.copy_object_version(SRC, &key, v, dst, &key, &request)
                    .await
                    .unwrap();
            }
        }
        if compact {
            // The bulk's copies are kept compactly: only the stored objects' copies stored.
            let s = fake.lock();
            for dst in [DST, PLAIN] {
                let stored: Vec<&String> = s.buckets[dst].objects.keys().collect();
                assert_eq!(stored, ["a.txt", "bulk/", "bulk/0000000007-between", "zz"]);
                assert_eq!(s.buckets[dst].slots.len(), 1);
            }
        }
        // After the copies: an overwrite, a delete, a copy over a copy, deletes by version.
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        fake.put_object(SRC, "bulk/0000000003", b"new", ObjectHead::default(), &[]);
        fake.delete_object(SRC, "bulk/0000000004").await.unwrap();
        fake.delete_object(PLAIN, "bulk/0000000005").await.unwrap();
        fake.delete_objects(DST, &["bulk/0000000006".into()])
            .await
            .unwrap();
        let again = "bulk/0000000008";
        fake.copy_object_version(SRC, again, None, DST, again, &CopyRequest::default())
            .await
            .unwrap();
        let first = fake.list_versions_page(SRC, None).await.unwrap().versions;
        let oldest = first.iter().rfind(|v| v.key == "bulk/0000000003").unwrap();
        fake.delete_versions(SRC, std::slice::from_ref(oldest))
            .await
            .unwrap();
        let old = fake
            .head_object_version(SRC, "bulk/0000000004", Some(&oldest.version_id), None)
            .await;
        seen.push(format!("{old:?}"));
        for bucket in [SRC, DST, PLAIN] {
            seen.push(state(fake, bucket).await);
            seen.push(format!("{:?}", versions(fake, bucket).await));
        }
        // Emptied: every version deleted, the bucket deletes.
        for bucket in [SRC, DST, PLAIN] {
            loop {
                let page = fake.list_versions_page(bucket, None).await.unwrap();
                if page.versions.is_empty() {
                    break;
                }
                for chunk in page.versions.chunks(1000) {
                    fake.delete_versions(bucket, chunk).await.unwrap();
                }
            }
            seen.push(format!("{:?}", fake.delete_bucket(bucket).await));
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_bulk_answers_every_call_as_the_same_objects_stored_would() {
        let (bulk, stored) = (twin(true), twin(false));
        // Side by side on the paused clock: both see the same times.
        let (a, b) = tokio::join!(run(&bulk, true), run(&stored, false));
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a, b);
        }
        assert!(bulk.lock().buckets.is_empty());
    }

    #[test]
    fn sizes_spread_around_the_average_and_add_up_to_the_total() {
        for (count, total) in [(1, 10), (7, 7_000_001), (2_000, 1_000_000_000)] {
            let spec = BulkSpec {
                id: 3,
                prefix: "p/".into(),
                count,
                total_bytes: total,
            };
            let sizes: Vec<u64> = (0..count).map(|i| spec.size(i)).collect();
            assert_eq!(sizes.iter().sum::<u64>(), total);
            let average = total / count;
            assert!(sizes
                .iter()
                .all(|s| *s >= average / 2 && *s <= average * 3 / 2 + 1));
            assert!(sizes.iter().any(|s| *s != average) || count < 3);
        }
    }
}
