//! The DynamoDB adapter: `workflow::dynamodb::Tables` over `aws_sdk_dynamodb`, errors
//! classified by their code (ProvisionedThroughputExceededException and ThrottlingException
//! retryable, ResourceNotFoundException not found, ResourceInUseException on CreateTable
//! already exists). Every SDK call names its operation for the IAM policy (`iam.rs`).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types as sdk;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{port_error, CallRecord, HttpResponse, SdkError};
use crate::ports::{PortError, PortResult};
use crate::workflow::dynamodb::*;

pub struct DynamoDb(aws_sdk_dynamodb::Client);

impl DynamoDb {
    /// The adapter over a client of `config` that records its calls to `calls`.
    pub fn new(config: &SdkConfig, calls: &CallRecord) -> Self {
        DynamoDb(aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(config)
                .interceptor(calls.clone())
                .build(),
        ))
    }
}

/// DynamoDB's own codes ("Error handling with DynamoDB": the 400-class errors that are worth
/// another try are the throughput and throttling ones), then the codes common to AWS.
fn dynamo_error<E>(operation: &str, what: &str, err: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = err.code().unwrap_or_default().to_string();
    let message = err.message().unwrap_or_default().to_string();
    match code.as_str() {
        "ResourceNotFoundException" => PortError::NotFound {
            what: what.to_string(),
        },
        "ResourceInUseException" if operation == "dynamodb:CreateTable" => {
            PortError::AlreadyExists {
                what: what.to_string(),
            }
        }
        // A table busy CREATING or UPDATING (DeleteTable), too many table operations at once
        // (LimitExceededException: "up to 500 ... CREATING, UPDATING or DELETING state"), and
        // throughput: all pass.
        "ResourceInUseException"
        | "LimitExceededException"
        | "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "InternalServerError" => PortError::Transient {
            operation: operation.to_string(),
            message: format!("{code}: {message}"),
        },
        _ => port_error(operation, what, err),
    }
}

fn built<T>(operation: &str, r: Result<T, aws_sdk_dynamodb::error::BuildError>) -> PortResult<T> {
    r.map_err(|e| PortError::failed(operation, format!("request not built: {e}")))
}

fn to_sdk(v: &Value) -> sdk::AttributeValue {
    use aws_smithy_types::Blob;
    match v {
        Value::S(s) => sdk::AttributeValue::S(s.clone()),
        Value::N(n) => sdk::AttributeValue::N(n.clone()),
        Value::B(b) => sdk::AttributeValue::B(Blob::new(b.clone())),
        Value::Bool(b) => sdk::AttributeValue::Bool(*b),
        Value::Null => sdk::AttributeValue::Null(true),
        Value::L(l) => sdk::AttributeValue::L(l.iter().map(to_sdk).collect()),
        Value::M(m) => sdk::AttributeValue::M(to_sdk_item(m)),
        Value::Ss(v) => sdk::AttributeValue::Ss(v.clone()),
        Value::Ns(v) => sdk::AttributeValue::Ns(v.clone()),
        Value::Bs(v) => sdk::AttributeValue::Bs(v.iter().map(|b| Blob::new(b.clone())).collect()),
    }
}

fn to_sdk_item(item: &Item) -> HashMap<String, sdk::AttributeValue> {
    item.iter().map(|(k, v)| (k.clone(), to_sdk(v))).collect()
}

/// An SDK value as the port's; a type this SDK does not know yet is an error, not a loss.
fn from_sdk(v: &sdk::AttributeValue) -> PortResult<Value> {
    Ok(match v {
        sdk::AttributeValue::S(s) => Value::S(s.clone()),
        sdk::AttributeValue::N(n) => Value::N(n.clone()),
        sdk::AttributeValue::B(b) => Value::B(b.as_ref().to_vec()),
        sdk::AttributeValue::Bool(b) => Value::Bool(*b),
        sdk::AttributeValue::Null(_) => Value::Null,
        sdk::AttributeValue::L(l) => Value::L(l.iter().map(from_sdk).collect::<PortResult<_>>()?),
        sdk::AttributeValue::M(m) => Value::M(from_sdk_item(m)?),
        sdk::AttributeValue::Ss(v) => Value::Ss(v.clone()),
        sdk::AttributeValue::Ns(v) => Value::Ns(v.clone()),
        sdk::AttributeValue::Bs(v) => Value::Bs(v.iter().map(|b| b.as_ref().to_vec()).collect()),
        other => {
            return Err(PortError::failed(
                "dynamodb:Scan",
                format!("an attribute value of a type this envclone does not know: {other:?}"),
            ))
        }
    })
}

