//! The `tagged_items_dangling` anomaly: tagged items on OCS's `chat` app
//! (a chat or a chat message) whose tag is gone, or whose object is neither
//! a message of the snapshot nor an existing chat.
//!
//! The other anomalies are SQL (`etl/sql/anomalies.sql`). This one asks,
//! for each of the millions of tagged items, whether its object is among
//! the millions of message ids; as a hash join that was most of the
//! anomaly step (a hash table of every item, probed by every message id).
//! Message and chat ids are Postgres serials, dense over their range, so a
//! bitmap over that range answers the same question with one bit per id.

use std::collections::HashSet;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use ocs_dash_engine::storage::VersionDir;

use crate::error::Result;
use crate::transform::int64_values;

/// The anomaly's name in a run's summary and manifest.
pub const KIND: &str = "tagged_items_dangling";

/// A set of ids: a bitmap over their range when it is at most 64 times
/// their number (the bitmap then takes no more memory than the ids
/// themselves) or at most 2^27 ids wide (16 MiB: a few hundred chats or
/// tagged items among millions, where hashing every row looked up cost
/// more), a hash set otherwise.
#[derive(Debug)]
pub enum IdSet {
    Dense { base: i64, bits: Vec<u64> },
    Sparse(HashSet<i64>),
}

impl IdSet {
    pub fn new(ids: &[i64]) -> IdSet {
        let mut set = match ids.iter().min() {
            Some(&min) => IdSet::Dense {
                base: min,
                bits: Vec::new(),
            },
            None => IdSet::Sparse(HashSet::new()),
        };
        set.extend(ids);
        set
    }

    /// The ids `sql` returns (one Int64 column; NULLs are skipped).
    pub async fn read(ctx: &SessionContext, sql: &str) -> Result<IdSet> {
        Ok(IdSet::new(&int64_values(ctx, sql).await?))
    }

    pub fn is_empty(&self) -> bool {
        match self {
            IdSet::Dense { bits, .. } => bits.iter().all(|&w| w == 0),
            IdSet::Sparse(set) => set.is_empty(),
        }
    }

    pub fn contains(&self, id: i64) -> bool {
        match self {
            IdSet::Dense { base, bits } => {
                if id < *base {
                    return false;
                }
                let at = id.abs_diff(*base);
                usize::try_from(at / 64)
                    .ok()
                    .and_then(|w| bits.get(w))
                    .is_some_and(|w| w & (1 << (at % 64)) != 0)
            }
            IdSet::Sparse(set) => set.contains(&id),
        }
    }
}

/// The object, at the root of a version's folder, holding the version's
/// message ids (a dense [`IdSet`], see [`IdSet::encode`]) for the next
/// incremental run, which would otherwise read every id of the previous
/// snapshot's turns and other messages again to build the same set.
pub const MESSAGE_IDS: &str = "_message_ids.bits";

/// The first bytes of [`MESSAGE_IDS`].
const MAGIC: &[u8; 8] = b"OCSIDS01";

impl IdSet {
    /// Adds `ids`. A dense set grows to take them in, unless its range
    /// would then pass the bounds of [`IdSet::new`]: the set turns sparse.
    pub fn extend(&mut self, ids: &[i64]) {
        let (Some(&lo), Some(&hi)) = (ids.iter().min(), ids.iter().max()) else {
            return;
        };
        if let IdSet::Dense { base, bits } = &*self {
            // The lowest id the grown bitmap can start at, its words aligned
            // with the present ones.
            let first = (lo as i128 - 63).min(*base as i128);
            let last = (hi as i128).max(*base as i128 + 64 * bits.len() as i128 - 1);
            let span = (last - first + 1) as u128;
            if first < i64::MIN as i128 || span > (64 * (self.len() + ids.len()) as u128).max(1 << 27) {
                *self = IdSet::Sparse(self.iter().collect());
            }
        }
        match self {
            IdSet::Sparse(set) => set.extend(ids.iter().copied()),
            IdSet::Dense { base, bits } => {
                if lo < *base {
                    let front = (*base as i128 - lo as i128 + 63).div_euclid(64) as usize;
                    bits.splice(0..0, std::iter::repeat_n(0, front));
                    *base -= 64 * front as i64;
                }
                let last_word = (hi.abs_diff(*base) / 64) as usize;
                if last_word >= bits.len() {
                    bits.resize(last_word + 1, 0);
                }
                for &id in ids {
                    let at = id.abs_diff(*base) as usize;
                    bits[at / 64] |= 1 << (at % 64);
                }
            }
        }
    }

