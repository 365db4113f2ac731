//! MurmurHash3 x86 32-bit over two byte strings as one stream, and the rollout bucket.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline]
fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

#[inline]
fn mix_h(h: u32, k: u32) -> u32 {
    (h ^ mix_k(k))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// Mixes the whole 4-byte blocks of `bytes` into `h`; then `h`, the 0 to 3 bytes left as the
/// start of a block, and how many they are.
#[inline]
fn mix_blocks(mut h: u32, bytes: &[u8]) -> (u32, u32, u32) {
    let mut blocks = bytes.chunks_exact(4);
    for block in &mut blocks {
        h = mix_h(
            h,
            u32::from_le_bytes([block[0], block[1], block[2], block[3]]),
        );
    }
    let mut pending: u32 = 0;
    let mut count = 0;
    for &byte in blocks.remainder() {
        pending |= u32::from(byte) << (8 * count);
        count += 1;
    }
    (h, pending, count)
}

/// Mixes in the last, incomplete block (`count` bytes in `pending`) and the input length; the
/// final avalanche.
#[inline]
fn finish(mut h: u32, pending: u32, count: u32, len: usize) -> u32 {
    if count > 0 {
        h ^= mix_k(pending);
    }
    // Input lengths beyond 4 GiB wrap, as in the reference implementation's 32-bit length.
    #[allow(clippy::cast_possible_truncation)]
    let len = len as u32;
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// MurmurHash3 x86 32-bit with seed 0 of `first` followed by `second`, without concatenating them.
///
/// This is the function of the npm `murmurhash` package (2.x, default export) over the UTF-8
/// bytes of `first + second`: `murmurhash("a") = 1009084850`.
///
/// ```
/// assert_eq!(groundwork_flags::murmur3_32_pair(b"a", b""), 1_009_084_850);
/// assert_eq!(groundwork_flags::murmur3_32_pair(b"hel", b"lo"), 613_153_351);
/// ```
pub fn murmur3_32_pair(first: &[u8], second: &[u8]) -> u32 {
    // Up to three bytes of `first` are left; they start a block that `second` completes. Bytes are
    // shifted into place one by one: for the short keys flags hash, that is faster than copying
    // slices of varying length into a buffer.
    let (mut h, mut pending, mut count) = mix_blocks(0, first);
    let mut rest = second;
    if count > 0 {
        while count < 4 {
            let Some((&byte, tail)) = rest.split_first() else {
                break;
            };
            pending |= u32::from(byte) << (8 * count);
            count += 1;
            rest = tail;
        }
        if count == 4 {
            h = mix_h(h, pending);
            count = 0;
        }
    }
    // A fresh start on what is left (`pending` too).
    if count == 0 {
        (h, pending, count) = mix_blocks(h, rest);
    }
    finish(h, pending, count, first.len() + second.len())
}

/// MurmurHash3 x86 32-bit, seed 0, of the concatenation of `parts`, without concatenating them.
///
/// The npm `murmurhash` package's value of `parts.join("")` (as UTF-8): used for the variant
/// point, whose input has three parts.
///
/// ```
/// assert_eq!(groundwork_flags::murmur3_32_parts(&[b"he", b"l", b"lo"]), 613_153_351);
/// ```
pub fn murmur3_32_parts(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0;
    let mut pending: u32 = 0;
    let mut count = 0;
    let mut len: usize = 0;
    for part in parts {
        len += part.len();
        let mut rest: &[u8] = part;
        // Complete a block started by an earlier part, byte by byte.
        while count > 0 {
            let Some((&byte, tail)) = rest.split_first() else {
                break;
            };
            pending |= u32::from(byte) << (8 * count);
            count += 1;
            rest = tail;
            if count == 4 {
                h = mix_h(h, pending);
                count = 0;
            }
        }
        if count > 0 {
            continue;
        }
        // A fresh start on what is left (`pending` too).
        (h, pending, count) = mix_blocks(h, rest);
    }
    finish(h, pending, count, len)
}

/// The separator between tenant id and flag name in the variant point's input.
pub const VARIANT_SEPARATOR: &str = ":";

/// The variant point of a tenant for a flag, `0..100`: which variant a tenant gets.
///
/// `murmurhash(tenantId + ":" + flagName) % 100` (npm `murmurhash` 2.x, as for [`bucket`]). The
/// `:` makes the input differ from the rollout bucket's `tenantId + flagName`, so which tenants a
/// rollout admits and which variant they get are independent. A TypeScript service computes the
/// same with:
///
/// ```ts
/// const point = murmurhash(tenantId + ":" + flag.name) % 100;
/// let upTo = 0;
/// const variant = flag.variants.find((v) => point < (upTo += v.weight));
/// ```
///
/// ```
/// assert_eq!(groundwork_flags::variant_point("tenant-1", "checkout.button"), 58);
/// ```
pub fn variant_point(tenant_id: &str, flag_name: &str) -> u32 {
    murmur3_32_parts(&[
        tenant_id.as_bytes(),
        VARIANT_SEPARATOR.as_bytes(),
        flag_name.as_bytes(),
    ]) % 100
}

/// The rollout bucket of a tenant for a flag, `0..100`.
///
/// `murmurhash(tenantId + flagName) % 100`, exactly as the platform's TypeScript services compute
/// it, so a tenant lands in the same bucket in every service.
///
/// ```
/// assert_eq!(groundwork_flags::bucket("tenant-1", "supplier.realtime.sync"), 13);
/// ```
#[inline]
pub fn bucket(tenant_id: &str, flag_name: &str) -> u32 {
    murmur3_32_pair(tenant_id.as_bytes(), flag_name.as_bytes()) % 100
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(bytes: &[u8]) -> u32 {
        murmur3::murmur3_32(&mut std::io::Cursor::new(bytes), 0)
            .unwrap_or_else(|e| panic!("hashing a slice cannot fail: {e}"))
    }

    #[test]
    fn every_split_of_a_string_hashes_like_the_whole() {
        let text = "tenant-東京-1supplier.realtime.sync🚀";
        let bytes = text.as_bytes();
        let whole = reference(bytes);
        for split in 0..=bytes.len() {
            assert_eq!(
                murmur3_32_pair(&bytes[..split], &bytes[split..]),
                whole,
                "split at {split}"
            );
        }
    }

    #[test]
    fn matches_the_reference_implementation_for_all_short_lengths() {
        let data: Vec<u8> = (0u8..64)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        for len in 0..data.len() {
            for split in [0, len / 2, len] {
                let (a, b) = data[..len].split_at(split);
                assert_eq!(
                    murmur3_32_pair(a, b),
                    reference(&data[..len]),
                    "len {len} split {split}"
                );
            }
        }
    }

    #[test]
    fn parts_hash_like_the_whole_for_every_three_way_split() {
        let text = "tenant-東京-1:supplier.realtime.sync🚀";
        let bytes = text.as_bytes();
        let whole = reference(bytes);
        for first in 0..=bytes.len() {
            for second in first..=bytes.len() {
                assert_eq!(
                    murmur3_32_parts(&[&bytes[..first], &bytes[first..second], &bytes[second..]]),
                    whole,
                    "split at {first} and {second}"
                );
            }
        }
        assert_eq!(murmur3_32_parts(&[]), 0);
    }

    #[test]
    fn known_values_of_the_npm_package() {
        assert_eq!(murmur3_32_pair(b"", b""), 0);
        assert_eq!(murmur3_32_pair(b"a", b""), 1_009_084_850);
        assert_eq!(murmur3_32_pair(b"", b"hello"), 613_153_351);
        assert_eq!(
            murmur3_32_pair(b"tenant-1", b"supplier.realtime.sync"),
            2_091_043_913
        );
    }
}
