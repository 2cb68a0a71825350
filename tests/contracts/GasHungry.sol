// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// Test-only: a contract bidder whose `receive` needs `need` gas (a contract wallet's), to show
/// that no gas limit of `claimAndPay` starves its pushed payout into the pull fallback.

interface IMarket {
    function submitBids(uint256 requestId, uint256[] calldata watts, uint256[] calldata prices)
        external
        returns (uint256);
}

contract GasHungry {
    uint256 public immutable need;

    constructor(uint256 need_) {
        need = need_;
    }

    function bid(IMarket market, uint256 requestId, uint256[] calldata watts, uint256[] calldata prices) external {
        market.submitBids(requestId, watts, prices);
    }

    receive() external payable {
        if (gasleft() < need) revert("starved");
    }
}
