//! Queries on an Apache DataFusion Ballista cluster (cargo feature `ballista`).
//!
//! A [`Cluster`] hands out contexts whose plans run on a Ballista scheduler
//! (`df://HOST:PORT`) and its executors instead of in this process. Nothing
//! else changes: [`crate::scope::team_scope_on`] registers the same team
//! folders and filtered views in such a context, and the chart SQL, its bound
//! parameters and the result cache are the engine's own.
//!
//! Two things of a query scope are not plain DataFusion and need a codec to
//! cross the wire, so the scheduler and executors must run this crate's
//! [`run_scheduler`] / [`run_executor`] (`ocs-dash ballista-scheduler` and
//! `ocs-dash ballista-executor`), not stock Ballista binaries:
//!
//! - the `bucket(ts)` UDF ([`BucketUdf`]) is built per request from the
//!   request's bucket starts, so no executor can know it by name; the codecs
//!   ship it as its list of starts (8 bytes each) and rebuild it on the other
//!   side, in the logical plan (client → scheduler) and in the physical plan
//!   (scheduler → executors);
//! - a table a team has no rows in is an empty in-memory table; the codecs
//!   ship it as "empty, with this schema". Any other in-memory table is
//!   refused, so no data travels inside a plan.
//!
//! And one thing DataFusion's own codec gets wrong: datafusion-proto 55
//! encodes an `EmptyRelation` as `produce_one_row` only, without its schema,
//! so a sub-plan the optimizer proved empty (a chatbot filter that matches
//! none of the team's bots makes `WHERE false`) reaches the scheduler without
//! the columns the nodes above it read ("No field named w.session_id"). The
//! client therefore ends its optimizer with [`ShipEmptyRelations`], which
//! turns such a relation into a scan of an empty table with the same columns.
//!
//! Every other node goes through Ballista's own codecs. Executors read the
//! snapshot from the paths the client planned with: they must see the same
//! data directory (a shared file system, or object storage).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DataFusionError, TableReference};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::provider_as_source;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{EmptyRelation, Expr, Extension, LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::buckets::BucketUdf;
use crate::error::{Error, Result};
use crate::scope::engine_config;

type DfResult<T> = std::result::Result<T, DataFusionError>;

/// A Ballista scheduler to run queries on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    url: String,
}

impl Cluster {
    /// `df://HOST:PORT` (the port defaults to Ballista's 50050).
    pub fn new(url: &str) -> Result<Cluster> {
        let parsed = url::Url::parse(url).map_err(|e| Error::Config(format!("--ballista {url:?}: {e}")))?;
        if parsed.scheme() != "df" || parsed.host_str().is_none_or(str::is_empty) {
            return Err(Error::Config(format!(
                "--ballista {url:?}: expected df://HOST:PORT (a Ballista scheduler)"
            )));
        }
        Ok(Cluster { url: url.to_string() })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A fresh context whose queries run on the cluster, with the engine's
    /// DataFusion settings and this module's codecs.
    pub async fn context(&self) -> Result<SessionContext> {
        let config = engine_config()
            .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
            .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()));
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_optimizer_rule(Arc::new(ShipEmptyRelations))
            .build();
        Ok(SessionContext::remote_with_state(&self.url, state).await?)
    }
}

/// Rewrites an empty relation with columns into a projection of a scan of an
/// empty in-memory table (which [`LogicalCodec`] ships with its schema), so
/// the plan keeps its columns on the wire. The result is the same: no rows.
#[derive(Debug)]
pub struct ShipEmptyRelations;

/// The table name of the scans [`ShipEmptyRelations`] introduces.
const EMPTY_SCAN: &str = "ocs_dash_empty";

impl OptimizerRule for ShipEmptyRelations {
    fn name(&self) -> &str {
        "ocs_dash_ship_empty_relations"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: false,
            schema,
        }) = &plan
        else {
            return Ok(Transformed::no(plan));
        };
        if schema.fields().is_empty() {
            return Ok(Transformed::no(plan));
        }
        // Positional names: the relation's own names may repeat under different qualifiers.
        let fields: Vec<Field> = (schema.fields().iter().enumerate())
            .map(|(i, f)| f.as_ref().clone().with_name(format!("c{i}")))
            .collect();
        let table = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?;
        let columns: Vec<Expr> = (schema.iter().enumerate())
            .map(|(i, (qualifier, field))| {
                Expr::Column(Column::new(Some(EMPTY_SCAN), format!("c{i}")))
                    .alias_qualified(qualifier.cloned(), field.name())
            })
            .collect();
        let scan = LogicalPlanBuilder::scan(EMPTY_SCAN, provider_as_source(Arc::new(table)), None)?
            .project(columns)?
            .build()?;
        Ok(Transformed::yes(scan))
    }
}

