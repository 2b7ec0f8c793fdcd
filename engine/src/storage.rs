//! Where snapshots live: a data directory on a local disk or in an object
//! store (S3 or an S3-compatible server), both through the `object_store`
//! crate, so the ETL, the rollups, pruning and the engine's reads run one
//! code path whatever `--data` names.
//!
//! ## Publishing a version (atomic without rename)
//!
//! A version's files go under `snapshots/<version>/` first. It becomes
//! current when its manifest is written as the next entry of the
//! publication log `manifests/<seq>.json` (20-digit, zero-padded `seq`),
//! with a create-if-absent put (`PutMode::Create`: `If-None-Match: *` on
//! S3, a no-clobber hard link on a local disk). The current snapshot is the
//! manifest with the highest `seq`. So:
//! - a reader sees either the old or the new version, never a mix: a
//!   manifest is one object, written whole or not at all, and it is written
//!   only after every file it names;
//! - a writer killed at any moment leaves, at worst, files of an unpublished
//!   version (removed by the next prune), and the previous snapshot current;
//! - a writer publishes `seq = n + 1` where `n` is the log head it built
//!   on; if another writer published in between, the put fails
//!   ([`Error::Conflict`]) instead of silently replacing a newer snapshot
//!   with one made from older data.
//!
//! On a local disk the version's files, the new manifest and the folders
//! are also fsynced, so a published version survives a power cut.
//! Folders written by earlier releases (a `CURRENT` file and
//! `snapshots/<v>/manifest.json`) are still read until the first new
//! publication.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use crate::snapshot::Manifest;

/// The folder of the publication log.
const MANIFESTS: &str = "manifests";
/// The folder of the version folders.
const SNAPSHOTS: &str = "snapshots";
/// Pointer and manifest names of data directories from earlier releases.
const LEGACY_CURRENT: &str = "CURRENT";
const LEGACY_MANIFEST: &str = "manifest.json";

/// A data directory: snapshot versions and their publication log, in a
/// local folder or under an object-store prefix. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DataDir {
    /// What the user named (`/srv/ocs`, `s3://bucket/prefix`), for messages.
    location: String,
    store: Arc<dyn ObjectStore>,
    /// `file:///` or `s3://bucket`: where DataFusion finds `store`.
    store_url: ObjectStoreUrl,
    /// The directory's prefix inside `store`.
    root: ObjPath,
    /// The folder, for a local data directory.
    local: Option<PathBuf>,
}

/// A published version: its place in the log and its manifest.
#[derive(Debug, Clone)]
pub struct Published {
    /// Position in the publication log (0 for a directory of an earlier release).
    pub seq: u64,
    pub manifest: Manifest,
}

