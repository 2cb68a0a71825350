// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// @title LevelProofs
/// @notice How far a price level's queue has been walked and proved: by
///         `proveLevelPrefix` in earlier transactions, then by a selection hint.
/// @dev    Stored in one word: placedBefore (bits 0..47), liveBefore (48..95), nextId (96..).
library LevelProofs {
    /// @dev A proved queue prefix.
    struct Prefix {
        uint256 placedBefore; // watts placed at the level by the proved bids (withdrawn ones included)
        uint256 liveBefore; // of those, the watts not withdrawn
        uint256 nextId; // the lowest bid id the next proof or hint may list
    }

    /// @dev Unpack a stored prefix (all zero: nothing proved yet).
    function decode(uint256 word) internal pure returns (Prefix memory p) {
        p.placedBefore = word & type(uint48).max;
        p.liveBefore = (word >> 48) & type(uint48).max;
        p.nextId = word >> 96;
    }

    /// @dev Pack a prefix for storage.
    function encode(Prefix memory p) internal pure returns (uint256) {
        return p.placedBefore | (p.liveBefore << 48) | (p.nextId << 96);
    }
}
