// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {BidStore} from "../libraries/BidStore.sol";
import {MarketState} from "./MarketState.sol";

/// @title SealedBids
/// @notice Commit and reveal: in a sealed request consumers commit to a hash of their
///         bids before the bidding deadline, with the request's bond, and reveal them in
///         the reveal window; revealed bids enter the book in reveal order.
abstract contract SealedBids is MarketState {
    /// @notice The commitment for sealed bids: binds the bids and salt to this chain,
    ///         this contract, the request and the bidder, so it cannot be replayed
    ///         elsewhere or revealed by anyone else.
    /// @param requestId The request the bids are for.
    /// @param bidder The address that will reveal.
    /// @param watts Reductions in W.
    /// @param pricesWeiPerKWh Unit prices, wei per kWh.
    /// @param salt A secret random value; keep it until the reveal is mined.
    function commitmentOf(
        uint256 requestId,
        address bidder,
        uint256[] calldata watts,
        uint256[] calldata pricesWeiPerKWh,
        bytes32 salt
    ) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), requestId, bidder, watts, pricesWeiPerKWh, salt));
    }

    /// @notice Commit to sealed bids before the bidding deadline, or replace the caller's
    ///         commitment. The first commitment carries the request's bond, if any.
    /// @param requestId An open sealed request whose bidding deadline has not passed.
    /// @param commitment `commitmentOf(requestId, msg.sender, watts, prices, salt)`.
    function commitBids(uint256 requestId, bytes32 commitment) external payable {
        _requireEnrolled();
        Request storage r = _openRequest(requestId);
        if (r.flags & SEALED == 0) revert NotSealed(requestId);
        if (block.timestamp > r.biddingDeadline) revert BiddingClosed(r.biddingDeadline);
        Participant storage p = _participants[requestId][msg.sender];
        if (p.stage == Stage.None) {
            StoredTerms storage t = _terms[requestId];
            uint256 bond = t.bondWei;
            if (msg.value != bond) revert WrongBond(bond, msg.value);
            if (bond != 0) {
                p.bond = uint96(bond);
                t.unrevealedBonds += uint128(bond);
                emit BondPosted(requestId, msg.sender, bond);
            }
            p.stage = Stage.Committed;
        } else if (msg.value != 0) {
            revert WrongBond(0, msg.value); // replacing a commitment: the bond is already in
        }
        p.commitment = commitment;
        emit BidsCommitted(requestId, msg.sender, commitment);
    }

    /// @notice Reveal the caller's sealed bids after the bidding deadline, until the reveal
    ///         deadline. They enter the book in reveal order; every other rule is the same
    ///         as for open bids. Without metering, the bond is returned now.
    /// @param requestId The sealed request.
    /// @param watts Reductions in W, exactly as committed.
    /// @param pricesWeiPerKWh Unit prices, exactly as committed.
    /// @param salt The salt of the commitment.
    /// @return firstBidId Id of the first revealed bid.
    function revealBids(
        uint256 requestId,
        uint256[] calldata watts,
        uint256[] calldata pricesWeiPerKWh,
        bytes32 salt
    ) external returns (uint256 firstBidId) {
        Request storage r = _openRequest(requestId);
        uint256 flags = r.flags;
        if (flags & SEALED == 0) revert NotSealed(requestId);
        StoredTerms storage t = _terms[requestId];
        if (block.timestamp <= r.biddingDeadline || block.timestamp > t.revealDeadline) {
            revert RevealWindowClosed(r.biddingDeadline, t.revealDeadline);
        }
        Participant storage p = _participants[requestId][msg.sender];
        if (p.stage != Stage.Committed) revert WrongStage(msg.sender, p.stage);
        if (commitmentOf(requestId, msg.sender, watts, pricesWeiPerKWh, salt) != p.commitment) {
            revert CommitmentMismatch();
        }
        firstBidId = _record(requestId, r, msg.sender, watts, pricesWeiPerKWh);
        p.submission = uint32(BidStore.submissionOf(firstBidId) + 1);
        p.stage = Stage.Bid;
        uint256 bond = p.bond;
        if (bond != 0) {
            t.unrevealedBonds -= uint128(bond);
            if (flags & METERED != 0) {
                t.heldBonds += uint128(bond); // at stake for delivery now
            } else {
                p.bond = 0;
                _credit(address(0), msg.sender, bond); // bonds are in ether
            }
        }
        emit BidsRevealed(requestId, msg.sender, firstBidId, watts.length);
    }
}
