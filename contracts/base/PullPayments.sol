// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {IDemandReduction} from "../interfaces/IDemandReduction.sol";

/// @title PullPayments
/// @notice Money only moves by pull: payouts, refunds and bonds are credited to a
///         balance, and each account withdraws its own (OpenZeppelin 5 dropped its
///         PullPayment; this is the small version).
abstract contract PullPayments is IDemandReduction {
    /// @notice Most gas a pushed payout (`claimAndPay`) forwards to its recipient, on top
    ///         of the 2,300 stipend: enough for a contract wallet's `receive`, too little
    ///         to re-enter anything that writes storage.
    uint256 public constant PAY_GAS = 10_000;

    mapping(address => uint256) private _owed;
    uint256 private _lock = 1;

    modifier nonReentrant() {
        if (_lock != 1) revert Reentrancy();
        _lock = 2;
        _;
        _lock = 1;
    }

    /// @notice Pay the caller everything it is owed (winnings and refunds).
    function withdraw() external {
        _withdraw(payable(msg.sender));
    }

    /// @notice Pay everything the caller is owed to `to`, e.g. when the caller is a
    ///         contract that cannot receive ether.
    /// @param to Recipient of the funds.
    function withdrawTo(address payable to) external {
        if (to == address(0)) revert ZeroAddress();
        _withdraw(to);
    }

    /// @notice Ether `account` can withdraw now, in wei.
    /// @param account The address to look up.
    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    /// @dev Add `amount` wei to what `account` may withdraw.
    function _credit(address account, uint256 amount) internal {
        _owed[account] += amount;
    }

    /// @dev Send `amount` wei of request `requestId` to `to` with at most `PAY_GAS` gas; if
    ///      the call fails, credit it to `to`'s pull balance instead.
    function _pay(uint256 requestId, address to, uint256 amount) internal {
        (bool ok,) = payable(to).call{value: amount, gas: PAY_GAS}("");
        if (ok) {
            emit PaymentSent(requestId, to, amount);
        } else {
            _owed[to] += amount;
            emit PaymentDeferred(requestId, to, amount);
        }
    }

    function _withdraw(address payable to) private nonReentrant {
        uint256 amount = _owed[msg.sender];
        if (amount == 0) revert NothingOwed();
        _owed[msg.sender] = 0;
        emit Withdrawal(msg.sender, to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed();
    }
}
