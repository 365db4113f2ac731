//! A snapshot's keys in shards that successive snapshots share.

use std::collections::HashMap;
use std::sync::Arc;

use super::decode::Stored;

type Hasher = foldhash::fast::RandomState;

/// A snapshot's entries by key, in shards shared between successive snapshots: applying a
/// change of one key copies one shard (a few dozen pointers for a thousand keys), not the map.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    shards: Vec<Arc<Shard>>,
    pub(super) len: usize,
}

type Shard = HashMap<Arc<str>, Stored, Hasher>;

const SHARD_BITS: u32 = 6;

impl Default for Keys {
    fn default() -> Self {
        Self {
            shards: (0..1 << SHARD_BITS).map(|_| Arc::default()).collect(),
            len: 0,
        }
    }
}

/// The shard of `key`: a quick mix of (at most) three 8-byte words of the key rather than a full
/// hash, because every read computes it before the shard's map hashes the key anyway. Dotted
/// keys differ mostly in their middle and end, which the words cover.
#[inline]
fn shard_of(key: &str) -> usize {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes = key.as_bytes();
    let len = bytes.len();
    let word = |at: usize| {
        let mut word = [0_u8; 8];
        let end = (at + 8).min(len);
        if let (Some(to), Some(from)) = (word.get_mut(..end - at), bytes.get(at..end)) {
            to.copy_from_slice(from);
        }
        u64::from_le_bytes(word)
    };
    let words = if len <= 8 {
        word(0)
    } else {
        word(0) ^ word(len / 2 - 4).rotate_left(21) ^ word(len - 8).rotate_left(42)
    };
    let mix = (words ^ u64::try_from(len).unwrap_or(u64::MAX)).wrapping_mul(K);
    usize::try_from(mix >> (64 - SHARD_BITS)).unwrap_or(0)
}

impl Keys {
    #[inline]
    pub(super) fn get(&self, key: &str) -> Option<&Stored> {
        self.shards.get(shard_of(key))?.get(key)
    }

    pub(super) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; copies the key's shard first if another snapshot shares it.
    pub(super) fn insert(&mut self, key: Arc<str>, stored: Stored) {
        if let Some(shard) = self.shards.get_mut(shard_of(&key))
            && Arc::make_mut(shard).insert(key, stored).is_none()
        {
            self.len += 1;
        }
    }

    /// Removes `key`; copies its shard first if another snapshot shares it. True if it was there.
    pub(super) fn remove(&mut self, key: &str) -> bool {
        let Some(shard) = self.shards.get_mut(shard_of(key)) else {
            return false;
        };
        if !shard.contains_key(key) {
            return false;
        }
        Arc::make_mut(shard).remove(key);
        self.len -= 1;
        true
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Stored> {
        self.shards.iter().flat_map(|shard| shard.values())
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&Arc<str>, &mut Stored)> {
        self.shards
            .iter_mut()
            .flat_map(|shard| Arc::make_mut(shard).iter_mut())
    }
}

impl FromIterator<(Arc<str>, Stored)> for Keys {
    fn from_iter<I: IntoIterator<Item = (Arc<str>, Stored)>>(entries: I) -> Self {
        let mut keys = Self::default();
        for (key, stored) in entries {
            keys.insert(key, stored);
        }
        keys
    }
}
