// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {IDemandReduction} from "./IDemandReduction.sol";

/// @title IBidReader
/// @notice The per-item views of `DemandReduction` that its lens pages over.
interface IBidReader {
    /// @notice Everything about request `requestId`.
    function getRequest(uint256 requestId) external view returns (IDemandReduction.RequestView memory);
    /// @notice Bidder and number of bids of submission `index` of `requestId`.
    function submissionAt(uint256 requestId, uint256 index) external view returns (address bidder, uint256 bidCount);
    /// @notice The bids of submission `index` of `requestId` with their outcomes.
    function submissionBids(uint256 requestId, uint256 index)
        external
        view
        returns (IDemandReduction.BidView[] memory);
}