    /// Takes `id` out.
    pub fn remove(&mut self, id: i64) {
        match self {
            IdSet::Dense { base, bits } => {
                if id >= *base {
                    let at = id.abs_diff(*base);
                    if let Some(w) = usize::try_from(at / 64).ok().and_then(|w| bits.get_mut(w)) {
                        *w &= !(1 << (at % 64));
                    }
                }
            }
            IdSet::Sparse(set) => {
                set.remove(&id);
            }
        }
    }

    /// Whether the set may hold an id in `lo..=hi`: exact for a dense set;
    /// for a sparse one, `true` unless it is small enough to look through.
    pub fn any_in(&self, lo: i64, hi: i64) -> bool {
        match self {
            IdSet::Dense { base, bits } => {
                let (lo, hi) = (lo.max(*base), hi.min(base.saturating_add(64 * bits.len() as i64 - 1)));
                if lo > hi {
                    return false;
                }
                let (from, to) = (lo.abs_diff(*base) as usize, hi.abs_diff(*base) as usize);
                (from / 64..=to / 64).any(|w| {
                    let mut word = bits[w];
                    if w == from / 64 {
                        word &= u64::MAX << (from % 64);
                    }
                    if w == to / 64 {
                        word &= u64::MAX >> (63 - to % 64);
                    }
                    word != 0
                })
            }
            IdSet::Sparse(set) => set.len() > 1 << 12 || set.iter().any(|id| (lo..=hi).contains(id)),
        }
    }

    /// How many ids the set holds.
    pub fn len(&self) -> usize {
        match self {
            IdSet::Dense { bits, .. } => bits.iter().map(|w| w.count_ones() as usize).sum(),
            IdSet::Sparse(set) => set.len(),
        }
    }

    /// The ids, in no particular order.
    fn iter(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        match self {
            IdSet::Dense { base, bits } => Box::new(bits.iter().enumerate().flat_map(move |(w, &word)| {
                (0..64)
                    .filter(move |b| word & (1 << b) != 0)
                    .map(move |b| base + 64 * w as i64 + b)
            })),
            IdSet::Sparse(set) => Box::new(set.iter().copied()),
        }
    }

    /// The set as bytes: [`MAGIC`], the base id, then the bitmap's words,
    /// all little-endian. `None` for a sparse set, which is not stored.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let IdSet::Dense { base, bits } = self else {
            return None;
        };
        let mut out = Vec::with_capacity(16 + 8 * bits.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&base.to_le_bytes());
        for w in bits {
            out.extend_from_slice(&w.to_le_bytes());
        }
        Some(out)
    }

    /// The set [`IdSet::encode`] wrote, if `bytes` are such a set.
    pub fn decode(bytes: &[u8]) -> Option<IdSet> {
        let rest = bytes.strip_prefix(MAGIC)?;
        if rest.len() < 8 || rest.len() % 8 != 0 {
            return None;
        }
        let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8 bytes"));
        let mut words = rest.chunks_exact(8);
        let base = word(words.next()?) as i64;
        let bits: Vec<u64> = words.map(word).collect();
        base.checked_add(64 * bits.len() as i64)?;
        Some(IdSet::Dense { base, bits })
    }

    /// How many ids the set holds and their sum.
    pub fn count_and_sum(&self) -> (u64, i128) {
        self.iter().fold((0, 0), |(n, sum), id| (n + 1, sum + id as i128))
    }
}

/// Which messages exist: every message id of the new snapshot.
#[derive(Debug)]
pub struct Messages(IdSet);

