//! ListObjectsV2 pages read straight from the response's XML into the port's `ObjectSummary`s.
//!
//! Why: in a no-op sync (the whole work is listing both buckets) the SDK's generic XML decoding
//! of the pages was about 60% of envclone's CPU (`perf`), and it sits between a range's page
//! and the range's next request, which needs that page's continuation token: CPU added there
//! added as much wall time (BENCHMARKS.md, run 14). This parse reads only the fields the
//! engine uses, with `quick-xml`, and builds no SDK objects.
//!
//! How: `FastListing`, an interceptor on each ListObjectsV2 call, puts `ListingDeserializer`
//! in the call's configuration in place of the SDK's response deserializer. For a successful
//! answer whose XML it reads whole, it leaves the page in the call's slot and gives the SDK an
//! empty output; anything else — an error status, another document, an entity or a character
//! it does not take, a field it cannot read — goes to the SDK's own deserializer unchanged, so
//! errors and the unusual stay the SDK's. Tests compare both parses on the same documents.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::operation::list_objects_v2::{ListObjectsV2, ListObjectsV2Output};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, Error, Output,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin;
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use aws_smithy_types::config_bag::{ConfigBag, FrozenLayer};
use quick_xml::events::Event;

use crate::ports::{ListPage, ObjectSummary};

/// Where one call's page is left by the deserializer.
pub(super) type PageSlot = Arc<Mutex<Option<ListPage>>>;

/// Installs `ListingDeserializer` for one ListObjectsV2 call (`customize().interceptor`).
#[derive(Debug, Default)]
pub(super) struct FastListing {
    slot: PageSlot,
}

impl FastListing {
    pub(super) fn slot(&self) -> PageSlot {
        self.slot.clone()
    }
}

impl Intercept for FastListing {
    fn name(&self) -> &'static str {
        "FastListing"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let sdk = sdk_listing_config()
            .ok_or("the SDK's ListObjectsV2 has no response deserializer to stand in front of")?;
        let ours = ListingDeserializer {
            sdk,
            slot: self.slot.clone(),
        };
        cfg.interceptor_state()
            .store_put(SharedResponseDeserializer::new(ours));
        Ok(())
    }
}

/// The SDK's ListObjectsV2 configuration, which holds its response deserializer (for the
/// answers left to it; the call's bag is about to hold ours). Built once, not per page.
fn sdk_listing_config() -> Option<FrozenLayer> {
    static CONFIG: std::sync::OnceLock<Option<FrozenLayer>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            ListObjectsV2::new()
                .config()
                .filter(|layer| layer.load::<SharedResponseDeserializer>().is_some())
        })
        .clone()
}

#[derive(Debug)]
struct ListingDeserializer {
    /// The SDK operation's configuration, which holds its response deserializer.
    sdk: FrozenLayer,
    slot: PageSlot,
}

impl DeserializeResponse for ListingDeserializer {
    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<Error>> {
        // An attempt's page, never an earlier attempt's.
        let mut slot = self.slot.lock().expect("listing slot lock");
        *slot = None;
        if response.status().is_success() {
            if let Some(page) = response.body().bytes().and_then(parse_page) {
                *slot = Some(page);
                return Ok(Output::erase(ListObjectsV2Output::builder().build()));
            }
        }
        drop(slot);
        self.sdk
            .load::<SharedResponseDeserializer>()
            .expect("checked when installed")
            .deserialize_nonstreaming_with_config(response, cfg)
    }
}

/// The elements this parse tells apart.
#[derive(Clone, Copy, PartialEq)]
enum Element {
    ListBucketResult,
    IsTruncated,
    NextContinuationToken,
    Contents,
    Key,
    Size,
    ETag,
    StorageClass,
    ChecksumAlgorithm,
    RestoreStatus,
    IsRestoreInProgress,
    LastModified,
    /// Anything else: read past.
    Other,
}

