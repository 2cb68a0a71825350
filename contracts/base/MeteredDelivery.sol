// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {MarketState} from "./MarketState.sol";

/// @title MeteredDelivery
/// @notice Payment on measured delivery: the utility (as meter operator) meters each
///         winner, publishing how (`meterDelivery`); a winner may also report what it
///         delivered, which caps the figure. Each participant is settled: paid for what it
///         delivered, its bond returned less a penalty for the shortfall, pushed to it.
abstract contract MeteredDelivery is MarketState {
    /// @notice Post the bond of an open, metered request before bidding.
    /// @param requestId An open metered request with a bond, before its bidding deadline.
    function postBond(uint256 requestId) external payable {
        _requireEnrolled();
        Request storage r = _openRequest(requestId);
        if (r.flags & SEALED != 0) revert SealedRequest(requestId); // the bond goes with the commitment
        if (r.flags & METERED == 0) revert NotMetered(requestId);
        if (block.timestamp > r.biddingDeadline) revert BiddingClosed(r.biddingDeadline);
        StoredTerms storage t = _terms[requestId];
        uint256 bond = t.bondWei;
        if (msg.value != bond || bond == 0) revert WrongBond(bond, msg.value);
        Participant storage p = _participants[requestId][msg.sender];
        if (p.stage != Stage.None) revert WrongStage(msg.sender, p.stage);
        p.stage = Stage.Bonded;
        p.bond = uint96(bond);
        t.heldBonds += uint128(bond);
        emit BondPosted(requestId, msg.sender, bond);
    }

    /// @notice Report the reduction the caller delivered in a metered request: baseline
    ///         minus metered consumption over the event window, as average W. The
    ///         transaction is the consumer's signed statement; the utility, as meter
    ///         operator, may confirm or dispute it until the dispute deadline.
    /// @param requestId A settled metered request whose event is over.
    /// @param deliveredWatts Delivered reduction, W averaged over the event window.
    function reportDelivery(uint256 requestId, uint256 deliveredWatts) external {
        Request storage r = _meteredAndSettled(requestId);
        uint256 eventEnd = uint256(r.eventStart) + r.duration;
        (uint256 reportDeadline,) = _deliveryDeadlines(r, _terms[requestId]);
        if (block.timestamp < eventEnd || block.timestamp > reportDeadline) {
            revert ReportWindowClosed(eventEnd, reportDeadline);
        }
        if (deliveredWatts > type(uint64).max) revert DeliveryTooLarge(type(uint64).max);
        Participant storage p = _participants[requestId][msg.sender];
        if (p.stage != Stage.Bid) revert WrongStage(msg.sender, p.stage);
        p.delivered = uint64(deliveredWatts);
        p.stage = Stage.Reported;
        emit DeliveryReported(requestId, msg.sender, deliveredWatts);
    }

    /// @notice The utility, as meter operator, settles winner `consumer` on its own meter
    ///         data, with or without the consumer's report, and publishes how it measured.
    ///         With a report, the delivery is the lower of the report and `meteredWatts`
    ///         (so metering at or above the report confirms it, below disputes it); without
    ///         one it is `meteredWatts`. Payout and bond go straight to the consumer.
    /// @param requestId A settled metered request whose event is over, until its dispute deadline.
    /// @param consumer A winner not yet settled.
    /// @param meteredWatts The utility's figure, W averaged over the event window.
    /// @param evidence The measurement record (method, parameters, SHA-256 of the interval
    ///        data), for anyone holding the data to recompute the figure; see docs/mv.md.
    function meterDelivery(uint256 requestId, address consumer, uint256 meteredWatts, bytes calldata evidence)
        external
        onlyUtility
    {
        Request storage r = _meteredAndSettled(requestId);
        Participant storage p = _participants[requestId][consumer];
        Stage stage = p.stage;
        if (stage != Stage.Bid && stage != Stage.Reported) revert WrongStage(consumer, stage);
        uint256 eventEnd = uint256(r.eventStart) + r.duration;
        if (block.timestamp < eventEnd) revert TooEarly(eventEnd);
        (, uint256 disputeDeadline) = _deliveryDeadlines(r, _terms[requestId]);
        if (block.timestamp > disputeDeadline) revert DisputeWindowClosed(disputeDeadline);
        if (meteredWatts > type(uint64).max) revert DeliveryTooLarge(type(uint64).max);
        (uint256 accepted,) = _participantOutcome(requestId, r, p.submission);
        if (accepted == 0) revert NotAWinner(consumer);
        if (stage == Stage.Bid || meteredWatts < p.delivered) p.delivered = uint64(meteredWatts);
        emit DeliveryMetered(requestId, consumer, meteredWatts, evidence);
        _settleParticipant(requestId, r, consumer, p);
    }

    /// @notice Settle `consumer` in a metered request, or return its bond from a cancelled
    ///         request. Anyone may call it: at once for a consumer with nothing accepted,
    ///         after the report deadline for one that did not report (it delivered
    ///         nothing), after the dispute deadline for one that reported.
    /// @param requestId A settled metered request, or a cancelled request.
    /// @param consumer The participant to settle.
    function settleDelivery(uint256 requestId, address consumer) external {
        Request storage r = _knownRequest(requestId);
        Participant storage p = _participants[requestId][consumer];
        Stage stage = p.stage;
        if (r.status == Status.Cancelled) {
            uint256 bond = p.bond;
            if (bond == 0 || stage == Stage.Settled) revert WrongStage(consumer, stage);
            StoredTerms storage t = _terms[requestId];
            if (stage == Stage.Committed) t.unrevealedBonds -= uint128(bond);
            else t.heldBonds -= uint128(bond);
            p.bond = 0;
            p.stage = Stage.Settled;
            emit DeliverySettled(requestId, consumer, 0, 0, 0, 0, bond, 0);
            _pay(requestId, address(0), consumer, bond); // bonds are in ether
            return;
        }
        _meteredAndSettled(requestId);
        if (stage != Stage.Bonded && stage != Stage.Bid && stage != Stage.Reported) revert WrongStage(consumer, stage);
        (uint256 accepted,) = _participantOutcome(requestId, r, p.submission);
        if (accepted != 0) {
            (uint256 reportDeadline, uint256 disputeDeadline) = _deliveryDeadlines(r, _terms[requestId]);
            uint256 due = stage == Stage.Reported ? disputeDeadline : reportDeadline;
            if (block.timestamp <= due) revert TooEarly(due + 1);
            if (stage != Stage.Reported) p.delivered = 0; // no report: nothing delivered
        }
        _settleParticipant(requestId, r, consumer, p);
    }

    function _meteredAndSettled(uint256 requestId) private view returns (Request storage r) {
        r = _requests[requestId];
        if (r.status != Status.Settled) revert NotSettled(requestId);
        if (r.flags & METERED == 0) revert NotMetered(requestId);
    }

    /// @dev Pay accepted x min(1, delivered / accepted), take the penalty for the shortfall
    ///      out of the bond, return the rest of the bond, and send the unearned payout and
    ///      the penalty to the utility.
    function _settleParticipant(uint256 requestId, Request storage r, address consumer, Participant storage p)
        private
    {
        (uint256 accepted, uint256 promised) = _participantOutcome(requestId, r, p.submission);
        uint256 delivered = p.delivered;
        uint256 credited = delivered < accepted ? delivered : accepted;
        uint256 bond = p.bond;
        uint256 payout = accepted == 0 ? 0 : promised * credited / accepted;
        // A shortfall is penalised only if the winner had the request's notice period between
        // selection and the event start: one selected later could not plan its reduction.
        StoredTerms storage t = _terms[requestId];
        uint256 notice = t.noticePeriod;
        uint256 penalty = accepted == 0 || notice == 0 || uint256(t.selectedAt) + notice > r.eventStart
            ? 0
            : bond * (accepted - credited) / accepted;
        p.stage = Stage.Settled;
        if (bond != 0) {
            p.bond = 0;
            t.heldBonds -= uint128(bond);
        }
        uint256 toUtility = promised - payout + penalty;
        if (toUtility != 0) _credit(r, utility, toUtility);
        if (p.submission != 0) _markClaimed(requestId, r, p.submission);
        emit DeliverySettled(requestId, consumer, accepted, delivered, payout, penalty, bond - penalty, toUtility);
        _disburse(requestId, r, accepted, promised);
        // Last, after every effect: a pushed payment (gas-capped; credited if it fails). A token
        // request has no bond (BondInEtherOnly), so the sum is in the request's currency.
        if (payout + bond - penalty != 0) _pay(requestId, _currency(r), consumer, payout + bond - penalty);
    }
}