/// Serves a Ballista scheduler with this crate's codecs on `listener` until
/// the process ends. Executors connect to it, clients use `df://` + its address.
pub async fn run_scheduler(listener: tokio::net::TcpListener) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the scheduler's address", e))?;
    let config = SchedulerConfig {
        bind_host: addr.ip().to_string(),
        external_host: addr.ip().to_string(),
        bind_port: addr.port(),
        scheduling_policy: TaskSchedulingPolicy::PushStaged,
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista_error)?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
        .await
        .map_err(ballista_error)?;
    start_grpc_service_with_listener(listener, scheduler)
        .await
        .map_err(ballista_error)
}

/// Where an executor listens and which scheduler it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's address.
    pub scheduler: SocketAddr,
    /// Arrow Flight address (shuffle data and results); must be reachable by
    /// the scheduler, the other executors and the clients.
    pub bind: SocketAddr,
    /// gRPC port for the tasks the scheduler pushes (same host as `bind`).
    pub grpc_port: u16,
    /// Concurrent tasks (0 = one per core).
    pub vcores: usize,
    /// Shuffle files (default: a temporary directory).
    pub work_dir: Option<PathBuf>,
}

/// Runs a Ballista executor with this crate's codecs until the process gets
/// SIGTERM or ctrl-c (or the scheduler stops it).
pub async fn run_executor(o: ExecutorOptions) -> Result<()> {
    let config = ExecutorProcessConfig {
        bind_host: o.bind.ip().to_string(),
        external_host: Some(o.bind.ip().to_string()),
        port: o.bind.port(),
        grpc_port: o.grpc_port,
        scheduler_host: o.scheduler.ip().to_string(),
        scheduler_port: o.scheduler.port(),
        scheduler_connect_timeout_seconds: 30,
        vcores: o.vcores,
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: o.work_dir.map(|d| d.display().to_string()),
        print_thread_info: false,
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config)).await.map_err(ballista_error)
}

fn ballista_error(e: ballista_core::error::BallistaError) -> Error {
    Error::Ballista(e.to_string())
}

/// The `bucket` UDF as its starts, little-endian i64s; nothing for any other UDF.
fn encode_udf(node: &ScalarUDF, buf: &mut Vec<u8>) {
    if let Some(b) = node.inner().downcast_ref::<BucketUdf>() {
        buf.extend(b.starts().iter().flat_map(|s| s.to_le_bytes()));
    }
}

fn decode_udf(name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
    if name != BucketUdf::NAME {
        return Err(DataFusionError::NotImplemented(format!(
            "ocs-dash's Ballista codec does not know the function {name:?}"
        )));
    }
    if !buf.len().is_multiple_of(8) {
        return Err(DataFusionError::Internal(format!(
            "bucket(): {} bytes of starts is not a list of i64",
            buf.len()
        )));
    }
    let starts: Vec<i64> = buf
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    if !starts.is_sorted() {
        return Err(DataFusionError::Internal("bucket(): starts are not ascending".into()));
    }
    Ok(Arc::new(ScalarUDF::new_from_impl(BucketUdf::new(starts))))
}

/// Marks an empty in-memory table in a plan (its schema travels beside it).
const EMPTY_TABLE: &[u8] = b"ocs-dash:empty-table";

/// Ballista's logical codec, plus the `bucket` UDF and empty tables.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> DfResult<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        if buf == EMPTY_TABLE {
            return Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?));
        }
        self.inner.try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        if let Some(mem) = node.downcast_ref::<MemTable>() {
            let empty = mem.batches.iter().all(|p| {
                p.try_read()
                    .is_ok_and(|batches| batches.iter().all(|b| b.num_rows() == 0))
            });
            if !empty {
                return Err(DataFusionError::NotImplemented(format!(
                    "in-memory table {table_ref} holds rows; only snapshot files can be read on Ballista"
                )));
            }
            buf.extend_from_slice(EMPTY_TABLE);
            return Ok(());
        }
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> DfResult<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        encode_udf(node, buf);
        Ok(())
    }
}

/// Ballista's physical codec, plus the `bucket` UDF.
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        encode_udf(node, buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_udf_round_trips_through_its_starts() {
        let udf = ScalarUDF::new_from_impl(BucketUdf::new(vec![-5, 0, 3_600_000_000]));
        let mut buf = Vec::new();
        encode_udf(&udf, &mut buf);
        assert_eq!(buf.len(), 24);
        let back = decode_udf("bucket", &buf).unwrap();
        assert_eq!(
            back.inner().downcast_ref::<BucketUdf>().unwrap().starts(),
            [-5, 0, 3_600_000_000]
        );
    }

    #[test]
    fn codec_refuses_unknown_functions_and_bad_starts() {
        assert!(decode_udf("other", &[]).is_err());
        assert!(decode_udf("bucket", &[0; 7]).is_err());
        let descending: Vec<u8> = [2i64, 1].iter().flat_map(|s| s.to_le_bytes()).collect();
        assert!(decode_udf("bucket", &descending).is_err());
    }

    #[test]
    fn cluster_urls_must_be_df() {
        assert!(Cluster::new("df://127.0.0.1:50050").is_ok());
        assert!(Cluster::new("http://127.0.0.1:50050").is_err());
        assert!(Cluster::new("df://").is_err());
        assert!(Cluster::new("nonsense").is_err());
    }
}
