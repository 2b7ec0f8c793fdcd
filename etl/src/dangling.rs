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

use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

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
        let (Some(&min), Some(&max)) = (ids.iter().min(), ids.iter().max()) else {
            return IdSet::Sparse(HashSet::new());
        };
        let span = (max as i128 - min as i128 + 1) as u128;
        if span > (64 * ids.len() as u128).max(1 << 27) {
            return IdSet::Sparse(ids.iter().copied().collect());
        }
        let mut bits = vec![0u64; (span as usize).div_ceil(64)];
        for &id in ids {
            let at = id.abs_diff(min) as usize;
            bits[at / 64] |= 1 << (at % 64);
        }
        IdSet::Dense { base: min, bits }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, IdSet::Sparse(set) if set.is_empty())
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

/// Which messages exist: the ids of `base` except those of `removed`, plus
/// those of `added` (an incremental run: the previous snapshot's messages,
/// those of its changed chats, and those derived again).
#[derive(Debug)]
pub struct Messages {
    base: IdSet,
    removed: IdSet,
    added: IdSet,
}

impl Messages {
    /// Each argument is a query returning one column of message ids.
    pub async fn read(ctx: &SessionContext, base: &str, removed: Option<&str>, added: Option<&str>) -> Result<Self> {
        async fn set(ctx: &SessionContext, sql: Option<&str>) -> Result<IdSet> {
            Ok(IdSet::new(&match sql {
                Some(sql) => int64_values(ctx, sql).await?,
                None => Vec::new(),
            }))
        }
        Ok(Messages {
            base: set(ctx, Some(base)).await?,
            removed: set(ctx, removed).await?,
            added: set(ctx, added).await?,
        })
    }

    fn contains(&self, id: i64) -> bool {
        self.added.contains(id) || (self.base.contains(id) && !self.removed.contains(id))
    }
}

/// Counts the dangling tagged items (see the module docs) among
/// `annotations_customtaggeditem`, with the source tables `annotations_tag`,
/// `django_content_type` and `chat_chat` registered in `ctx`.
pub async fn count(ctx: &SessionContext, messages: &Messages) -> Result<u64> {
    let content_types = |model: &str| format!("SELECT id FROM django_content_type WHERE app_label = 'chat'{model}");
    let on_messages = IdSet::new(&int64_values(ctx, &content_types(" AND model = 'chatmessage'")).await?);
    let on_chats = IdSet::new(&int64_values(ctx, &content_types(" AND model = 'chat'")).await?);
    let on_app = IdSet::new(&int64_values(ctx, &content_types("")).await?);
    let tags = IdSet::new(&int64_values(ctx, "SELECT id FROM annotations_tag").await?);
    let chats = IdSet::new(&int64_values(ctx, "SELECT id FROM chat_chat").await?);
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
    }
}