impl Messages {
    /// The ids of `sql`, a query returning one column of message ids.
    pub async fn read(ctx: &SessionContext, sql: &str) -> Result<Self> {
        Ok(Messages(IdSet::read(ctx, sql).await?))
    }

    /// An incremental run's: the previous snapshot's ids `prev`, less those
    /// of `removed` (its changed chats' messages), plus those of `added`
    /// (the messages derived again).
    pub async fn patched(ctx: &SessionContext, mut prev: IdSet, removed: &str, added: &str) -> Result<Self> {
        for id in int64_values(ctx, removed).await? {
            prev.remove(id);
        }
        prev.extend(&int64_values(ctx, added).await?);
        Ok(Messages(prev))
    }

    /// Stores the ids in `version` as [`MESSAGE_IDS`] for the next
    /// incremental run (nothing for a sparse set: that run then reads the
    /// ids from the snapshot's tables).
    pub async fn save(&self, version: &VersionDir) -> Result<()> {
        if let Some(bytes) = self.0.encode() {
            version.put(MESSAGE_IDS, bytes).await?;
        }
        Ok(())
    }

    fn contains(&self, id: i64) -> bool {
        self.0.contains(id)
    }
}

/// The message ids a previous version stored in its folder `dir`, if they
/// are there and their count and sum are the manifest's (`count`, `sum`):
/// a set that disagrees with the manifest is not used.
pub fn stored(dir: &Path, count: u64, sum: i128) -> Option<IdSet> {
    let set = IdSet::decode(&std::fs::read(dir.join(MESSAGE_IDS)).ok()?)?;
    (set.count_and_sum() == (count, sum)).then_some(set)
}

/// Counts the dangling tagged items (see the module docs) among
/// `annotations_customtaggeditem`, with the source tables `annotations_tag`,
/// `django_content_type` and `chat_chat` registered in `ctx`.
pub async fn count(ctx: &SessionContext, messages: &Messages) -> Result<u64> {
    let content_types = |model: &str| format!("SELECT id FROM django_content_type WHERE app_label = 'chat'{model}");
    let on_messages = IdSet::read(ctx, &content_types(" AND model = 'chatmessage'")).await?;
    let on_chats = IdSet::read(ctx, &content_types(" AND model = 'chat'")).await?;
    let on_app = IdSet::read(ctx, &content_types("")).await?;
    let tags = IdSet::read(ctx, "SELECT id FROM annotations_tag").await?;
    let chats = IdSet::read(ctx, "SELECT id FROM chat_chat").await?;
    let mut stream = ctx
        .sql("SELECT content_type_id, tag_id, object_id FROM annotations_customtaggeditem")
        .await?
        .execute_stream()
        .await?;
    let mut dangling = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let column = |i: usize| batch.column(i).as_primitive::<Int64Type>();
        let (kind, tag, object): (&Int64Array, &Int64Array, &Int64Array) = (column(0), column(1), column(2));
        for i in 0..batch.num_rows() {
            if kind.is_null(i) {
                continue;
            }
            let kind = kind.value(i);
            let found = object.is_valid(i).then(|| object.value(i));
            let exists = if on_messages.contains(kind) {
                found.is_some_and(|id| messages.contains(id))
            } else if on_chats.contains(kind) {
                found.is_some_and(|id| chats.contains(id))
            } else if on_app.contains(kind) {
                // Another model of the chat app: no object it names exists.
                false
            } else {
                // Not a tag of the chat app: not this anomaly.
                continue;
            };
            let tagged = tag.is_valid(i) && tags.contains(tag.value(i));
            dangling += u64::from(!tagged || !exists);
        }
    }
    Ok(dangling)
}

#[cfg(test)]
mod tests {
    use super::IdSet;

