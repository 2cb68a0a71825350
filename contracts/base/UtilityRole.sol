// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {IDemandReduction} from "../interfaces/IDemandReduction.sol";

/// @title UtilityRole
/// @notice The utility: the one account that requests, cancels and settles, and receives
///         refunds. Handed over in two steps, like OpenZeppelin's Ownable2Step, so a typo
///         in the new address cannot lose the role.
abstract contract UtilityRole is IDemandReduction {
    /// @notice The utility: it requests, cancels and settles, and receives refunds.
    address public utility;
    /// @notice The address that may accept the utility role (two-step transfer).
    address public pendingUtility;

    modifier onlyUtility() {
        if (msg.sender != utility) revert NotUtility();
        _;
    }

    constructor() {
        utility = msg.sender;
        emit UtilityTransferred(address(0), msg.sender);
    }

    /// @notice Start handing the utility role to `newUtility`; it must call `acceptUtility`.
    /// @param newUtility The proposed utility. address(0) clears a pending transfer.
    function transferUtility(address newUtility) external onlyUtility {
        pendingUtility = newUtility;
        emit UtilityTransferStarted(msg.sender, newUtility);
    }

    /// @notice Accept the utility role offered by `transferUtility`.
    function acceptUtility() external {
        if (msg.sender != pendingUtility || msg.sender == address(0)) revert NotPendingUtility();
        address previous = utility;
        utility = msg.sender;
        pendingUtility = address(0);
        emit UtilityTransferred(previous, msg.sender);
    }
}