impl DataDir {
    /// A data directory in a local folder (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        let given: PathBuf = root.into();
        let folder = normalize(&std::path::absolute(&given).unwrap_or_else(|_| given.clone()));
        let root = ObjPath::from_iter(folder.components().filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        }));
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let store_url = ObjectStoreUrl::local_filesystem();
        DataDir {
            location: given.display().to_string(),
            store,
            store_url,
            root,
            local: Some(folder),
        }
    }

    /// A data directory named by `--data`: a local path, a `file://` URL,
    /// or `s3://bucket/prefix` (credentials, region and endpoint from the
    /// usual `AWS_*` environment variables: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// `AWS_ALLOW_HTTP`, ...).
    pub fn open(location: &str) -> Result<DataDir> {
        DataDir::open_with_env(location, std::env::vars())
    }

    /// [`DataDir::open`] with the `AWS_*` settings read from `vars` instead
    /// of the process environment.
    pub fn open_with_env(location: &str, vars: impl IntoIterator<Item = (String, String)>) -> Result<DataDir> {
        let Some((scheme, _)) = location.split_once("://") else {
            return Ok(DataDir::new(location));
        };
        let url = url::Url::parse(location).map_err(|e| Error::Location(format!("{location}: {e}")))?;
        match scheme {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| Error::Location(format!("{location}: not a local path")))?;
                Ok(DataDir::new(path))
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| Error::Location(format!("{location}: no bucket (use s3://bucket/prefix)")))?;
                let settings = vars.into_iter().filter(|(k, _)| k.starts_with("AWS_"));
                let s3 = settings
                    .fold(AmazonS3Builder::new(), |b, (k, v)| {
                        match k.to_ascii_lowercase().parse() {
                            Ok(key) => b.with_config(key, v),
                            Err(_) => b,
                        }
                    })
                    .with_url(location)
                    .build()
                    .map_err(|e| Error::Location(format!("{location}: {e}")))?;
                let store: Arc<dyn ObjectStore> = Arc::new(s3);
                let store_url = ObjectStoreUrl::parse(format!("s3://{bucket}"))?;
                let root =
                    ObjPath::from_url_path(url.path()).map_err(|e| Error::Location(format!("{location}: {e}")))?;
                Ok(DataDir {
                    location: location.trim_end_matches('/').to_string(),
                    store,
                    store_url,
                    root,
                    local: None,
                })
            }
            other => Err(Error::Location(format!(
                "{location}: unsupported scheme {other:?} (use a local path or s3://bucket/prefix)"
            ))),
        }
    }

    /// The directory as the user named it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The folder of a local data directory; `None` in an object store.
    pub fn local_path(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    /// The object store holding the directory.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where DataFusion looks the store up (`file:///`, `s3://bucket`).
    pub fn store_url(&self) -> &ObjectStoreUrl {
        &self.store_url
    }

    /// One version's folder.
    pub fn version_dir(&self, version: &str) -> VersionDir {
        VersionDir {
            data: self.clone(),
            name: version.to_string(),
        }
    }

    /// A fresh, sortable version name.
    pub fn new_version_name(now: DateTime<Utc>) -> String {
        format!("{}-{:08x}", now.format("%Y%m%dT%H%M%S%.6fZ"), rand_suffix())
    }

    /// A local folder for the ETL's staged source rows of `version`: inside
    /// a local data directory, the system's temporary folder otherwise.
    pub fn staging_dir(&self, version: &str) -> PathBuf {
        match &self.local {
            Some(root) => root.join(SNAPSHOTS).join(version).join("_staging"),
            None => std::env::temp_dir().join(format!("ocs-dash-staging-{version}")),
        }
    }

    fn path(&self, parts: &[&str]) -> ObjPath {
        parts.iter().fold(self.root.clone(), |p, part| p.join(*part))
    }

    fn entry_path(&self, seq: u64) -> ObjPath {
        self.path(&[MANIFESTS, &format!("{seq:020}.json")])
    }

    fn storage(&self, what: impl std::fmt::Display) -> impl FnOnce(object_store::Error) -> Error {
        let context = format!("{what} in {}", self.location);
        move |source| Error::Storage { context, source }
    }

    /// Checks that the directory can be written (before a long export).
    pub async fn check_writable(&self) -> Result<()> {
        if let Some(root) = &self.local {
            std::fs::create_dir_all(root.join(SNAPSHOTS))
                .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        }
        let probe = self.path(&[".write-probe"]);
        self.store
            .put(&probe, PutPayload::from_static(b"ok"))
            .await
            .map_err(self.storage("writing"))?;
        self.store
            .delete(&probe)
            .await
            .map_err(self.storage("deleting the write probe"))
    }

    /// The sequence numbers in the publication log, ascending.
    async fn log(&self) -> Result<Vec<u64>> {
        let prefix = self.path(&[MANIFESTS]);
        let mut seqs: Vec<u64> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| {
                meta.location
                    .filename()
                    .and_then(|f| f.strip_suffix(".json")?.parse::<u64>().ok())
            })
            .try_collect::<Vec<_>>()
            .await
            .map_err(self.storage("listing the manifests"))?
            .into_iter()
            .flatten()
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    async fn read_json(&self, path: &ObjPath, version: &str) -> Result<Option<Manifest>> {
        match self.store.get(path).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(self.storage(format!("reading {path}")))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| Error::BadSnapshot {
                        version: version.to_string(),
                        reason: format!("{path}: {e}"),
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.storage(format!("reading {path}"))(e)),
        }
    }

    async fn entry(&self, seq: u64) -> Result<Manifest> {
        self.read_json(&self.entry_path(seq), &format!("#{seq}"))
            .await?
            .ok_or_else(|| Error::BadSnapshot {
                version: format!("#{seq}"),
                reason: "its manifest disappeared (pruned meanwhile?)".into(),
            })
    }

    /// The newest published version, if any.
    pub async fn head(&self) -> Result<Option<Published>> {
        if let Some(&seq) = self.log().await?.last() {
            return Ok(Some(Published {
                seq,
                manifest: self.entry(seq).await?,
            }));
        }
        self.legacy_head().await
    }

    /// The current version of a directory written by an earlier release
    /// (a `CURRENT` file naming a folder with its own `manifest.json`).
    async fn legacy_head(&self) -> Result<Option<Published>> {
        let pointer = match self.store.get(&self.path(&[LEGACY_CURRENT])).await {
            Ok(got) => got.bytes().await.map_err(self.storage("reading CURRENT"))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.storage("reading CURRENT")(e)),
        };
        let version = String::from_utf8_lossy(&pointer).trim().to_string();
        let path = self.path(&[SNAPSHOTS, &version, LEGACY_MANIFEST]);
        let manifest = self
            .read_json(&path, &version)
            .await?
            .ok_or_else(|| Error::BadSnapshot {
                version: version.clone(),
                reason: format!("{path} is missing"),
            })?;
        Ok(Some(Published { seq: 0, manifest }))
    }

    /// Whether a version newer than log entry `seq` was published (one
    /// existence check: the log has no gaps above its oldest kept entry).
    pub async fn published_after(&self, seq: u64) -> Result<bool> {
        match self.store.head(&self.entry_path(seq + 1)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.storage("checking for a newer manifest")(e)),
        }
    }

    /// The current version's name, if a snapshot was ever published.
    pub async fn current(&self) -> Result<Option<String>> {
        Ok(self.head().await?.map(|p| p.manifest.version))
    }

    /// The current version's name, or [`Error::NoSnapshot`].
    pub async fn require_current(&self) -> Result<String> {
        self.current()
            .await?
            .ok_or_else(|| Error::NoSnapshot(self.location.clone()))
    }

    /// The newest published version, or [`Error::NoSnapshot`].
    pub async fn require_head(&self) -> Result<Published> {
        self.head()
            .await?
            .ok_or_else(|| Error::NoSnapshot(self.location.clone()))
    }

    /// The manifest of a published version.
    pub async fn manifest(&self, version: &str) -> Result<Manifest> {
        for seq in self.log().await?.into_iter().rev() {
            let m = self.entry(seq).await?;
            if m.version == version {
                return Ok(m);
            }
        }
        match self.legacy_head().await? {
            Some(p) if p.manifest.version == version => Ok(p.manifest),
            _ => Err(Error::BadSnapshot {
                version: version.to_string(),
                reason: format!("no manifest of it in {}", self.location),
            }),
        }
    }

    /// Makes a version whose files are all written current: writes its
    /// manifest as log entry `base + 1`, where `base` is the head the
    /// writer read before it started (`None` for an empty directory).
    /// Fails with [`Error::Conflict`] if that entry exists: someone else
    /// published meanwhile. Returns the new entry's number.
    pub async fn publish(&self, manifest: &Manifest, base: Option<u64>) -> Result<u64> {
        if let Some(root) = &self.local {
            sync_tree(&root.join(SNAPSHOTS).join(&manifest.version))?;
        }
        let seq = base.map_or(1, |b| b + 1);
        let path = self.entry_path(seq);
        let body = serde_json::to_vec_pretty(manifest)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.store.put_opts(&path, PutPayload::from(body), opts).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::Conflict(format!(
                    "another writer published snapshot #{seq} in {} while {} was being built; \
                     nothing was changed, run it again",
                    self.location, manifest.version
                )));
            }
            Err(e) => return Err(self.storage(format!("publishing {}", manifest.version))(e)),
        }
        if let Some(root) = &self.local {
            let dir = root.join(MANIFESTS);
            sync_path(&dir.join(format!("{seq:020}.json")))?;
            sync_path(&dir)?;
            sync_path(root)?;
        }
        Ok(seq)
    }

    /// Every version folder, oldest first (published or not).
    pub async fn versions(&self) -> Result<Vec<String>> {
        let prefix = self.path(&[SNAPSHOTS]);
        let folders = match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(listed) => listed.common_prefixes,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.storage("listing the versions")(e)),
        };
        let mut out: Vec<String> = folders
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Deletes old versions: keeps the current one and the `keep` newest
    /// published ones before it, drops older log entries first (so a crash
    /// midway never leaves an entry naming missing files), then every
    /// version folder that no kept entry names and that is older than the
    /// current one (leftovers of killed or superseded writers). Folders
    /// newer than the current version may belong to a writer still running
    /// and are left alone. Returns the versions removed.
    pub async fn prune(&self, keep: usize) -> Result<Vec<String>> {
        let Some(head) = self.head().await? else {
            return Ok(Vec::new());
        };
        let log = self.log().await?;
        let cut = log.len().saturating_sub(keep + 1);
        let mut kept = vec![head.manifest.version.clone()];
        for &seq in &log[cut..] {
            kept.push(self.entry(seq).await?.version);
        }
        for &seq in &log[..cut] {
            match self.store.delete(&self.entry_path(seq)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.storage("deleting an old manifest")(e)),
            }
        }
        if !log.is_empty() {
            // A pointer from an earlier release is superseded by the log.
            match self.store.delete(&self.path(&[LEGACY_CURRENT])).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.storage("deleting CURRENT")(e)),
            }
        }
        let mut removed = Vec::new();
        for v in self.versions().await? {
            if !kept.contains(&v) && v < head.manifest.version {
                self.version_dir(&v).delete().await?;
                removed.push(v);
            }
        }
        Ok(removed)
    }
}

