//! References to what a run makes outside its clone stack (a snapshot, a bucket it creates, a
//! staged template): the kind of thing and its identifier, plus a note (why it was left, how it
//! came to be). The failure report, the run records and the removal lists of abort, destroy
//! and migrate carry them; they serialize as the text they always had
//! (`"DB snapshot envclone-…"`), so records written before read back unchanged.
//!
//! The lowest layer of the workflow: it knows no resource kind (each kind declares the nouns
//! of what it makes, `ResourceKind::ref_kinds`; the registry of kinds, `resources`, answers
//! which kind made a reference), so every module may name what a run made.

use std::borrow::Cow;
use std::fmt;

/// What a reference names: `bucket`, `DB snapshot`, `stack`. A kind declares the nouns of what
/// it makes (`ResourceKind::ref_kinds`); a CloudFormation resource type is one too (what a
/// stack's DeletionPolicy kept).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefKind(Cow<'static, str>);

impl RefKind {
    pub const fn new(noun: &'static str) -> Self {
        RefKind(Cow::Borrowed(noun))
    }
    pub fn resource_type(resource_type: &str) -> Self {
        RefKind(Cow::Owned(resource_type.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The clone stack a run creates.
pub const STACK: RefKind = RefKind::new("stack");
/// A template a run put in S3 for CreateStack (`s3://bucket/key`).
pub const STAGED_TEMPLATE: RefKind = RefKind::new("staged template");
/// An S3 Batch Operations job a run created (its job id): abort cancels a running one.
pub const BATCH_JOB: RefKind = RefKind::new("batch job");

/// Something a run made (or found), by kind and identifier; `note` says why it is listed
/// (left: why it was not removed; removed: how it came to be).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceRef {
    pub kind: RefKind,
    pub id: String,
    pub note: Option<String>,
}

impl ResourceRef {
    pub fn new(kind: RefKind, id: impl Into<String>) -> Self {
        ResourceRef {
            kind,
            id: id.into(),
            note: None,
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// The same resource (kind and identifier), whatever the notes.
    pub fn same(&self, other: &ResourceRef) -> bool {
        self.kind == other.kind && self.id == other.id
    }

    /// Reads the text form back (`KIND ID` or `KIND ID (NOTE)`) without knowing the kinds
    /// (this module is below them): the engine's own nouns ([`STACK`], [`STAGED_TEMPLATE`],
    /// [`BATCH_JOB`]) by prefix; a CloudFormation type (what a stack's DeletionPolicy kept,
    /// `AWS::S3::Bucket Logs exp-a-logs`) is the first word; any other kind's noun is every
    /// word before the identifier, its last word. A kind's identifiers hold no space (S3
    /// bucket names, RDS snapshot identifiers and DynamoDB table names cannot: S3 User Guide
    /// "Bucket naming rules", RDS API Reference CreateDBSnapshot `DBSnapshotIdentifier`,
    /// DynamoDB Developer Guide "Naming rules"); `resources`'s unit test reads every kind's
    /// noun back this way.
    pub fn parse(text: &str) -> Self {
        // The note is the parenthesised tail; identifiers hold no " (".
        let (head, note) = match text.split_once(" (") {
            Some((head, note)) if note.ends_with(')') => {
                (head, Some(note[..note.len() - 1].to_string()))
            }
            _ => (text, None),
        };
        let engine_noun = [STACK, STAGED_TEMPLATE, BATCH_JOB].into_iter().find(|k| {
            head.strip_prefix(k.as_str())
                .is_some_and(|rest| rest.starts_with(' '))
        });
        let first = head.split(' ').next().unwrap_or_default();
        let (kind, id) = match engine_noun {
            Some(kind) => {
                let id = head[kind.as_str().len()..].trim_start();
                (kind, id)
            }
            None if first.contains("::") => (
                RefKind::resource_type(first),
                head[first.len()..].trim_start(),
            ),
            None => match head.rsplit_once(' ') {
                Some((noun, id)) => (RefKind(Cow::Owned(noun.to_string())), id),
                None => (RefKind::resource_type(head), ""),
            },
        };
        ResourceRef {
            kind,
            id: id.to_string(),
            note,
        }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.id)?;
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// Compares the text form (tests and messages compare with what the report prints).
impl PartialEq<str> for ResourceRef {
    fn eq(&self, other: &str) -> bool {
        other == self.to_string().as_str()
    }
}

impl PartialEq<&str> for ResourceRef {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl serde::Serialize for ResourceRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ResourceRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(d)?;
        Ok(ResourceRef::parse(&text))
    }
}

/// `a, b, c` (or with another separator): a list of references for a message.
pub fn join(refs: &[ResourceRef], separator: &str) -> String {
    refs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_back_as_written() {
        for text in [
            "bucket staging-test-uploads",
            "DB snapshot envclone-20261121231500-00af-prod-db",
            "DB cluster snapshot envclone-20261121231500-00af-prod-aurora",
            "stack exp-a (not tagged envclone:run=20261121231500-00af; not deleted)",
            "staged template s3://envclone-tpl-1/t.yaml",
            "AWS::S3::Bucket Logs exp-a-logs (kept by its DeletionPolicy Retain when stack exp-a \
             was deleted; delete it yourself if it is not needed)",
        ] {
            let r = ResourceRef::parse(text);
            assert_eq!(r.to_string(), text);
            let json = serde_json::to_value(&r).unwrap();
            assert_eq!(json, serde_json::Value::String(text.to_string()));
            assert_eq!(serde_json::from_value::<ResourceRef>(json).unwrap(), r);
        }
        let r = ResourceRef::parse("DB cluster snapshot x (in progress)");
        assert_eq!(r.kind.as_str(), "DB cluster snapshot");
        assert_eq!(r.id, "x");
        assert_eq!(r.note.as_deref(), Some("in progress"));
        let r = ResourceRef::parse("AWS::S3::Bucket Logs exp-a-logs (kept)");
        assert_eq!(r.kind, RefKind::resource_type("AWS::S3::Bucket"));
        assert_eq!(r.id, "Logs exp-a-logs");
    }
}
