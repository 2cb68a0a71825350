// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {UtilityRole} from "./UtilityRole.sol";

/// @title ConsumerRegister
/// @notice Registered mode: when `registrationRequired`, only consumers the utility
///         enrolled may bid, commit or post a bond. Fixed at deploy.
abstract contract ConsumerRegister is UtilityRole {
    /// @notice True when only enrolled consumers may bid; fixed at deploy.
    bool public immutable registrationRequired;

    mapping(address => Enrolment) private _enrolment;

    /// @param registrationRequired_ When true, only consumers enrolled by the utility may bid.
    constructor(bool registrationRequired_) {
        registrationRequired = registrationRequired_;
    }

    /// @notice Ask the utility to enrol the caller (registered mode only).
    function requestEnrolment() external {
        if (!registrationRequired) revert RegistrationDisabled();
        if (_enrolment[msg.sender] == Enrolment.Enrolled) revert AlreadyEnrolled(msg.sender);
        _enrolment[msg.sender] = Enrolment.Requested;
        emit EnrolmentRequested(msg.sender);
    }

    /// @notice Enrol `consumer`, whether or not it asked first (registered mode only).
    /// @param consumer The address that may bid from now on.
    function enrol(address consumer) external onlyUtility {
        if (!registrationRequired) revert RegistrationDisabled();
        if (consumer == address(0)) revert ZeroAddress();
        Enrolment previous = _enrolment[consumer];
        if (previous == Enrolment.Enrolled) revert AlreadyEnrolled(consumer);
        _enrolment[consumer] = Enrolment.Enrolled;
        emit ConsumerEnrolled(consumer, previous == Enrolment.Requested);
    }

    /// @notice Remove `consumer` from the register; its existing bids stand.
    /// @param consumer The address to remove.
    function unenrol(address consumer) external onlyUtility {
        if (!registrationRequired) revert RegistrationDisabled();
        if (_enrolment[consumer] != Enrolment.Enrolled) revert NotEnrolled(consumer);
        delete _enrolment[consumer];
        emit ConsumerUnenrolled(consumer);
    }

    /// @notice Enrolment state of `consumer` (0 none, 1 requested, 2 enrolled).
    /// @param consumer The address to look up.
    function enrolmentOf(address consumer) external view returns (Enrolment) {
        return _enrolment[consumer];
    }

    /// @dev Revert unless the caller may take part (always, without registration).
    function _requireEnrolled() internal view {
        if (!_mayTakePart(msg.sender)) revert NotEnrolled(msg.sender);
    }

    /// @dev Whether `consumer` may take part: always without registration, else if enrolled.
    function _mayTakePart(address consumer) internal view returns (bool) {
        return !registrationRequired || _enrolment[consumer] == Enrolment.Enrolled;
    }
}
