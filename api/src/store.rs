//! The metadata store: API keys (hashes only), browser sessions, filter
//! presets and the audit log, through sqlx's `Any` driver so one set of
//! queries serves both backends: an SQLite file in the data directory by
//! default, Postgres with `--meta-url`. Each backend has its own migration
//! folder (they differ only in how ids are generated); the columns are the
//! same, with timestamps as UTC microseconds and booleans as 0/1.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use crate::audit::{AuditLog, AuditRow};
use crate::credentials::CredentialCache;
use crate::error::{Error, Result};

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a browser session lasts after sign-in.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::hours(12);

/// Which database holds the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to the metadata store, with the audit log's writer
/// ([`crate::audit`]) and the cache of verified credentials
/// ([`crate::credentials`]). Clones share all three.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    audit: Arc<AuditLog>,
    credentials: Arc<CredentialCache>,
}

/// An API key as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: i64,
    /// The key's first characters, to recognise it in `keys list`.
    pub prefix: String,
    pub team_id: i64,
    /// The team's slug when the key was created (the id is what binds it).
    pub team_slug: String,
    pub user: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Who a valid credential speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub key_id: i64,
    pub team_id: i64,
    pub team_slug: String,
    pub user: String,
    /// The session's CSRF token; `None` for a bearer key.
    pub csrf: Option<String>,
}

/// A saved set of dashboard filters.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Preset {
    pub id: i64,
    pub name: String,
    /// The chart query parameters, as saved (`date_range` presets stay relative).
    #[schema(value_type = Object)]
    pub filters: serde_json::Map<String, serde_json::Value>,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
}

/// One audit log row: who read what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The credential's key.
    pub key_id: i64,
    pub user: String,
    pub team_id: i64,
    /// `chart`, `export`, `preset.save`, `preset.list`, `preset.load`, `preset.delete`, `login`, `logout`.
    pub action: String,
    /// The chart (with the format for exports) or preset concerned.
    pub target: String,
    /// The resolved filters of a chart or export, the preset's filters otherwise.
    pub filters: serde_json::Value,
    /// Rows handed out (the export's table rows; see `export::record_count`).
    pub rows: i64,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn json_object(text: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(text).unwrap_or_default()
}

impl Store {
    /// The default store of a data directory (`DATA/meta.sqlite`) unless a URL is given.
    pub async fn open_for(data_dir: &Path, meta_url: Option<&str>) -> Result<Store> {
        match meta_url {
            Some(url) => Store::open(url).await,
            None => {
                std::fs::create_dir_all(data_dir)
                    .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
                Store::open(&format!("sqlite://{}?mode=rwc", data_dir.join("meta.sqlite").display())).await
            }
        }
    }

