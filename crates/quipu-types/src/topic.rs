//! Kafka's rules for topic names and its default partitioner, shared by
//! the Kafka door (which serves the store as topics) and the publisher
//! (which produces integration events to a real Kafka): both must agree
//! with every Kafka client on where a key goes.

/// Longest topic name Kafka allows.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Checks Kafka's own rules for a topic name: 1 to 249 characters of
/// `A-Z a-z 0-9 . _ -`, and not `.` or `..`.
///
/// # Errors
/// What is wrong with the name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!("a topic name has 1 to {TOPIC_NAME_BYTES_MAX} characters"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("{c:?} is not allowed in Kafka topic names"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not allowed as a Kafka topic name"));
    }
    Ok(())
}

/// The partition of `key` among `partitions`, as Kafka's default
/// partitioner computes it: `murmur2(key) & 0x7fffffff % partitions`.
#[must_use]
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's murmur2 (32-bit, seed `0x9747b28c`), as its Java client has it.
#[must_use]
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = 0x9747_b28c ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let Ok(word) = <[u8; 4]>::try_from(chunk) else { unreachable!("chunks_exact(4) gives 4 bytes") };
        let mut k = u32::from_le_bytes(word);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if let Some(&third) = tail.get(2) {
        h ^= u32::from(third) << 16;
    }
    if let Some(&second) = tail.get(1) {
        h ^= u32::from(second) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // The values of Kafka's own test of Utils.murmur2.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58_897_971);
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn names_follow_kafkas_rules() {
        assert!(check_name("order_3Av2").is_ok());
        assert!(check_name("quipu.all").is_ok());
        for bad in ["", ".", "..", "order v2", "ordér"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"a".repeat(TOPIC_NAME_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn a_key_stays_in_one_partition_of_the_count() {
        for partitions in [1, 4, 7] {
            let partition = partition_of(b"order-42", partitions);
            assert!((0..partitions).contains(&partition));
            assert_eq!(partition, partition_of(b"order-42", partitions));
        }
    }
}
