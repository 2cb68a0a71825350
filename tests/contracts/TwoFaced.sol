// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// Test-only: a bidder contract that accepts ether while a node estimates gas (gas price 0)
/// and burns all it is given when the transaction is mined. Never deployed outside tests.

interface IMarket {
    function submitBids(uint256 requestId, uint256[] calldata watts, uint256[] calldata prices)
        external
        returns (uint256);
}

contract TwoFacedBidder {
    IMarket public immutable market;

    constructor(IMarket market_) {
        market = market_;
    }

    function bid(uint256 requestId, uint256[] calldata watts, uint256[] calldata prices) external {
        market.submitBids(requestId, watts, prices);
    }

    receive() external payable {
        if (tx.gasprice != 0) {
            assembly {
                invalid()
            }
        }
    }
}