impl Element {
    fn of(local_name: &str) -> Element {
        match local_name {
            "ListBucketResult" => Element::ListBucketResult,
            "IsTruncated" => Element::IsTruncated,
            "NextContinuationToken" => Element::NextContinuationToken,
            "Contents" => Element::Contents,
            "Key" => Element::Key,
            "Size" => Element::Size,
            "ETag" => Element::ETag,
            "StorageClass" => Element::StorageClass,
            "ChecksumAlgorithm" => Element::ChecksumAlgorithm,
            "RestoreStatus" => Element::RestoreStatus,
            "IsRestoreInProgress" => Element::IsRestoreInProgress,
            "LastModified" => Element::LastModified,
            _ => Element::Other,
        }
    }
}

/// The field a text fills, by where its element is.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    IsTruncated,
    NextToken,
    Key,
    Size,
    ETag,
    StorageClass,
    ChecksumAlgorithm,
    RestoreInProgress,
    LastModified,
    None,
}

fn field_of(open: &[Element]) -> Field {
    use Element::*;
    match open {
        [ListBucketResult, IsTruncated] => Field::IsTruncated,
        [ListBucketResult, NextContinuationToken] => Field::NextToken,
        [ListBucketResult, Contents, Key] => Field::Key,
        [ListBucketResult, Contents, Size] => Field::Size,
        [ListBucketResult, Contents, ETag] => Field::ETag,
        [ListBucketResult, Contents, StorageClass] => Field::StorageClass,
        [ListBucketResult, Contents, ChecksumAlgorithm] => Field::ChecksumAlgorithm,
        [ListBucketResult, Contents, LastModified] => Field::LastModified,
        [ListBucketResult, Contents, RestoreStatus, IsRestoreInProgress] => {
            Field::RestoreInProgress
        }
        _ => Field::None,
    }
}

/// The page in a ListBucketResult document, or None where the SDK should read it (see the
/// module doc). The fields and their defaults are those the adapter reads from the SDK's
/// output: a missing Size is 0, an ETag loses its quotes, STANDARD is no storage class, the
/// first checksum algorithm is kept, an object is restored when its restore is not in
/// progress, and the continuation token counts only on a truncated page.
pub(super) fn parse_page(body: &[u8]) -> Option<ListPage> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    // The open elements, the root first.
    let mut open: Vec<Element> = Vec::with_capacity(8);
    let mut text = String::new();
    let mut object: Option<ObjectSummary> = None;
    let mut key_seen = false;
    let mut objects = Vec::new();
    let (mut truncated, mut token) = (None, None);
    loop {
        let (element, closes) = match reader.read_event().ok()? {
            Event::Start(e) => (Some(Element::of(e.local_name().into_inner())), false),
            Event::Empty(e) => (Some(Element::of(e.local_name().into_inner())), true),
            Event::End(_) => (None, true),
            Event::Text(t) => {
                if field_of(&open) != Field::None {
                    // Raw line ends are normalized by XML parsers, and not all alike: left
                    // to the SDK.
                    if t.contains('\r') {
                        return None;
                    }
                    text.push_str(&t);
                }
                continue;
            }
            // S3 writes none; the SDK's parse reads a CDATA key as empty (a test shows it).
            Event::CData(_) => return None,
            Event::GeneralRef(r) => {
                if field_of(&open) != Field::None {
                    match r.resolve_char_ref().ok()? {
                        Some(c) => text.push(c),
                        None => text.push_str(quick_xml::escape::resolve_predefined_entity(&r)?),
                    }
                }
                continue;
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => continue,
            Event::DocType(_) => return None,
            Event::Eof => break,
        };
        if let Some(element) = element {
            if open.is_empty() && element != Element::ListBucketResult {
                return None;
            }
            open.push(element);
            text.clear();
            if open == [Element::ListBucketResult, Element::Contents] {
                object = Some(ObjectSummary {
                    key: String::new(),
                    size: 0,
                    etag: String::new(),
                    storage_class: None,
                    restored: false,
                    checksum_algorithm: None,
                    version_id: None,
                    last_modified: None,
                });
                key_seen = false;
            }
        }
        if !closes {
            continue;
        }
        let value = std::mem::take(&mut text);
        match (field_of(&open), object.as_mut()) {
            (Field::IsTruncated, _) => truncated = Some(parse_bool(&value)?),
            (Field::NextToken, _) => token = Some(value),
            (Field::Key, Some(o)) => {
                o.key = value;
                key_seen = true;
            }
            (Field::Size, Some(o)) => o.size = value.parse::<i64>().ok()?.max(0) as u64,
            (Field::ETag, Some(o)) => o.etag = value.trim_matches('"').to_string(),
            (Field::StorageClass, Some(o)) => {
                o.storage_class = Some(value).filter(|c| c != "STANDARD");
            }
            (Field::ChecksumAlgorithm, Some(o)) => {
                o.checksum_algorithm.get_or_insert(value);
            }
            (Field::RestoreInProgress, Some(o)) => o.restored = !parse_bool(&value)?,
            // As the SDK's ListObjectsV2 decoder reads it (RFC 3339, offsets allowed). One it
            // cannot read is no reason to fail the listing, which never needed it before: the
            // object then has no LastModified (`written_since_copied` is false).
            (Field::LastModified, Some(o)) => {
                o.last_modified = aws_smithy_types::DateTime::from_str(
                    &value,
                    aws_smithy_types::date_time::Format::DateTimeWithOffset,
                )
                .ok()
                .and_then(|t| super::sdk_time(&t));
            }
            (Field::None, _) => {
                if open == [Element::ListBucketResult, Element::Contents] {
                    // An object without a key is not one the engine can act on: the SDK's.
                    if !key_seen {
                        return None;
                    }
                    objects.extend(object.take());
                }
            }
            (_, None) => return None,
        }
        open.pop();
    }
    if !open.is_empty() {
        return None;
    }
    Some(ListPage {
        objects,
        next_token: token.filter(|_| truncated == Some(true)),
    })
}