    /// Connects (`sqlite://PATH?mode=rwc` or `postgres://...`) and runs the migrations.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::Invalid(
                "the metadata store URL must start with postgres:// or sqlite:".into(),
            ));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // Readers never wait for a writer; persistent in the file.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        match backend {
            Backend::Sqlite => SQLITE.run(&pool).await?,
            Backend::Postgres => POSTGRES.run(&pool).await?,
        }
        Ok(Store {
            audit: Arc::new(AuditLog::start(pool.clone())),
            pool,
            backend,
            credentials: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Writes the queued audit rows and closes the pool (at shutdown).
    pub async fn close(&self) {
        self.audit.close().await;
        self.pool.close().await;
    }

    // ---- API keys -------------------------------------------------------

    /// Stores a new key's hash; the caller made the key.
    pub async fn insert_key(
        &self,
        key_hash: &str,
        prefix: &str,
        team_id: i64,
        team_slug: &str,
        user: &str,
    ) -> Result<ApiKey> {
        let now = Utc::now();
        let row = sqlx::query(
            "INSERT INTO api_keys (key_hash, prefix, team_id, team_slug, user_name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(key_hash)
        .bind(prefix)
        .bind(team_id)
        .bind(team_slug)
        .bind(user)
        .bind(micros(now))
        .fetch_one(&self.pool)
        .await?;
        Ok(ApiKey {
            id: row.try_get(0)?,
            prefix: prefix.to_string(),
            team_id,
            team_slug: team_slug.to_string(),
            user: user.to_string(),
            created_at: time(micros(now)),
            revoked_at: None,
        })
    }

    /// Every key, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, prefix, team_id, team_slug, user_name, created_at, revoked_at FROM api_keys ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiKey {
                    id: r.try_get(0)?,
                    prefix: r.try_get(1)?,
                    team_id: r.try_get(2)?,
                    team_slug: r.try_get(3)?,
                    user: r.try_get(4)?,
                    created_at: time(r.try_get(5)?),
                    revoked_at: r.try_get::<Option<i64>, _>(6)?.map(time),
                })
            })
            .collect()
    }

    /// Revokes a key and ends its sessions; false when there is no such active key.
    pub async fn revoke_key(&self, id: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(micros(Utc::now()))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM sessions WHERE key_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_auth_revision(&mut tx).await?;
        tx.commit().await?;
        self.credentials.clear();
        Ok(done == 1)
    }

    /// The active key with this hash (a recently verified one from memory).
    pub async fn key_by_hash(&self, key_hash: &str) -> Result<Option<Credential>> {
        self.check_revocations().await?;
        if let Some(cred) = self.credentials.get(key_hash, micros(Utc::now())) {
            return Ok(Some(cred));
        }
        let generation = self.credentials.generation();
        let row = sqlx::query(
            "SELECT id, team_id, team_slug, user_name FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        let cred = row.map(|r| credential(&r, None)).transpose()?;
        if let Some(c) = &cred {
            self.credentials.put(key_hash, c.clone(), None, generation);
        }
        Ok(cred)
    }

    /// Re-reads the store's revocation counter when it is due (see
    /// [`crate::credentials`]); a change empties the credential cache.
    async fn check_revocations(&self) -> Result<()> {
        if !self.credentials.poll_due() {
            return Ok(());
        }
        // Another request is reading it: go on with what is known.
        let Ok(_reading) = self.credentials.polling.try_lock() else {
            return Ok(());
        };
        let revision: i64 = sqlx::query_scalar("SELECT revision FROM auth_revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        self.credentials.saw_revision(revision);
        Ok(())
    }

    // ---- browser sessions -----------------------------------------------

    /// Opens a session for a key; the caller made the token and CSRF token.
    pub async fn insert_session(&self, token_hash: &str, key_id: i64, csrf: &str) -> Result<()> {
        let now = Utc::now();
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(micros(now))
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, key_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(key_id)
        .bind(csrf)
        .bind(micros(now))
        .bind(micros(now + SESSION_TTL))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live session with this token hash (its key not revoked; a
    /// recently verified one from memory).
    pub async fn session_by_hash(&self, token_hash: &str) -> Result<Option<Credential>> {
        self.check_revocations().await?;
        let now = micros(Utc::now());
        if let Some(cred) = self.credentials.get(token_hash, now) {
            return Ok(Some(cred));
        }
        let generation = self.credentials.generation();
        let row = sqlx::query(
            "SELECT k.id, k.team_id, k.team_slug, k.user_name, s.csrf_token, s.expires_at FROM sessions s \
             JOIN api_keys k ON k.id = s.key_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND k.revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let cred = credential(&r, Some(r.try_get(4)?))?;
        self.credentials
            .put(token_hash, cred.clone(), Some(r.try_get(5)?), generation);
        Ok(Some(cred))
    }

    /// Ends a session.
    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        bump_auth_revision(&mut tx).await?;
        tx.commit().await?;
        self.credentials.clear();
        Ok(())
    }

    // ---- presets --------------------------------------------------------

    /// Saves a preset, replacing one of the same name; a new default
    /// unsets the user's previous default in that team.
    pub async fn save_preset(
        &self,
        team_id: i64,
        user: &str,
        name: &str,
        filters: &serde_json::Map<String, serde_json::Value>,
        is_default: bool,
    ) -> Result<Preset> {
        let now = micros(Utc::now());
        let text = serde_json::Value::Object(filters.clone()).to_string();
        let mut tx = self.pool.begin().await?;
        if is_default {
            sqlx::query("UPDATE presets SET is_default = 0 WHERE team_id = $1 AND user_name = $2 AND name <> $3")
                .bind(team_id)
                .bind(user)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(
            "INSERT INTO presets (team_id, user_name, name, filters, is_default, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (team_id, user_name, name) DO UPDATE \
             SET filters = excluded.filters, is_default = excluded.is_default, created_at = excluded.created_at \
             RETURNING id",
        )
        .bind(team_id)
        .bind(user)
        .bind(name)
        .bind(&text)
        .bind(i64::from(is_default))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Preset {
            id: row.try_get(0)?,
            name: name.to_string(),
            filters: filters.clone(),
            is_default,
            created_at: time(now),
        })
    }

    /// The user's presets in a team, by name.
    pub async fn list_presets(&self, team_id: i64, user: &str) -> Result<Vec<Preset>> {
        let rows = sqlx::query(
            "SELECT id, name, filters, is_default, created_at FROM presets WHERE team_id = $1 AND user_name = $2 ORDER BY name, id",
        )
        .bind(team_id)
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(preset).collect()
    }

    /// One of the user's presets in a team.
    pub async fn get_preset(&self, team_id: i64, user: &str, id: i64) -> Result<Option<Preset>> {
        let row = sqlx::query(
            "SELECT id, name, filters, is_default, created_at FROM presets WHERE team_id = $1 AND user_name = $2 AND id = $3",
        )
        .bind(team_id)
        .bind(user)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(preset).transpose()
    }

    /// Deletes one of the user's presets in a team; false when there is none.
    pub async fn delete_preset(&self, team_id: i64, user: &str, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM presets WHERE team_id = $1 AND user_name = $2 AND id = $3")
            .bind(team_id)
            .bind(user)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(done == 1)
    }

    // ---- audit log ------------------------------------------------------

    /// Queues one row for the audit log (written in the background, see
    /// [`crate::audit`]); fails while the log cannot be written.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<()> {
        self.audit
            .push(AuditRow {
                at_micros: micros(entry.at),
                key_id: entry.key_id,
                user: entry.user.clone(),
                team_id: entry.team_id,
                action: entry.action.clone(),
                target: entry.target.clone(),
                filters: entry.filters.to_string().into(),
                rows: entry.rows,
            })
            .await
    }

    /// Queues a row whose filters are already JSON text.
    pub(crate) async fn audit_row(&self, row: AuditRow) -> Result<()> {
        self.audit.push(row).await
    }

    /// Waits until every audit row queued so far is in the store.
    pub async fn flush_audit(&self) -> Result<()> {
        self.audit.flush().await
    }

    /// The newest `limit` audit rows, newest first (after writing the queued ones).
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        self.flush_audit().await?;
        let rows = sqlx::query(
            "SELECT at, key_id, user_name, team_id, action, target, filters, row_count FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: time(r.try_get(0)?),
                    key_id: r.try_get(1)?,
                    user: r.try_get(2)?,
                    team_id: r.try_get(3)?,
                    action: r.try_get(4)?,
                    target: r.try_get(5)?,
                    filters: serde_json::from_str(r.try_get::<&str, _>(6)?).unwrap_or_default(),
                    rows: r.try_get(7)?,
                })
            })
            .collect()
    }
}

/// Tells other processes (see [`crate::credentials`]) that a credential stopped working.
async fn bump_auth_revision(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    sqlx::query("UPDATE auth_revision SET revision = revision + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn credential(r: &AnyRow, csrf: Option<String>) -> Result<Credential> {
    Ok(Credential {
        key_id: r.try_get(0)?,
        team_id: r.try_get(1)?,
        team_slug: r.try_get(2)?,
        user: r.try_get(3)?,
        csrf,
    })
}

fn preset(r: &AnyRow) -> Result<Preset> {
    Ok(Preset {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        filters: json_object(r.try_get(2)?),
        is_default: r.try_get::<i64, _>(3)? != 0,
        created_at: time(r.try_get(4)?),
    })
}