/// Registers the data directory's object store in `ctx`'s runtime, so that
/// tables at its URLs can be read: on any context (the engine's, the
/// ETL's, a Ballista client's). Registering again replaces the entry.
pub fn register_object_store(ctx: &SessionContext, data: &DataDir) {
    ctx.register_object_store(data.store_url.as_ref(), data.store.clone());
}

/// One version's folder in a data directory.
#[derive(Debug, Clone)]
pub struct VersionDir {
    data: DataDir,
    name: String,
}

impl VersionDir {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data(&self) -> &DataDir {
        &self.data
    }

    fn prefix(&self) -> ObjPath {
        self.data.path(&[SNAPSHOTS, &self.name])
    }

    fn folder(&self, table: &str, team: Option<i64>) -> ObjPath {
        let p = self.prefix().join(table);
        match team {
            Some(t) => p.join(format!("{}={t}", crate::snapshot::TEAM_COLUMN)),
            None => p,
        }
    }

    /// The object that holds part `part` of a table (of one team's folder
    /// for a partitioned table).
    pub fn file(&self, table: &str, team: Option<i64>, part: usize) -> ObjPath {
        self.path(table, team, &format!("part-{part}.parquet"))
    }

    /// The object `name` in a table's folder (one team's, for a partitioned table).
    pub fn path(&self, table: &str, team: Option<i64>, name: &str) -> ObjPath {
        self.folder(table, team).join(name)
    }

