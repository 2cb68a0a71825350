// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// @title TickBook
/// @notice A request's price-tick book: one aggregate volume per price level, so that
///         selection scans 128 levels and never the bids.
/// @dev    TICKS 48-bit volumes packed five to a slot (26 slots a side, the last one
///         three-fifths used): tick t at slot (t-1)/5, lane (t-1)%5, bits 48*lane ..
///         48*lane+47; bits 240..255 stay zero. Five lanes rather than four make the
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

    /// @dev Both sides of one request's book.
    struct Book {
        uint256[SLOTS] placed;
        uint256[SLOTS] cancelled;
    }

    /// @dev Watts placed at `tick` and not withdrawn.
    function liveAt(Book storage b, uint256 tick) internal view returns (uint256) {
        uint256 slot = (tick - 1) / LANES;
        uint256 shift = ((tick - 1) % LANES) * LANE_BITS;
        return ((b.placed[slot] >> shift) & LANE_MASK) - ((b.cancelled[slot] >> shift) & LANE_MASK);
    }

    /// @dev Append `w` watts to `tick`'s queue; returns the queue position they start at.
    ///      The caller bounds the level (a lane never carries into the next one).
    function place(Book storage b, uint256 tick, uint256 w) internal returns (uint256 pos) {
        uint256 slot = (tick - 1) / LANES;
        uint256 shift = ((tick - 1) % LANES) * LANE_BITS;
        uint256 word = b.placed[slot];
        pos = (word >> shift) & LANE_MASK;
        b.placed[slot] = word + (w << shift);
    }

    /// @dev Record `w` watts withdrawn at `tick`.
    function cancel(Book storage b, uint256 tick, uint256 w) internal {
        b.cancelled[(tick - 1) / LANES] += w << (((tick - 1) % LANES) * LANE_BITS);
    }
}