fn from_sdk_item(item: &HashMap<String, sdk::AttributeValue>) -> PortResult<Item> {
    item.iter()
        .map(|(k, v)| Ok((k.clone(), from_sdk(v)?)))
        .collect()
}

fn scalar(t: &sdk::ScalarAttributeType) -> ScalarType {
    match t {
        sdk::ScalarAttributeType::N => ScalarType::N,
        sdk::ScalarAttributeType::B => ScalarType::B,
        _ => ScalarType::S,
    }
}

fn key_schema(
    elements: &[sdk::KeySchemaElement],
    definitions: &[sdk::AttributeDefinition],
) -> PortResult<KeySchema> {
    let attribute = |kind: sdk::KeyType| {
        elements
            .iter()
            .find(|e| *e.key_type() == kind)
            .map(|e| KeyAttribute {
                name: e.attribute_name().to_string(),
                kind: definitions
                    .iter()
                    .find(|d| d.attribute_name() == e.attribute_name())
                    .map(|d| scalar(d.attribute_type()))
                    .unwrap_or(ScalarType::S),
            })
    };
    Ok(KeySchema {
        partition: attribute(sdk::KeyType::Hash).ok_or_else(|| {
            PortError::failed("dynamodb:DescribeTable", "a key schema without a HASH key")
        })?,
        sort: attribute(sdk::KeyType::Range),
    })
}

fn projection(p: Option<&sdk::Projection>) -> Projection {
    match p.and_then(|p| p.projection_type()) {
        Some(sdk::ProjectionType::KeysOnly) => Projection::KeysOnly,
        Some(sdk::ProjectionType::Include) => Projection::Include(
            p.map(|p| p.non_key_attributes().to_vec())
                .unwrap_or_default(),
        ),
        _ => Projection::All,
    }
}

fn capacity(on_demand: bool, p: Option<&sdk::ProvisionedThroughputDescription>) -> Capacity {
    match p {
        Some(p) if !on_demand => Capacity::Provisioned {
            read: p.read_capacity_units().unwrap_or_default().max(0) as u64,
            write: p.write_capacity_units().unwrap_or_default().max(0) as u64,
        },
        _ => Capacity::OnDemand,
    }
}

fn table_info(t: &sdk::TableDescription) -> PortResult<TableInfo> {
    let defs = t.attribute_definitions();
    // A table whose billing was never changed has no BillingModeSummary: PROVISIONED.
    let on_demand = t.billing_mode_summary().and_then(|b| b.billing_mode())
        == Some(&sdk::BillingMode::PayPerRequest);
    Ok(TableInfo {
        name: t.table_name().unwrap_or_default().to_string(),
        arn: t.table_arn().unwrap_or_default().to_string(),
        status: TableStatus::from_aws(t.table_status().map(|s| s.as_str()).unwrap_or_default()),
        key: key_schema(t.key_schema(), defs)?,
        global_indexes: t
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                Ok(GlobalIndex {
                    spec: IndexSpec {
                        name: g.index_name().unwrap_or_default().to_string(),
                        key: key_schema(g.key_schema(), defs)?,
                        projection: projection(g.projection()),
                        capacity: capacity(on_demand, g.provisioned_throughput()),
                    },
                    status: IndexStatus::from_aws(
                        g.index_status().map(|s| s.as_str()).unwrap_or_default(),
                    ),
                })
            })
            .collect::<PortResult<_>>()?,
        local_indexes: t
            .local_secondary_indexes()
            .iter()
            .map(|l| {
                Ok(IndexSpec {
                    name: l.index_name().unwrap_or_default().to_string(),
                    key: key_schema(l.key_schema(), defs)?,
                    projection: projection(l.projection()),
                    capacity: Capacity::OnDemand,
                })
            })
            .collect::<PortResult<_>>()?,
        capacity: capacity(on_demand, t.provisioned_throughput()),
        item_count: t.item_count().unwrap_or_default().max(0) as u64,
        size_bytes: t.table_size_bytes().unwrap_or_default().max(0) as u64,
    })
}