    #[test]
    fn dense_and_sparse_sets_hold_exactly_their_ids() {
        let dense = IdSet::new(&[5, 6, 7, 9, 200]);
        assert!(matches!(dense, IdSet::Dense { .. }));
        let sparse = IdSet::new(&[-3, 1 << 40, i64::MAX, i64::MIN]);
        assert!(matches!(sparse, IdSet::Sparse(_)));
        for (set, members) in [
            (&dense, &[5, 6, 7, 9, 200][..]),
            (&sparse, &[-3, 1 << 40, i64::MAX, i64::MIN][..]),
        ] {
            for id in [i64::MIN, -3, 0, 4, 5, 6, 7, 8, 9, 10, 199, 200, 201, 1 << 40, i64::MAX] {
                assert_eq!(set.contains(id), members.contains(&id), "{id} in {set:?}");
            }
        }
        assert!(!IdSet::new(&[]).contains(0));
        for (lo, hi) in [
            (i64::MIN, 4),
            (6, 6),
            (8, 8),
            (10, 199),
            (201, i64::MAX),
            (0, 300),
            (-3, -3),
        ] {
            let want = [5, 6, 7, 9, 200].iter().any(|id| (lo..=hi).contains(id));
            assert_eq!(dense.any_in(lo, hi), want, "{lo}..={hi} dense");
            let want = [-3, 1 << 40, i64::MAX, i64::MIN]
                .iter()
                .any(|id| (lo..=hi).contains(id));
            assert_eq!(sparse.any_in(lo, hi), want, "{lo}..={hi} sparse");
        }
        let wide = IdSet::new(&[64, 127, 128, 1000]);
        assert!(wide.any_in(127, 127) && wide.any_in(100, 130) && !wide.any_in(129, 999) && !wide.any_in(65, 126));
        assert!(!IdSet::new(&[]).any_in(i64::MIN, i64::MAX));
    }

    /// The ids of `set`, sorted.
    fn sorted(set: &IdSet) -> Vec<i64> {
        let mut ids: Vec<i64> = set.iter().collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_dense_set_grows_both_ways_and_turns_sparse_past_its_bounds() {
        let mut set = IdSet::new(&[1000, 1001, 1100]);
        set.remove(1001);
        set.remove(5);
        set.extend(&[990, 1200, 7, 1000]);
        assert!(matches!(set, IdSet::Dense { .. }));
        assert_eq!(sorted(&set), [7, 990, 1000, 1100, 1200]);
        for id in [6, 8, 989, 1001, 1099, 1199, 1201, 2000] {
            assert!(!set.contains(id), "{id}");
        }
        assert_eq!(set.len(), 5);
        assert_eq!(set.count_and_sum(), (5, 7 + 990 + 1000 + 1100 + 1200));
        set.extend(&[1 << 40]);
        assert!(matches!(set, IdSet::Sparse(_)));
        assert_eq!(sorted(&set), [7, 990, 1000, 1100, 1200, 1 << 40]);
        let mut low = IdSet::new(&[i64::MIN + 100]);
        low.extend(&[i64::MIN]);
        assert_eq!(sorted(&low), [i64::MIN, i64::MIN + 100]);
        let mut emptied = IdSet::new(&[3]);
        emptied.remove(3);
        assert!(emptied.is_empty() && IdSet::new(&[]).is_empty() && !set.is_empty());
    }

    #[test]
    fn a_dense_set_survives_its_encoding_and_bad_bytes_are_refused() {
        let set = IdSet::new(&[-70, -3, 0, 64, 65, 500]);
        let bytes = set.encode().unwrap();
        let back = IdSet::decode(&bytes).unwrap();
        assert_eq!(sorted(&back), [-70, -3, 0, 64, 65, 500]);
        assert!(IdSet::new(&[0, i64::MAX]).encode().is_none());
        assert!(IdSet::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(IdSet::decode(&bytes[1..]).is_none());
        assert!(IdSet::decode(b"OCSIDS01").is_none());

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(super::MESSAGE_IDS), &bytes).unwrap();
        let sum = -70 - 3 + 64 + 65 + 500;
        assert!(super::stored(dir.path(), 6, sum).is_some());
        assert!(super::stored(dir.path(), 5, sum).is_none());
        assert!(super::stored(dir.path(), 6, sum + 1).is_none());
        assert!(super::stored(&dir.path().join("gone"), 6, sum).is_none());
    }
}
