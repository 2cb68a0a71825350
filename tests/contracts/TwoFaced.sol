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

/// Test-only: a bidder contract whose receive() emits events with the market's signatures
/// (a payment sent to someone else, a payment deferred) from its own address.
contract ForgingBidder {
    event PayoutSent(
        uint256 indexed requestId, address indexed bidder, uint256 bidId, uint256 acceptedWatts, uint256 amount
    );
    event PaymentDeferred(uint256 indexed requestId, address indexed bidder, uint256 amount);

    IMarket public immutable market;
    uint256 public requestId;

    constructor(IMarket market_) {
        market = market_;
    }

    function bid(uint256 requestId_, uint256[] calldata watts, uint256[] calldata prices) external {
        requestId = requestId_;
        market.submitBids(requestId_, watts, prices);
    }

    receive() external payable {
        uint256 rid = requestId;
        emit PayoutSent(rid, address(this), 0, 1, 1e24);
        emit PaymentDeferred(rid, address(this), 1e24);
    }
}
