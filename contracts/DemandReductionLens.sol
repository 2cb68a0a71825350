// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {IBidReader} from "./interfaces/IBidReader.sol";
import {IDemandReduction} from "./interfaces/IDemandReduction.sol";

/// @title DemandReductionLens
/// @notice Read-only paged views over one `DemandReduction`'s bids, kept out of the core
///         so that the core stays small (Liquity's MultiTroveGetter is the model). It holds
///         no state but the market's address and reads only through the market's views,
///         so it can change nothing. The market deploys it in its constructor (`lens()`).
contract DemandReductionLens is IDemandReduction {
    /// @notice The market this lens reads.
    IBidReader public immutable market;

    /// @param market_ The market to read.
    constructor(IBidReader market_) {
        market = market_;
    }

    /// @notice The bids of submissions `start` .. `start + count - 1` of `requestId`
    ///         (clipped to the end), in bid id order. A submission holds 1 to 64 bids.
    /// @param requestId The request to look up.
    /// @param start First submission of the page.
    /// @param count Number of submissions in the page.
    function getBids(uint256 requestId, uint256 start, uint256 count) external view returns (BidView[] memory) {
        return _page(requestId, start, count, address(0));
    }

    /// @notice The bids `consumer` placed in `requestId`, among submissions
    ///         `start` .. `start + count - 1`; pass count = 2^256-1 for all.
    /// @param requestId The request to look up.
    /// @param consumer The bidder.
    /// @param start First submission to scan.
    /// @param count Number of submissions to scan.
    function bidsOf(uint256 requestId, address consumer, uint256 start, uint256 count)
        external
        view
        returns (BidView[] memory)
    {
        if (consumer == address(0)) revert ZeroAddress();
        return _page(requestId, start, count, consumer);
    }

    /// @notice Accepted watts and payout of `consumer` in `requestId`, over all its bids.
    /// @param requestId The request to look up.
    /// @param consumer The bidder.
    function outcomeOf(uint256 requestId, address consumer)
        external
        view
        returns (uint256 acceptedWatts, uint256 payout)
    {
        BidView[] memory mine = _page(requestId, 0, type(uint256).max, consumer);
        for (uint256 i; i < mine.length; ++i) {
            acceptedWatts += mine[i].acceptedWatts;
            payout += mine[i].payout;
        }
    }

    /// @dev The bids of a range of submissions, all of them or those of `consumer`.
    function _page(uint256 requestId, uint256 start, uint256 count, address consumer)
        private
        view
        returns (BidView[] memory page)
    {
        uint256 total = market.getRequest(requestId).submissions; // reverts UnknownRequest
        uint256 end = start >= total ? start : (count > total - start ? total : start + count);
        BidView[][] memory parts = new BidView[][](end - start);
        uint256 found;
        for (uint256 sub = start; sub < end; ++sub) {
            if (consumer != address(0)) {
                (address bidder,) = market.submissionAt(requestId, sub);
                if (bidder != consumer) continue;
            }
            BidView[] memory part = market.submissionBids(requestId, sub);
            parts[sub - start] = part;
            found += part.length;
        }
        page = new BidView[](found);
        found = 0;
        for (uint256 i; i < parts.length; ++i) {
            for (uint256 j; j < parts[i].length; ++j) {
                page[found++] = parts[i][j];
            }
        }
    }
}
