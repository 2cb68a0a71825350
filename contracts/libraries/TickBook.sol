// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// @title TickBook
/// @notice A request's price-tick book: one aggregate volume per price level, so that
///         selection scans 128 levels and never the bids.
/// @dev    TICKS 48-bit volumes packed five to a slot (26 slots a side, the last one
///         three-fifths used): tick t at slot (t-1)/5, lane (t-1)%5, bits 48*lane ..
///         48*lane+47; bits 240..254 stay zero, and bit 255 is `SPONSORED`, the sentinel
///         `sponsor` writes into an empty placed slot so that its first bidder rewrites a
///         non-zero slot (5,000 gas) instead of writing a zero one (22,100): never a volume,
///         every reader masks it off (`VOLUME_MASK`). Five lanes rather than four make the
///         worst selection read 26 cold slots instead of 32, and put more bidders in a
///         slot someone already wrote. `placed` only grows (it defines queue positions);
///         `cancelled` holds the volume withdrawn again. Live volume = placed - cancelled.
///         A level never exceeds 2^48 - 1 W (PackedBids.MAX_LEVEL), so no lane carries.
///         DemandReduction._clear's assembly scan spells these out (5 lanes of 48 bits,
///         26 slots a side, `cancelled` 26 slots after `placed`): change them together.
library TickBook {
    /// @dev Price levels per book.
    uint256 internal constant TICKS = 128;
    /// @dev Levels per storage slot.
    uint256 internal constant LANES = 5;
    /// @dev Bits of one level's volume.
    uint256 internal constant LANE_BITS = 48;
    /// @dev Mask of one lane.
    uint256 internal constant LANE_MASK = (1 << LANE_BITS) - 1;
    /// @dev Storage slots per side of the book.
    uint256 internal constant SLOTS = (TICKS + LANES - 1) / LANES;

    /// @dev The sentinel of a sponsored placed slot (bit 255: above every lane; a lane never
    ///      carries past 2^48 - 1, and a transient carry of `place` reaches bit 240 at most).
    uint256 internal constant SPONSORED = 0x8000000000000000000000000000000000000000000000000000000000000000;
    /// @dev The five lanes of a slot: a word without the sentinel.
    uint256 internal constant VOLUME_MASK = 0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff; // 240 bits

    /// @dev Both sides of one request's book.
    struct Book {
        uint256[SLOTS] placed;
        uint256[SLOTS] cancelled;
    }

    /// @dev Slot `s` of the placed side and, lane by lane, its live volume: placed minus
    ///      cancelled, read only if `withdrawn` (cancelled <= placed in every lane, so one
    ///      subtraction borrows across no lane). `s` < SLOTS, checked by the caller.
    function words(Book storage b, uint256 s, bool withdrawn) internal view returns (uint256 placed, uint256 live) {
        assembly ("memory-safe") {
            placed := sload(add(b.slot, s)) // callers take it lane by lane: the sentinel is never read
            live := placed
            if withdrawn { live := sub(placed, sload(add(b.slot, add(26, s)))) }
        }
    }

    /// @dev Watts placed at `tick` and not withdrawn.
    function liveAt(Book storage b, uint256 tick) internal view returns (uint256) {
        (, uint256 live) = words(b, (tick - 1) / LANES, true);
        return (live >> (((tick - 1) % LANES) * LANE_BITS)) & LANE_MASK;
    }

    /// @dev Append `w` watts to `tick` (1..TICKS, checked by the caller)'s queue; returns the
    ///      queue position they start at. The caller bounds the level (a lane never carries
    ///      into the next one: it reverts if the level would pass PackedBids.MAX_LEVEL).
    function place(Book storage b, uint256 tick, uint256 w) internal returns (uint256 pos) {
        assembly ("memory-safe") {
            let key := add(b.slot, div(sub(tick, 1), 5))
            let shift := mul(mod(sub(tick, 1), 5), 48)
            let word := sload(key)
            pos := and(shr(shift, word), 0xffffffffffff)
            sstore(key, add(word, shl(shift, w)))
        }
    }

    /// @dev Write the `SPONSORED` sentinel into every placed slot of `slotMask` (bit s: slot
    ///      s, s < SLOTS, checked by the caller) that is still zero. A slot with volume, or one
    ///      sponsored already, is left as it is (a cold read, 2,100 gas).
    function sponsor(Book storage b, uint256 slotMask) internal {
        assembly ("memory-safe") {
            for { let s := 0 } slotMask { s := add(s, 1) } {
                if and(slotMask, 1) {
                    let key := add(b.slot, s)
                    if iszero(sload(key)) { sstore(key, SPONSORED) }
                }
                slotMask := shr(1, slotMask)
            }
        }
    }

    /// @dev Record `w` watts withdrawn at `tick` (1..TICKS; at most the watts placed there).
    function cancel(Book storage b, uint256 tick, uint256 w) internal {
        assembly ("memory-safe") {
            let key := add(add(b.slot, 26), div(sub(tick, 1), 5))
            sstore(key, add(sload(key), shl(mul(mod(sub(tick, 1), 5), 48), w)))
        }
    }
}
