//! Targets, retargeting and chain work, in 256-bit integer math.

use super::params::ChainParams;
use crate::chain::Hash32;
use primitive_types::{U256, U512};

pub fn to_u256(hash: &Hash32) -> U256 {
    U256::from_big_endian(&hash.0)
}

pub fn from_u256(value: U256) -> Hash32 {
    Hash32(value.to_big_endian())
}

/// Expected number of tickets to find a block: `floor(2^256 / (target + 1))`,
/// saturating at `2^256 - 1` for a zero target.
pub fn block_work(target: &Hash32) -> U256 {
    let t = U512::from(to_u256(target)) + U512::one();
    let work = (U512::one() << 256) / t;
    U256::try_from(work).unwrap_or(U256::MAX)
}

/// When `height` starts a retarget period: the first block of the measured
/// span (block 1 at the earliest, since genesis time is not a mining time).
pub fn retarget_first_height(params: &ChainParams, height: u64) -> Option<u64> {
    let window = params.retarget_window;
    if window == 0 || height == 0 || !height.is_multiple_of(window) || height < 3 {
        return None;
    }
    Some(height.saturating_sub(window).max(1))
}

/// The target a block at a retarget height must carry, from its parent's
/// target and the timestamps of the first and last blocks of the span
/// (`first_height` and `height - 1`).
pub fn retarget(
    params: &ChainParams,
    parent_target: &Hash32,
    first_height: u64,
    first_timestamp_ms: u64,
    last_height: u64,
    last_timestamp_ms: u64,
) -> Hash32 {
    let intervals = last_height.saturating_sub(first_height).max(1);
    let expected = params.target_block_ms.saturating_mul(intervals);
    let actual = last_timestamp_ms
        .saturating_sub(first_timestamp_ms)
        .clamp(expected / 4, expected.saturating_mul(4))
        .max(1);
    let scaled = to_u256(parent_target).full_mul(U256::from(actual)) / U512::from(expected);
    let next = U256::try_from(scaled).unwrap_or(U256::MAX).max(U256::one());
    from_u256(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_of_max_target_is_one() {
        assert_eq!(block_work(&Hash32([0xff; 32])), U256::one());
        let mut half = [0u8; 32];
        half[0] = 0x7f;
        half[1..].fill(0xff);
        assert_eq!(block_work(&Hash32(half)), U256::from(2));
    }
}