    /// The version's folder on a local disk; `None` in an object store.
    pub fn local_path(&self) -> Option<PathBuf> {
        self.data
            .local
            .as_ref()
            .map(|root| root.join(SNAPSHOTS).join(&self.name))
    }

    fn url(&self, table: &str, team: Option<i64>) -> Result<ListingTableUrl> {
        let url = match &self.data.local {
            Some(root) => {
                let mut dir = root.join(SNAPSHOTS).join(&self.name).join(table);
                if let Some(t) = team {
                    dir.push(format!("{}={t}", crate::snapshot::TEAM_COLUMN));
                }
                format!("{}/", dir.display())
            }
            None => format!("{}{}/", self.data.store_url.as_str(), self.folder(table, team)),
        };
        Ok(ListingTableUrl::parse(url)?)
    }

    /// The folder of a table, all teams.
    pub fn table_url(&self, table: &str) -> Result<ListingTableUrl> {
        self.url(table, None)
    }

    /// The folder of one team's rows of a partitioned table.
    pub fn team_url(&self, table: &str, team: i64) -> Result<ListingTableUrl> {
        self.url(table, Some(team))
    }

    /// The object `name` at the root of the version's folder (beside the
    /// tables' folders), for what the ETL keeps for its next run.
    fn object(&self, name: &str) -> ObjPath {
        self.prefix().join(name)
    }

    /// Writes the object `name` at the root of the version's folder.
    pub async fn put(&self, name: &str, body: Vec<u8>) -> Result<()> {
        let path = self.object(name);
        self.data
            .store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(self.data.storage(format!("writing {path}")))?;
        Ok(())
    }

