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
    // No height above 0 is a multiple of 0, so a window of 0 never
    // retargets; heights 1 and 2 would measure no interval.
    if height < 3 || !height.is_multiple_of(window) {
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

    fn params(target_block_ms: u64, retarget_window: u64) -> ChainParams {
        let mut params = ChainParams::from_json(include_str!("../../config/regtest.json"))
            .expect("config/regtest.json is a valid chain");
        params.target_block_ms = target_block_ms;
        params.retarget_window = retarget_window;
        params
    }

    /// The target after a span of `intervals` intervals that took `actual_ms`,
    /// from a parent target of 2^200 (room to grow and shrink exactly).
    fn after(params: &ChainParams, intervals: u64, actual_ms: u64) -> U256 {
        let parent = from_u256(U256::one() << 200);
        to_u256(&retarget(
            params,
            &parent,
            1,
            5_000,
            1 + intervals,
            5_000 + actual_ms,
        ))
    }

    #[test]
    fn retarget_scales_the_target_by_the_measured_time() {
        let p = params(1_000, 10);
        let old = U256::one() << 200;
        // Nine intervals, expected 9 s.
        assert_eq!(after(&p, 9, 9_000), old);
        assert_eq!(after(&p, 9, 18_000), old * 2);
        assert_eq!(after(&p, 9, 27_000), old * 3);
        assert_eq!(after(&p, 9, 4_500), old / 2);
        // One millisecond more or less moves the target by 1/9000.
        assert_eq!(after(&p, 9, 9_001), old * 9_001 / 9_000);
        assert_eq!(after(&p, 9, 8_999), old * 8_999 / 9_000);
    }

    #[test]
    fn retarget_eases_at_most_four_times() {
        let p = params(1_000, 10);
        let old = U256::one() << 200;
        assert_eq!(after(&p, 9, 36_000), old * 4, "exactly four times slower");
        assert_eq!(
            after(&p, 9, 36_001),
            old * 4,
            "one millisecond past the clamp"
        );
        assert_eq!(after(&p, 9, 35_999), old * 35_999 / 9_000);
        assert_eq!(after(&p, 9, 90_000), old * 4, "ten times slower");
        assert_eq!(after(&p, 9, u64::MAX - 5_000), old * 4);
    }

    #[test]
    fn retarget_hardens_at_most_four_times() {
        let p = params(1_000, 10);
        let old = U256::one() << 200;
        assert_eq!(after(&p, 9, 2_250), old / 4, "exactly four times faster");
        assert_eq!(
            after(&p, 9, 2_249),
            old / 4,
            "one millisecond past the clamp"
        );
        assert_eq!(after(&p, 9, 2_251), old * 2_251 / 9_000);
        assert_eq!(after(&p, 9, 900), old / 4, "ten times faster");
        assert_eq!(after(&p, 9, 0), old / 4, "all in the same millisecond");
    }

    #[test]
    fn retarget_never_goes_to_zero_or_past_the_largest_target() {
        let p = params(1_000, 10);
        let one = from_u256(U256::one());
        assert_eq!(to_u256(&retarget(&p, &one, 1, 0, 10, 0)), U256::one());
        let max = from_u256(U256::MAX);
        assert_eq!(to_u256(&retarget(&p, &max, 1, 0, 10, 90_000)), U256::MAX);
        // A span of one block counts as one interval.
        let old = U256::one() << 200;
        let parent = from_u256(old);
        assert_eq!(to_u256(&retarget(&p, &parent, 7, 0, 7, 2_000)), old * 2);
    }

    #[test]
    fn retarget_heights_are_the_multiples_of_the_window_from_three() {
        let p = params(1_000, 4);
        let firsts: Vec<Option<u64>> = (0..=13).map(|h| retarget_first_height(&p, h)).collect();
        let mut expected = vec![None; 14];
        expected[4] = Some(1);
        expected[8] = Some(4);
        expected[12] = Some(8);
        assert_eq!(firsts, expected);
        // A window of three: the first period is blocks 1 and 2.
        let p = params(1_000, 3);
        assert_eq!(retarget_first_height(&p, 3), Some(1));
        assert_eq!(retarget_first_height(&p, 6), Some(3));
        // A window of two: height 2 would measure no interval.
        let p = params(1_000, 2);
        assert_eq!(retarget_first_height(&p, 2), None);
        assert_eq!(retarget_first_height(&p, 3), None);
        assert_eq!(retarget_first_height(&p, 4), Some(2));
        // A window of 0 never retargets.
        let p = params(1_000, 0);
        assert!((0..100).all(|h| retarget_first_height(&p, h).is_none()));
    }

    #[test]
    fn work_is_two_to_the_256_over_target_plus_one() {
        assert_eq!(block_work(&from_u256(U256::one() << 255)), U256::one());
        assert_eq!(
            block_work(&from_u256((U256::one() << 254) - 1)),
            U256::from(4)
        );
        assert_eq!(block_work(&from_u256(U256::zero())), U256::MAX);
        assert_eq!(block_work(&from_u256(U256::one())), U256::one() << 255);
    }

    #[test]
    fn work_of_max_target_is_one() {
        assert_eq!(block_work(&Hash32([0xff; 32])), U256::one());
        let mut half = [0u8; 32];
        half[0] = 0x7f;
        half[1..].fill(0xff);
        assert_eq!(block_work(&Hash32(half)), U256::from(2));
    }
}