const CREATE: &str = "dynamodb:CreateTable";

fn sdk_key(key: &KeySchema) -> PortResult<Vec<sdk::KeySchemaElement>> {
    let mut out = Vec::new();
    for (a, t) in std::iter::once((&key.partition, sdk::KeyType::Hash))
        .chain(key.sort.as_ref().map(|s| (s, sdk::KeyType::Range)))
    {
        out.push(built(
            CREATE,
            sdk::KeySchemaElement::builder()
                .attribute_name(&a.name)
                .key_type(t)
                .build(),
        )?);
    }
    Ok(out)
}

fn sdk_projection(p: &Projection) -> sdk::Projection {
    let b = sdk::Projection::builder();
    match p {
        Projection::All => b.projection_type(sdk::ProjectionType::All),
        Projection::KeysOnly => b.projection_type(sdk::ProjectionType::KeysOnly),
        Projection::Include(names) => b
            .projection_type(sdk::ProjectionType::Include)
            .set_non_key_attributes(Some(names.clone())),
    }
    .build()
}

fn sdk_throughput(c: Capacity) -> PortResult<Option<sdk::ProvisionedThroughput>> {
    match c {
        Capacity::OnDemand => Ok(None),
        Capacity::Provisioned { read, write } => built(
            CREATE,
            sdk::ProvisionedThroughput::builder()
                .read_capacity_units(read as i64)
                .write_capacity_units(write as i64)
                .build(),
        )
        .map(Some),
    }
}

