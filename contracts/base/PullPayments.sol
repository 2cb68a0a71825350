// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IDemandReduction} from "../interfaces/IDemandReduction.sol";

/// @title PullPayments
/// @notice Money only moves by pull: payouts, refunds and bonds are credited to a
///         balance per currency (ether, or an ERC-20 token), and each account withdraws
///         its own (OpenZeppelin 5 dropped its PullPayment; this is the small version).
///         `claimAndPay` pushes payouts with a gas cap and falls back to the balance.
abstract contract PullPayments is IDemandReduction {
    using SafeERC20 for IERC20;

    /// @notice Most gas a pushed ether payout (`claimAndPay`) forwards to its recipient, on
    ///         top of the 2,300 stipend: enough for a contract wallet's `receive`, too little
    ///         to re-enter anything that writes storage.
    uint256 public constant PAY_GAS = 10_000;
    /// @notice Most gas a pushed token payout (`claimAndPay`) gives the token's `transfer`:
    ///         a stablecoin behind a proxy with a blacklist takes about 60,000 for a new holder.
    uint256 public constant TOKEN_PAY_GAS = 100_000;

    /// @dev Gas a pushed payment's call costs before its callee runs (a cold account, a value
    ///      transfer), with room to spare: see `_pay`.
    uint256 private constant _PAY_OVERHEAD = 12_000;

    /// @dev currency (address(0): ether) => account => amount it may withdraw.
    mapping(address => mapping(address => uint256)) private _owed;
    uint256 private _lock = 1;

    modifier nonReentrant() {
        if (_lock != 1) revert Reentrancy();
        _lock = 2;
        _;
        _lock = 1;
    }

    /// @notice Pay the caller all the ether it is owed (winnings, refunds and bonds).
    function withdraw() external {
        _withdraw(address(0), msg.sender);
    }

    /// @notice Pay all the ether the caller is owed to `to`, e.g. when the caller is a
    ///         contract that cannot receive ether.
    /// @param to Recipient of the funds.
    function withdrawTo(address payable to) external {
        if (to == address(0)) revert ZeroAddress();
        _withdraw(address(0), to);
    }

    /// @notice Pay everything the caller is owed in `token` to `to` (address(0): ether).
    ///         A recipient the token refuses (a blacklisted one) names another `to`.
    /// @param token The currency: an ERC-20 token, or address(0) for ether.
    /// @param to Recipient of the funds.
    function withdrawToken(address token, address to) external {
        if (to == address(0)) revert ZeroAddress();
        _withdraw(token, to);
    }

    /// @notice Ether `account` can withdraw now, in wei.
    /// @param account The address to look up.
    function owed(address account) external view returns (uint256) {
        return _owed[address(0)][account];
    }

    /// @notice What `account` can withdraw now in `token` (address(0): ether), in base units.
    /// @param token The currency.
    /// @param account The address to look up.
    function owedToken(address token, address account) external view returns (uint256) {
        return _owed[token][account];
    }

    /// @dev Add `amount` of `token` (address(0): ether) to what `account` may withdraw.
    function _credit(address token, address account, uint256 amount) internal {
        _owed[token][account] += amount;
    }

    /// @dev Send `amount` of `token` (address(0): ether) of request `requestId` to `to` with
    ///      at most `PAY_GAS` (ether) or `TOKEN_PAY_GAS` (token) gas; if that fails (the
    ///      recipient reverts, the token refuses it or returns false), credit it to `to`'s
    ///      pull balance instead.
    function _pay(uint256 requestId, address token, address to, uint256 amount) internal {
        if (_push(token, to, amount)) {
            emit PaymentSent(requestId, to, amount);
        } else {
            _defer(requestId, token, to, amount);
        }
    }

    /// @dev A payment `_push` could not make: credited to `to`'s pull balance.
    function _defer(uint256 requestId, address token, address to, uint256 amount) internal {
        _owed[token][to] += amount;
        emit PaymentDeferred(requestId, to, amount);
    }

    /// @dev Try to send `amount` of `token` (address(0): ether) to `to` with at most `PAY_GAS`
    ///      (ether) or `TOKEN_PAY_GAS` (token) gas; false if it failed (the recipient reverts or
    ///      burns the gas, the token refuses it or returns false). No event, no credit.
    function _push(address token, address to, uint256 amount) internal returns (bool ok) {
        // Whoever calls must let each payment have its whole cap (EIP-150 keeps 1/64 back): with
        // less, a caller could starve a payment into the fallback, and a gas estimate would stop
        // at the limit where payments start to be deferred.
        uint256 cap = token == address(0) ? PAY_GAS : TOKEN_PAY_GAS;
        if (gasleft() < cap + cap / 63 + _PAY_OVERHEAD) revert PaymentGasTooLow();
        if (token == address(0)) {
            (ok,) = payable(to).call{value: amount, gas: PAY_GAS}("");
        } else {
            bytes4 selector = IERC20.transfer.selector;
            assembly ("memory-safe") {
                // Like SafeERC20's trySafeTransfer, with a gas cap and at most 32 bytes copied back.
                let fmp := mload(0x40)
                mstore(0x00, selector)
                mstore(0x04, and(to, shr(96, not(0))))
                mstore(0x24, amount)
                ok := call(TOKEN_PAY_GAS, token, 0, 0x00, 0x44, 0x00, 0x20)
                if iszero(and(ok, and(gt(returndatasize(), 31), eq(mload(0x00), 1)))) {
                    ok := and(ok, and(iszero(returndatasize()), gt(extcodesize(token), 0)))
                }
                mstore(0x40, fmp)
            }
        }
    }

    /// @dev Take `amount` of `token` from the caller into escrow; revert `FeeOnTransfer`
    ///      unless the contract's balance grew by exactly `amount`. Always from `msg.sender`:
    ///      nobody can pull another account's approved tokens.
    function _escrow(address token, uint256 amount) internal {
        IERC20 t = IERC20(token);
        uint256 before = t.balanceOf(address(this));
        t.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received;
        unchecked {
            received = t.balanceOf(address(this)) - before; // a fall wraps to a huge number: refused too
        }
        if (received != amount) revert FeeOnTransfer(token, amount, received);
    }

    function _withdraw(address token, address to) private nonReentrant {
        uint256 amount = _owed[token][msg.sender];
        if (amount == 0) revert NothingOwed();
        _owed[token][msg.sender] = 0;
        emit Withdrawal(msg.sender, to, token, amount);
        if (token == address(0)) {
            (bool ok,) = payable(to).call{value: amount}("");
            if (!ok) revert TransferFailed();
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }
}
