// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {IDemandReduction} from "../interfaces/IDemandReduction.sol";
import {PackedBids} from "./PackedBids.sol";

/// @title BidStore
/// @notice Where a request's bids live: one submission (a `submitBids` or `revealBids`
///         call) of 1..64 bids per 32 storage keys. Bid id = submission << 6 | index.
/// @dev    Key submission * 32 + 0, the header: bidder (bits 0..159), bid count
///         (bits 160..166) and bid 0 (bits 168..249). Keys submission * 32 + j,
///         j = 1..21, hold bids 3j-2 .. 3j, 82 bits apart. So one bid costs one new
///         slot, five bids three.
library BidStore {
    /// @dev The words of one request, by storage key.
    struct Bids {
        mapping(uint256 => uint256) words;
    }

    /// @dev Bits of a bid id that index into its submission (64 = 2^6 bids per call).
    uint256 internal constant ID_BITS = 6;
    uint256 private constant _KEYS_PER_SUBMISSION = 32;
    uint256 private constant _COUNT_SHIFT = 160;
    uint256 private constant _HEADER_BID_SHIFT = 168;

    /// @dev Id of the first bid of `submission`.
    function firstId(uint256 submission) internal pure returns (uint256) {
        return submission << ID_BITS;
    }

    /// @dev Submission (0-based) that holds `bidId`.
    function submissionOf(uint256 bidId) internal pure returns (uint256) {
        return bidId >> ID_BITS;
    }

    /// @dev Bidder and number of bids of `submission` (zero past the last one).
    function header(Bids storage s, uint256 submission) internal view returns (address bidder, uint256 bidCount) {
        uint256 word = s.words[submission * _KEYS_PER_SUBMISSION];
        return (address(uint160(word)), (word >> _COUNT_SHIFT) & 0x7f);
    }

    /// @dev Number of bids of `submission`.
    function count(Bids storage s, uint256 submission) internal view returns (uint256 n) {
        (, n) = header(s, submission);
    }

    /// @dev Bidder, packed bid, storage key and bit offset of `bidId`; reverts with
    ///      `UnknownBid` unless it is among the first `submissions` submissions.
    function load(Bids storage s, uint256 submissions, uint256 bidId)
        internal
        view
        returns (address bidder, uint256 bid, uint256 key, uint256 shift)
    {
        uint256 submission = bidId >> ID_BITS;
        uint256 index = bidId & ((1 << ID_BITS) - 1);
        if (submission >= submissions) revert IDemandReduction.UnknownBid(bidId);
        key = submission * _KEYS_PER_SUBMISSION;
        uint256 word = s.words[key];
        if (index >= (word >> _COUNT_SHIFT) & 0x7f) revert IDemandReduction.UnknownBid(bidId);
        bidder = address(uint160(word));
        if (index == 0) {
            shift = _HEADER_BID_SHIFT;
            bid = (word >> shift) & PackedBids.MASK;
        } else {
            key += 1 + (index - 1) / 3;
            shift = ((index - 1) % 3) * PackedBids.BITS;
            bid = (s.words[key] >> shift) & PackedBids.MASK;
        }
    }

    /// @dev Set `flag` (PackedBids.CANCELLED or CLAIMED) on the bid at `key`, `shift`.
    function setFlag(Bids storage s, uint256 key, uint256 shift, uint256 flag) internal {
        s.words[key] |= flag << shift;
    }

    /// @dev Start writing `submission`: its first key and header word for `n` bids of `bidder`.
    function open(uint256 submission, address bidder, uint256 n) internal pure returns (uint256 key, uint256 word) {
        unchecked {
            // submission < 2^32 and n <= 64: nothing overflows.
            return (submission * _KEYS_PER_SUBMISSION, uint256(uint160(bidder)) | (n << _COUNT_SHIFT));
        }
    }

    /// @dev Add bid `index` to the submission being written; a full word is stored and the
    ///      next one started. Returns the key and word being filled.
    function append(Bids storage s, uint256 key, uint256 word, uint256 index, uint256 bid)
        internal
        returns (uint256, uint256)
    {
        if (index == 0) return (key, word | (bid << _HEADER_BID_SHIFT));
        unchecked {
            // index in 1..63, key below 2^37: nothing overflows.
            uint256 lane = (index - 1) % 3;
            if (lane == 0) {
                s.words[key++] = word;
                word = 0;
            }
            return (key, word | (bid << (lane * PackedBids.BITS)));
        }
    }

    /// @dev Store the last, partly filled word of a submission.
    function close(Bids storage s, uint256 key, uint256 word) internal {
        s.words[key] = word;
    }
}