#[async_trait]
impl Tables for DynamoDb {
    async fn describe_table(&self, name: &str) -> PortResult<Option<TableInfo>> {
        match self.0.describe_table().table_name(name).send().await {
            Ok(out) => out.table().map(table_info).transpose(),
            Err(e) => match dynamo_error(
                "dynamodb:DescribeTable",
                &format!("DynamoDB table {name}"),
                e,
            ) {
                PortError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn scan(
        &self,
        table: &str,
        segment: Segment,
        start: Option<&Item>,
        limit: Option<u32>,
    ) -> PortResult<ScanPage> {
        let out = self
            .0
            .scan()
            .table_name(table)
            .consistent_read(true)
            .segment(segment.index as i32)
            .total_segments(segment.total as i32)
            .set_exclusive_start_key(start.map(to_sdk_item))
            .set_limit(limit.map(|l| l as i32))
            .send()
            .await
            .map_err(|e| dynamo_error("dynamodb:Scan", &format!("DynamoDB table {table}"), e))?;
        Ok(ScanPage {
            items: out
                .items()
                .iter()
                .map(from_sdk_item)
                .collect::<PortResult<_>>()?,
            last_key: out.last_evaluated_key().map(from_sdk_item).transpose()?,
        })
    }

    async fn batch_write(&self, table: &str, items: &[Item]) -> PortResult<Vec<Item>> {
        const OP: &str = "dynamodb:BatchWriteItem";
        let mut requests = Vec::new();
        for item in items {
            let put = built(
                OP,
                sdk::PutRequest::builder()
                    .set_item(Some(to_sdk_item(item)))
                    .build(),
            )?;
            requests.push(sdk::WriteRequest::builder().put_request(put).build());
        }
        let out = self
            .0
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .map_err(|e| {
                dynamo_error(
                    "dynamodb:BatchWriteItem",
                    &format!("DynamoDB table {table}"),
                    e,
                )
            })?;
        out.unprocessed_items()
            .and_then(|u| u.get(table))
            .into_iter()
            .flatten()
            .filter_map(|w| w.put_request())
            .map(|p| from_sdk_item(p.item()))
            .collect()
    }

    async fn query_index(
        &self,
        table: &str,
        index: &str,
        partition: &str,
        value: &Value,
    ) -> PortResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .0
                .query()
                .table_name(table)
                .index_name(index)
                .key_condition_expression("#p = :v")
                .expression_attribute_names("#p", partition)
                .expression_attribute_values(":v", to_sdk(value))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| {
                    dynamo_error(
                        "dynamodb:Query",
                        &format!("index {index} of DynamoDB table {table}"),
                        e,
                    )
                })?;
            for item in page.items() {
                out.push(from_sdk_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => return Ok(out),
            }
        }
    }

    async fn create_table(
        &self,
        spec: &TableSpec,
        tags: &BTreeMap<String, String>,
    ) -> PortResult<()> {
        // Every key attribute of the table and its indexes defined once.
        let mut defined: BTreeMap<&str, ScalarType> = BTreeMap::new();
        let indexes = spec.global_indexes.iter().chain(&spec.local_indexes);
        for a in spec
            .key
            .attributes()
            .chain(indexes.flat_map(|i| i.key.attributes()))
        {
            defined.insert(&a.name, a.kind);
        }
        let mut definitions = Vec::new();
        for (name, kind) in defined {
            let t = match kind {
                ScalarType::S => sdk::ScalarAttributeType::S,
                ScalarType::N => sdk::ScalarAttributeType::N,
                ScalarType::B => sdk::ScalarAttributeType::B,
            };
            definitions.push(built(
                CREATE,
                sdk::AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(t)
                    .build(),
            )?);
        }
        let mut globals = Vec::new();
        for g in &spec.global_indexes {
            globals.push(built(
                CREATE,
                sdk::GlobalSecondaryIndex::builder()
                    .index_name(&g.name)
                    .set_key_schema(Some(sdk_key(&g.key)?))
                    .projection(sdk_projection(&g.projection))
                    .set_provisioned_throughput(sdk_throughput(g.capacity)?)
                    .build(),
            )?);
        }
        let mut locals = Vec::new();
        for l in &spec.local_indexes {
            locals.push(built(
                CREATE,
                sdk::LocalSecondaryIndex::builder()
                    .index_name(&l.name)
                    .set_key_schema(Some(sdk_key(&l.key)?))
                    .projection(sdk_projection(&l.projection))
                    .build(),
            )?);
        }
        let mut sdk_tags = Vec::new();
        for (k, v) in tags {
            sdk_tags.push(built(CREATE, sdk::Tag::builder().key(k).value(v).build())?);
        }
        let billing = match spec.capacity {
            Capacity::OnDemand => sdk::BillingMode::PayPerRequest,
            Capacity::Provisioned { .. } => sdk::BillingMode::Provisioned,
        };
        self.0
            .create_table()
            .table_name(&spec.name)
            .set_attribute_definitions(Some(definitions))
            .set_key_schema(Some(sdk_key(&spec.key)?))
            .set_global_secondary_indexes((!globals.is_empty()).then_some(globals))
            .set_local_secondary_indexes((!locals.is_empty()).then_some(locals))
            .billing_mode(billing)
            .set_provisioned_throughput(sdk_throughput(spec.capacity)?)
            .set_tags((!sdk_tags.is_empty()).then_some(sdk_tags))
            .send()
            .await
            .map_err(|e| {
                dynamo_error(
                    "dynamodb:CreateTable",
                    &format!("DynamoDB table {}", spec.name),
                    e,
                )
            })?;
        Ok(())
    }

    async fn tags(&self, arn: &str) -> PortResult<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut token = None;
        loop {
            let page = self
                .0
                .list_tags_of_resource()
                .resource_arn(arn)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    dynamo_error(
                        "dynamodb:ListTagsOfResource",
                        &format!("DynamoDB table {arn}"),
                        e,
                    )
                })?;
            for t in page.tags() {
                out.insert(t.key().to_string(), t.value().to_string());
            }
            match page.next_token() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }

    async fn delete_table(&self, name: &str) -> PortResult<()> {
        self.0
            .delete_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| {
                dynamo_error("dynamodb:DeleteTable", &format!("DynamoDB table {name}"), e)
            })?;
        Ok(())
    }
}
