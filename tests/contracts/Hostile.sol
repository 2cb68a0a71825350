// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// Test-only participants that misbehave on purpose. Never deployed outside tests.

interface IDemandReduction {
    function submitBids(uint256 requestId, uint256[] calldata watts, uint256[] calldata prices)
        external
        returns (uint256);
    function withdraw() external;
    function claimAndPay(uint256 requestId, uint256[] calldata bidIds) external;
    function withdrawTo(address payable to) external;
    function owed(address account) external view returns (uint256);
}

/// A bidder contract with a configurable way of receiving ether.
contract HostileBidder {
    enum Mode {
        Accept, // a well-behaved contract bidder
        Revert, // reverts on receive
        BurnGas, // consumes all gas on receive
        Reenter, // re-enters withdraw on receive and records what happened
        ReenterPay // re-enters claimAndPay on receive (with the gas a pushed payout gets)
    }

    IDemandReduction public immutable market;
    Mode public mode;
    uint256 public reentryAttempts;
    uint256 public lastRequest;
    bytes public lastReentryError;

    constructor(IDemandReduction market_, Mode mode_) {
        market = market_;
        mode = mode_;
    }

    function setMode(Mode mode_) external {
        mode = mode_;
    }

    function bid(uint256 requestId, uint256[] calldata watts, uint256[] calldata prices) external {
        lastRequest = requestId;
        market.submitBids(requestId, watts, prices);
    }

    function pull() external {
        market.withdraw();
    }

    function pullTo(address payable to) external {
        market.withdrawTo(to);
    }

    receive() external payable {
        if (mode == Mode.Revert) revert("no ether, thanks");
        if (mode == Mode.BurnGas) {
            while (true) {}
        }
        if (mode == Mode.ReenterPay) {
            // Pay itself again: its bid is already marked claimed, so this pays nothing.
            uint256[] memory ids = new uint256[](1);
            market.claimAndPay(lastRequest, ids);
        }
        if (mode == Mode.Reenter && reentryAttempts == 0) {
            reentryAttempts = 1;
            try market.withdraw() {
                reentryAttempts = 2; // would mean a second payout: the test fails on it
            } catch (bytes memory reason) {
                lastReentryError = reason;
            }
        }
    }
}
