// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// @title TickBook
/// @notice A request's price-tick book: one aggregate volume per price level, so that
///         selection scans 128 levels and never the bids.
/// @dev    TICKS uint64 volumes packed four to a slot, tick t at slot (t-1)/4, lane
///         (t-1)%4. `placed` only grows (it defines queue positions); `cancelled` holds
///         the volume withdrawn again. Live volume = placed - cancelled.
library TickBook {
    /// @dev Price levels per book.
    uint256 internal constant TICKS = 128;
    /// @dev Levels per storage slot.
    uint256 internal constant LANES = 4;
    /// @dev Storage slots per side of the book.
    uint256 internal constant SLOTS = TICKS / LANES;

    /// @dev Both sides of one request's book.
    struct Book {
        uint256[SLOTS] placed;
        uint256[SLOTS] cancelled;
    }

    /// @dev Volume in lane `lane` (0..3) of a packed slot word.
    function lane(uint256 word, uint256 lane_) internal pure returns (uint256) {
        return (word >> (lane_ * 64)) & type(uint64).max;
    }

    /// @dev Watts ever placed at `tick`: the queue position of the next bid there.
    function placedAt(Book storage b, uint256 tick) internal view returns (uint256) {
        return lane(b.placed[(tick - 1) / LANES], (tick - 1) % LANES);
    }

    /// @dev Watts placed at `tick` and not withdrawn.
    function liveAt(Book storage b, uint256 tick) internal view returns (uint256) {
        uint256 slot = (tick - 1) / LANES;
        uint256 l = (tick - 1) % LANES;
        return lane(b.placed[slot], l) - lane(b.cancelled[slot], l);
    }

    /// @dev Append `w` watts to `tick`'s queue; returns the queue position they start at.
    ///      The caller bounds the level (a lane never carries into the next one).
    function place(Book storage b, uint256 tick, uint256 w) internal returns (uint256 pos) {
        uint256 slot = (tick - 1) / LANES;
        uint256 shift = ((tick - 1) % LANES) * 64;
        uint256 word = b.placed[slot];
        pos = (word >> shift) & type(uint64).max;
        b.placed[slot] = word + (w << shift);
    }

    /// @dev Record `w` watts withdrawn at `tick`.
    function cancel(Book storage b, uint256 tick, uint256 w) internal {
        b.cancelled[(tick - 1) / LANES] += w << (((tick - 1) % LANES) * 64);
    }
}