    /// Reads a whole object of this version.
    pub async fn read(&self, path: &ObjPath) -> Result<bytes::Bytes> {
        let ctx = format!("reading {path}");
        let got = self.data.store.get(path).await.map_err(self.data.storage(&ctx))?;
        got.bytes().await.map_err(self.data.storage(&ctx))
    }

    /// Every file of a table: its path inside the table's folder (e.g.
    /// `team_id=3/part-0.parquet`) and its size, sorted by path.
    pub async fn files(&self, table: &str) -> Result<Vec<(String, u64)>> {
        let folder = self.folder(table, None);
        let mut out: Vec<(String, u64)> = self
            .data
            .store
            .list(Some(&folder))
            .try_collect::<Vec<_>>()
            .await
            .map_err(self.data.storage(format!("listing {folder}")))?
            .into_iter()
            .map(|m| (relative(&m.location, &folder), m.size))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Bytes stored under one team's folder of a table (0 when it has none).
    pub async fn team_bytes(&self, table: &str, team: i64) -> Result<u64> {
        let folder = self.folder(table, Some(team));
        self.data
            .store
            .list(Some(&folder))
            .try_fold(
                0u64,
                |n, meta| async move { Ok::<_, object_store::Error>(n + meta.size) },
            )
            .await
            .map_err(self.data.storage(format!("listing {folder}")))
    }

    /// Copies the files of `from` whose path inside the version (e.g.
    /// `turns/team_id=3/part-0.parquet`) passes `keep` into this version:
    /// hard links on a local disk, server-side copies in an object store.
    /// Every version stays self-contained, so pruning one never touches
    /// another. Returns the number of files copied.
    pub async fn copy_from(&self, from: &VersionDir, keep: impl Fn(&str) -> bool) -> Result<usize> {
        let src = from.prefix();
        let files: Vec<ObjPath> = self
            .data
            .store
            .list(Some(&src))
            .try_collect::<Vec<_>>()
            .await
            .map_err(self.data.storage(format!("listing {src}")))?
            .into_iter()
            .map(|m| m.location)
            .filter(|p| keep(&relative(p, &src)))
            .collect();
        let dst = self.prefix();
        if let Some(root) = &self.data.local {
            // Hard links need the target folders.
            for f in &files {
                let path = root.join(SNAPSHOTS).join(&self.name).join(relative(f, &src));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                }
            }
        }
        let n = files.len();
        futures::stream::iter(files.into_iter().map(|f| {
            let to = ObjPath::from_iter(dst.parts().chain(f.prefix_match(&src).into_iter().flatten()));
            let store = self.data.store.clone();
            async move { store.copy(&f, &to).await }
        }))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .map_err(self.data.storage(format!("copying {} into {}", from.name, self.name)))?;
        Ok(n)
    }

    /// Deletes every file of the version (and, on a local disk, its folders).
    pub async fn delete(&self) -> Result<()> {
        let prefix = self.prefix();
        let files = self.data.store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        self.data
            .store
            .delete_stream(files)
            .try_collect::<Vec<_>>()
            .await
            .map_err(self.data.storage(format!("deleting {}", self.name)))?;
        if let Some(root) = &self.data.local {
            let dir = root.join(SNAPSHOTS).join(&self.name);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {}", dir.display()), e)),
            }
        }
        Ok(())
    }
}

/// `path` inside `prefix`, as `a/b/c`.
fn relative(path: &ObjPath, prefix: &ObjPath) -> String {
    let parts: Vec<String> = path
        .prefix_match(prefix)
        .into_iter()
        .flatten()
        .map(|p| p.as_ref().to_string())
        .collect();
    parts.join("/")
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id()) as u32
}

fn sync_path(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

/// fsyncs every folder under `path` and every file written there: a file
/// with more than one link was hard-linked from a published version, whose
/// publication synced it (syncing the folders makes the new links durable).
fn sync_tree(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let entries = std::fs::read_dir(path).map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
    for entry in entries {
        let p = entry
            .map_err(|e| Error::io(format!("listing {}", path.display()), e))?
            .path();
        let meta = std::fs::metadata(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
        if meta.is_dir() {
            sync_tree(&p)?
        } else if meta.nlink() == 1 {
            sync_path(&p)?
        }
    }
    sync_path(path)
}
