// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// @title PackedBids
/// @notice Named accessors for one bid packed into 82 bits, so no caller shifts by hand.
/// @dev    bits  0..31  watts           (uint32, > 0)
///         bits 32..39  price tick      (1..TICKS)
///         bits 40..79  queue position  (uint40: watts placed at this tick before the bid)
///         bit  80      cancelled;  bit 81 claimed
library PackedBids {
    /// @dev Width of one packed bid.
    uint256 internal constant BITS = 82;
    /// @dev Mask of one packed bid.
    uint256 internal constant MASK = (1 << 82) - 1;
    /// @dev Flag: the bid was withdrawn.
    uint256 internal constant CANCELLED = 1 << 80;
    /// @dev Flag: the bid's payout was credited (or it was settled with nothing).
    uint256 internal constant CLAIMED = 1 << 81;

    uint256 private constant _TICK_SHIFT = 32;
    uint256 private constant _POS_SHIFT = 40;

    /// @dev A new bid of `w` watts at `tick`, `pos` watts behind the start of its level.
    function pack(uint256 w, uint256 tick_, uint256 pos) internal pure returns (uint256) {
        return w | (tick_ << _TICK_SHIFT) | (pos << _POS_SHIFT);
    }

    /// @dev Offered watts.
    function watts(uint256 bid) internal pure returns (uint256) {
        return bid & type(uint32).max;
    }

    /// @dev Price level, 1..TICKS.
    function tick(uint256 bid) internal pure returns (uint256) {
        return (bid >> _TICK_SHIFT) & 0xff;
    }

    /// @dev Watts placed at the bid's level before it.
    function queuePos(uint256 bid) internal pure returns (uint256) {
        return (bid >> _POS_SHIFT) & type(uint40).max;
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
