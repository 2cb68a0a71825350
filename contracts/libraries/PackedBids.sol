// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// @title PackedBids
/// @notice Named accessors for one bid packed into 82 bits, so no caller shifts by hand.
/// @dev    bits  0..23  watts           (uint24, > 0: at most MAX_WATTS)
///         bits 24..31  price tick      (1..TICKS)
///         bits 32..79  queue position  (uint48: watts placed at this tick before the bid)
///         bit  80      cancelled;  bit 81 claimed
///         A level takes 2^48 - 1 W of placements, withdrawn ones included: at most 2^24 - 1 W
///         a bid, filling one takes over 2^24 bids (docs/security.md, F-8).
library PackedBids {
    /// @dev Width of one packed bid.
    uint256 internal constant BITS = 82;
    /// @dev Mask of one packed bid.
    uint256 internal constant MASK = (1 << 82) - 1;
    /// @dev Flag: the bid was withdrawn.
    uint256 internal constant CANCELLED = 1 << 80;
    /// @dev Flag: the bid's payout was credited (or it was settled with nothing).
    uint256 internal constant CLAIMED = 1 << 81;

    /// @dev Largest bid, in W (16.7 MW).
    uint256 internal constant MAX_WATTS = type(uint24).max;
    /// @dev Largest queue position plus watts: the capacity of one price level.
    uint256 internal constant MAX_LEVEL = type(uint48).max;

    uint256 private constant _TICK_SHIFT = 24;
    uint256 private constant _POS_SHIFT = 32;

    /// @dev A new bid of `w` watts at `tick`, `pos` watts behind the start of its level.
    function pack(uint256 w, uint256 tick_, uint256 pos) internal pure returns (uint256) {
        return w | (tick_ << _TICK_SHIFT) | (pos << _POS_SHIFT);
    }

    /// @dev Offered watts.
    function watts(uint256 bid) internal pure returns (uint256) {
        return bid & type(uint24).max;
    }

    /// @dev Price level, 1..TICKS.
    function tick(uint256 bid) internal pure returns (uint256) {
        return (bid >> _TICK_SHIFT) & 0xff;
    }

    /// @dev Watts placed at the bid's level before it.
    function queuePos(uint256 bid) internal pure returns (uint256) {
        return (bid >> _POS_SHIFT) & type(uint48).max;
    }

    /// @dev Whether the bid was withdrawn.
    function isCancelled(uint256 bid) internal pure returns (bool) {
        return bid & CANCELLED != 0;
    }

    /// @dev Whether the bid was claimed.
    function isClaimed(uint256 bid) internal pure returns (bool) {
        return bid & CLAIMED != 0;
    }
}
