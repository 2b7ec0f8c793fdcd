//! Shared test helpers: throwaway Postgres databases and snapshot readers.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::prelude::SessionContext;
use ocs_dash_engine::snapshot::{DataDir, TABLES, register_all};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// The server the tests use (scripts/test.sh sets it).
pub fn admin_url() -> String {
    std::env::var("OCS_DASH_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn url_for(db: &str) -> String {
    let admin = admin_url();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let cut = base.rfind('/').expect("database url has a path");
    format!("{}/{db}{query}", &base[..cut])
}

/// A database of its own for one test, dropped by [`TestDb::drop_db`].
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create(tag: &str) -> TestDb {
        let name = format!("ocs_dash_test_{tag}_{}", std::process::id());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("test Postgres reachable (OCS_DASH_TEST_PG)");
        admin
            .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .await
            .unwrap();
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        TestDb {
            url: url_for(&name),
            name,
        }
    }

    pub async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    /// Runs statements (several allowed, no parameters).
    pub async fn exec(&self, sql: &str) {
        let mut c = self.conn().await;
        c.execute(AssertSqlSafe(sql.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        let mut c = self.conn().await;
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"))
    }

    pub async fn drop_db(self) {
        let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
        admin
            .execute(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await
            .unwrap();
    }
}

/// Every table of the current snapshot, sorted by all columns, as one batch.
pub async fn snapshot_contents(data: &Path) -> BTreeMap<String, RecordBatch> {
    contents_of(&DataDir::new(data)).await
}

/// [`snapshot_contents`] of any data directory (local or object store).
pub async fn contents_of(dir: &DataDir) -> BTreeMap<String, RecordBatch> {
    let version = dir.require_current().await.unwrap();
    let ctx = SessionContext::new();
    register_all(&ctx, dir, &version, "").unwrap();
    let mut out = BTreeMap::new();
    for def in TABLES.iter() {
        let n = def.schema.fields().len() + usize::from(def.partitioned);
        let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let df = ctx
            .sql(&format!("SELECT * FROM {} ORDER BY {}", def.name, order.join(", ")))
            .await
            .unwrap();
        let schema = df.schema().inner().clone();
        let batches = df.collect().await.unwrap();
        out.insert(def.name.to_string(), concat_batches(&schema, &batches).unwrap());
    }
    out
}

/// One number from a query over the current snapshot's tables.
pub async fn snapshot_i64(data: &Path, sql: &str) -> i64 {
    let dir = DataDir::new(data);
    let version = dir.require_current().await.unwrap();
    let ctx = SessionContext::new();
    register_all(&ctx, &dir, &version, "").unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let col =
        datafusion::arrow::compute::cast(batches[0].column(0), &datafusion::arrow::datatypes::DataType::Int64).unwrap();
    col.as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}