/// The SDK reads a boolean as exactly `true` or `false`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::from(body.to_string()),
        )
    }

    /// The page as the SDK's own deserializer reads `body`, through the adapter's `page_of`.
    fn sdk_page(body: &str) -> Result<ListPage, String> {
        let layer = sdk_listing_config().expect("operation config");
        let output = layer
            .load::<SharedResponseDeserializer>()
            .expect("deserializer")
            .deserialize_nonstreaming_with_config(&response(200, body), &ConfigBag::base())
            .map_err(|e| format!("{e:?}"))?;
        let output = output
            .downcast::<ListObjectsV2Output>()
            .expect("ListObjectsV2Output");
        Ok(super::super::page_of(&output))
    }

    fn page(contents: &str, tail: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix></Prefix>\
             <KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>{contents}{tail}</ListBucketResult>"
        )
    }

    const OBJECTS: &str = "\
        <Contents><Key>data/a&amp;b &lt;c&gt; &#34;q&#34; &#x1F600; ключ</Key>\
          <LastModified>2026-12-02T09:19:31.000Z</LastModified>\
          <ETag>&quot;e9ba5dbd612608e905ea43334fda7423-4&quot;</ETag>\
          <ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumAlgorithm>SHA256</ChecksumAlgorithm>\
          <ChecksumType>COMPOSITE</ChecksumType><Size>20971520</Size>\
          <Owner><ID>abc</ID><DisplayName>me</DisplayName></Owner>\
          <StorageClass>STANDARD</StorageClass></Contents>\n  \
        <Contents><Key>  spaced key  </Key><ETag>\"0123\"</ETag><Size>0</Size>\
          <StorageClass>GLACIER</StorageClass>\
          <RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress>\
          <RestoreExpiryDate>2026-12-09T00:00:00.000Z</RestoreExpiryDate></RestoreStatus>\
        </Contents>\
        <Contents><Key>x&apos;y</Key><ETag>&#x22;x&#x22;</ETag>\
          <StorageClass>SOME_FUTURE_CLASS</StorageClass>\
          <RestoreStatus><IsRestoreInProgress>true</IsRestoreInProgress></RestoreStatus>\
        </Contents>\
        <Contents><Key></Key><Size>7</Size><ETag/></Contents>";

    #[test]
    fn pages_read_as_the_sdk_reads_them() {
        let tails = [
            "<IsTruncated>true</IsTruncated><NextContinuationToken>tok&amp;1</NextContinuationToken>",
            // A token on a page that is not truncated is no token (as the adapter reads the SDK).
            "<IsTruncated>false</IsTruncated><NextContinuationToken>tok</NextContinuationToken>",
            "<IsTruncated>false</IsTruncated>",
            "<CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes><IsTruncated>true</IsTruncated>\
             <NextContinuationToken>t</NextContinuationToken><StartAfter>a</StartAfter>",
        ];
        for contents in [OBJECTS, ""] {
            for tail in tails {
                let doc = page(contents, tail);
                let ours = parse_page(doc.as_bytes()).expect("read by the fast parse");
                assert_eq!(Ok(ours), sdk_page(&doc), "{doc}");
            }
        }
        let ours = parse_page(page(OBJECTS, tails[0]).as_bytes()).expect("parsed");
        let keys: Vec<&str> = ours.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "data/a&b <c> \"q\" \u{1F600} ключ",
                "  spaced key  ",
                "x'y",
                ""
            ]
        );
        assert_eq!(ours.objects[0].etag, "e9ba5dbd612608e905ea43334fda7423-4");
        assert_eq!(ours.objects[0].checksum_algorithm.as_deref(), Some("CRC32"));
        assert_eq!(ours.objects[0].storage_class, None);
        assert!(ours.objects[1].restored && !ours.objects[2].restored);
        assert_eq!(ours.next_token.as_deref(), Some("tok&1"));
    }

    #[test]
    fn what_the_fast_parse_does_not_take_is_left_to_the_sdk() {
        let tail = "<IsTruncated>false</IsTruncated>";
        let left = [
            // A raw carriage return: line-end normalization differs between parsers.
            page("<Contents><Key>a\r\nb</Key><Size>1</Size></Contents>", tail),
            // An entity XML does not predefine.
            page(
                "<Contents><Key>a&nbsp;b</Key><Size>1</Size></Contents>",
                tail,
            ),
            // An object without a key, a size that is no number, a boolean that is none.
            page("<Contents><Size>1</Size></Contents>", tail),
            page("<Contents><Key>a</Key><Size>1.5</Size></Contents>", tail),
            page("", "<IsTruncated>TRUE</IsTruncated>"),
            // A CDATA section (the SDK reads it as empty).
            page(
                "<Contents><Key><![CDATA[a<b]]></Key><Size>1</Size></Contents>",
                tail,
            ),
            // Not a listing, a document type, a broken document.
            "<Error><Code>NoSuchBucket</Code><Message>m</Message></Error>".to_string(),
            "<!DOCTYPE x [<!ENTITY e \"v\">]><ListBucketResult></ListBucketResult>".to_string(),
            "<ListBucketResult><Contents><Key>a</Size></Contents></ListBucketResult>".to_string(),
            "<ListBucketResult><Contents><Key>a</Key>".to_string(),
        ];
        for doc in &left {
            assert_eq!(parse_page(doc.as_bytes()), None, "{doc}");
        }
        // Through the deserializer: the SDK's answer, and no page in the slot.
        let deserializer = ListingDeserializer {
            sdk: sdk_listing_config().expect("config"),
            slot: PageSlot::default(),
        };
        *deserializer.slot.lock().unwrap() = Some(ListPage::default());
        let output = deserializer
            .deserialize_nonstreaming_with_config(&response(200, &left[0]), &ConfigBag::base())
            .expect("the SDK reads it");
        let output = output.downcast::<ListObjectsV2Output>().expect("output");
        assert_eq!(Ok(super::super::page_of(&output)), sdk_page(&left[0]));
        assert_eq!(*deserializer.slot.lock().unwrap(), None);
        // An error status is the SDK's error, with its code.
        let error = deserializer
            .deserialize_nonstreaming_with_config(
                &response(
                    404,
                    "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>",
                ),
                &ConfigBag::base(),
            )
            .expect_err("an error");
        assert!(format!("{error:?}").contains("NoSuchBucket"), "{error:?}");
        // A page it reads goes to the slot, and the SDK is given an empty output.
        let doc = page(OBJECTS, tail);
        let output = deserializer
            .deserialize_nonstreaming_with_config(&response(200, &doc), &ConfigBag::base())
            .expect("read");
        let output = output.downcast::<ListObjectsV2Output>().expect("output");
        assert!(output.contents().is_empty());
        assert_eq!(
            deserializer.slot.lock().unwrap().take(),
            parse_page(doc.as_bytes())
        );
    }
}
