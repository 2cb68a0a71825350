// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {BidStore} from "./libraries/BidStore.sol";
import {LevelProofs} from "./libraries/LevelProofs.sol";
import {PackedBids} from "./libraries/PackedBids.sol";
import {TickBook} from "./libraries/TickBook.sol";
import {ConsumerRegister} from "./base/ConsumerRegister.sol";
import {MarketState} from "./base/MarketState.sol";
import {IBidReader} from "./interfaces/IBidReader.sol";

/// @title DemandReductionFacet
/// @notice The requests (creation, escrow, cancellation) and the views over a
///         `DemandReduction`'s storage, kept out of its code so that the market has room for
///         its features: the diamond pattern of EIP-2535 with one facet, fixed at deploy.
///         The market creates it in its constructor (`facet()`) and its fallback runs every
///         call it does not know here by delegatecall, on the market's own storage and with
///         the market's address in events; so call these functions at the market's address.
/// @dev    It inherits `MarketState`, the market's storage, so the layout is the market's by
///         construction (`dr compile` also compares solc's storage layouts). Beyond the
///         market's own functions it has only the request functions and views
///         (tests/tooling/test_facet.py). The inherited functions (withdraw, enrol, ...) have
///         the market's selectors, so the fallback never reaches them; called here directly,
///         this contract acts on its own empty storage and holds nothing. Amounts are in base
///         units of the request's currency (`RequestView.token`; wei for ether).
contract DemandReductionFacet is IBidReader, MarketState {
    using BidStore for BidStore.Bids;
    using PackedBids for uint256;
    using TickBook for TickBook.Book;

    /// @param registrationRequired_ The market's own flag: `registrationRequired` is an
    ///        immutable, so it lives in this contract's code, not in the shared storage, and
    ///        any code here that checks enrolment must see the market's value (F-13).
    constructor(bool registrationRequired_) ConsumerRegister(registrationRequired_) {}

    // ------------------------------------------------------------------ requests

    /// @notice Ask for `targetWatts` of reduction over [eventStart, eventEnd), escrowing
    ///         `msg.value` as the budget.
    /// @param targetWatts Reduction wanted, in W (> 0).
    /// @param eventStart Start of the event window, unix seconds (>= biddingDeadline).
    /// @param eventEnd End of the event window, unix seconds (> eventStart).
    /// @param biddingDeadline Last second at which bids are accepted (> now).
    /// @param maxPriceWeiPerKWh Price cap; a multiple of TICKS. Bids are priced in
    ///        multiples of maxPriceWeiPerKWh / TICKS.
    /// @param pricingRule Uniform (pay-as-clear) or PayAsBid.
    /// @return requestId The new request's id.
    function requestReduction(
        uint256 targetWatts,
        uint256 eventStart,
        uint256 eventEnd,
        uint256 biddingDeadline,
        uint256 maxPriceWeiPerKWh,
        PricingRule pricingRule
    ) external payable onlyUtility returns (uint256 requestId) {
        (requestId,) = _newRequest(
            address(0), msg.value, targetWatts, eventStart, eventEnd, biddingDeadline, maxPriceWeiPerKWh, pricingRule
        );
    }

    /// @notice Like `requestReduction`, with sealed bids, payment on measured delivery,
    ///         a bond, or all three. See docs/market.md.
    /// @param targetWatts Reduction wanted, in W (> 0).
    /// @param eventStart Start of the event window, unix seconds (>= the reveal deadline).
    /// @param eventEnd End of the event window, unix seconds (> eventStart).
    /// @param biddingDeadline Last second at which bids (or commitments) are accepted (> now).
    /// @param maxPriceWeiPerKWh Price cap; a multiple of TICKS.
    /// @param pricingRule Uniform (pay-as-clear) or PayAsBid.
    /// @param terms Reveal, report and dispute windows in seconds, and the bond in wei.
    /// @return requestId The new request's id.
    function requestReductionWithTerms(
        uint256 targetWatts,
        uint256 eventStart,
        uint256 eventEnd,
        uint256 biddingDeadline,
        uint256 maxPriceWeiPerKWh,
        PricingRule pricingRule,
        Terms calldata terms
    ) external payable onlyUtility returns (uint256 requestId) {
        return _newRequestWithTerms(
            address(0), msg.value, targetWatts, eventStart, eventEnd, biddingDeadline, maxPriceWeiPerKWh, pricingRule, terms
        );
    }

    /// @notice Like `requestReductionWithTerms`, with the budget escrowed and every payout,
    ///         refund and dust paid in the ERC-20 `token` (meant for a stablecoin). The caller
    ///         approves `budget` to this contract first. A token that does not move exactly
    ///         the amount asked (fee-on-transfer, rebasing) is refused with `FeeOnTransfer`;
    ///         bonds are in ether, so `terms.bondWei` must be 0 (`BondInEtherOnly`).
    /// @param token The ERC-20 currency of the request.
    /// @param budget The escrow, in the token's base units.
    /// @param targetWatts Reduction wanted, in W (> 0).
    /// @param eventStart Start of the event window, unix seconds.
    /// @param eventEnd End of the event window, unix seconds (> eventStart).
    /// @param biddingDeadline Last second at which bids (or commitments) are accepted (> now).
    /// @param maxPricePerKWh Price cap in the token's base units per kWh; a multiple of TICKS.
    /// @param pricingRule Uniform (pay-as-clear) or PayAsBid.
    /// @param terms Reveal, report and dispute windows and notice, in seconds; all 0: open bids.
    /// @return requestId The new request's id.
    function requestReductionInToken(
        address token,
        uint256 budget,
        uint256 targetWatts,
        uint256 eventStart,
        uint256 eventEnd,
        uint256 biddingDeadline,
        uint256 maxPricePerKWh,
        PricingRule pricingRule,
        Terms calldata terms
    ) external onlyUtility returns (uint256 requestId) {
        if (token == address(0)) revert ZeroAddress();
        if (token.code.length == 0) revert NotAToken(token);
        if (terms.bondWei != 0) revert BondInEtherOnly();
        requestId = _newRequestWithTerms(
            token, budget, targetWatts, eventStart, eventEnd, biddingDeadline, maxPricePerKWh, pricingRule, terms
        );
        _escrow(token, budget); // last: the request is recorded before the token runs
    }

    function _newRequestWithTerms(
        address token,
        uint256 budget,
        uint256 targetWatts,
        uint256 eventStart,
        uint256 eventEnd,
        uint256 biddingDeadline,
        uint256 maxPriceWeiPerKWh,
        PricingRule pricingRule,
        Terms calldata terms
    ) private returns (uint256 requestId) {
        if (
            terms.revealWindow > type(uint32).max || terms.reportWindow > type(uint32).max
                || terms.disputeWindow > type(uint32).max || terms.bondWei > type(uint80).max
                || terms.noticePeriod > type(uint32).max
        ) revert BadTerms();
        bool sealedBids = terms.revealWindow != 0;
        bool metered = terms.reportWindow != 0;
        // A bond needs something to secure; a dispute window and a notice period need reports.
        if (
            (terms.bondWei != 0 && !sealedBids && !metered)
                || ((terms.disputeWindow != 0 || terms.noticePeriod != 0) && !metered)
        ) revert BadTerms();
        Request storage r;
        (requestId, r) = _newRequest(
            token, budget, targetWatts, eventStart, eventEnd, biddingDeadline, maxPriceWeiPerKWh, pricingRule
        );
        uint256 revealDeadline = sealedBids ? biddingDeadline + terms.revealWindow : 0;
        if (revealDeadline > eventStart) revert RevealAfterEventStart(revealDeadline, eventStart);
        // A notice no selection could give (longer than from the close to the start) is a mistake.
        if (terms.noticePeriod > eventStart - (sealedBids ? revealDeadline : biddingDeadline)) revert BadTerms();
        r.flags |= (sealedBids ? SEALED : 0) | (metered ? METERED : 0);
        StoredTerms storage t = _terms[requestId];
        t.revealDeadline = uint40(revealDeadline);
        t.reportWindow = uint32(terms.reportWindow);
        t.disputeWindow = uint32(terms.disputeWindow);
        t.bondWei = uint80(terms.bondWei);
        t.noticePeriod = uint32(terms.noticePeriod);
        uint256 reportDeadline = metered ? eventEnd + terms.reportWindow : 0;
        emit RequestTerms(
            requestId,
            revealDeadline,
            reportDeadline,
            metered ? reportDeadline + terms.disputeWindow : 0,
            terms.bondWei
        );
    }

    function _newRequest(
        address token,
        uint256 budget,
        uint256 targetWatts,
        uint256 eventStart,
        uint256 eventEnd,
        uint256 biddingDeadline,
        uint256 maxPriceWeiPerKWh,
        PricingRule pricingRule
    ) private returns (uint256 requestId, Request storage r) {
        if (targetWatts == 0) revert ZeroTarget();
        if (targetWatts > type(uint40).max) revert TargetTooLarge(type(uint40).max);
        if (biddingDeadline <= block.timestamp) revert DeadlineInPast(biddingDeadline, block.timestamp);
        if (eventStart < biddingDeadline) revert EventBeforeDeadline(eventStart, biddingDeadline);
        if (eventEnd <= eventStart) revert EmptyEventWindow(eventStart, eventEnd);
        if (eventStart > type(uint40).max || eventEnd - eventStart > type(uint32).max) revert TimeOutOfRange();
        if (maxPriceWeiPerKWh == 0) revert ZeroPrice();
        if (maxPriceWeiPerKWh % TICKS != 0) revert CapNotOnTickGrid(maxPriceWeiPerKWh, TICKS);
        if (maxPriceWeiPerKWh / TICKS > type(uint64).max) revert CapTooLarge(uint256(type(uint64).max) * TICKS);
        if (budget > type(uint96).max) revert BudgetTooLarge(type(uint96).max);
        uint256 duration = eventEnd - eventStart;
        // < 2^40 * 2^32 * 2^71: no overflow.
        uint256 required = targetWatts * duration * maxPriceWeiPerKWh / WS_PER_KWH;
        if (budget < required) revert BudgetTooLow(required, budget);

        requestId = ++requestCount;
        r = _requests[requestId];
        r.biddingDeadline = uint40(biddingDeadline);
        r.eventStart = uint40(eventStart);
        r.duration = uint32(duration);
        r.tickWei = uint64(maxPriceWeiPerKWh / TICKS);
        r.status = Status.Open;
        r.flags = (pricingRule == PricingRule.PayAsBid ? PAY_AS_BID : 0) | (token != address(0) ? IN_TOKEN : 0);
        r.targetWatts = uint40(targetWatts);
        r.budget = uint96(budget);
        if (token != address(0)) r.token = token;
        emit ReductionRequested(
            requestId, targetWatts, eventStart, eventEnd, biddingDeadline, maxPriceWeiPerKWh, pricingRule, budget, token
        );
    }

    /// @notice Cancel an open request before its deadline and credit its budget back to the
    ///         utility, in the request's currency.
    /// @param requestId The request to cancel.
    function cancelRequest(uint256 requestId) external onlyUtility {
        Request storage r = _openRequest(requestId);
        if (block.timestamp > r.biddingDeadline) revert BiddingClosed(r.biddingDeadline);
        r.status = Status.Cancelled;
        uint256 refund = r.budget;
        _credit(r, msg.sender, refund);
        emit RequestCancelled(requestId, refund);
    }

    /// @notice Pay ahead for the first bid at each book slot of `slotMask` (bit s: the price
    ///         levels 5s+1 .. 5s+5, s < 26), so that no bidder of the request writes a book
    ///         slot from zero (22,100 gas) but every one rewrites a non-zero slot (5,000): a
    ///         marker is written into each such slot that is still empty (about 22,100 gas a
    ///         slot; a slot with bids, or sponsored already, costs a read). The marker is no
    ///         volume: selection, `book` and the bids' queue positions ignore it, so a
    ///         sponsored book settles exactly as an unsponsored one. Anyone may call it (the
    ///         utility daemon does with `SPONSOR_BOOK`), while the request is open and before
    ///         its bidding deadline; sponsoring twice is harmless.
    /// @param requestId An open request whose bidding deadline has not passed.
    /// @param slotMask The book slots to sponsor: bits 0..25 (all: 2^26 - 1).
    function sponsorBook(uint256 requestId, uint256 slotMask) external {
        Request storage r = _openRequest(requestId);
        if (block.timestamp > r.biddingDeadline) revert BiddingClosed(r.biddingDeadline);
        if (slotMask == 0 || slotMask >> TickBook.SLOTS != 0) revert BadSlotMask(slotMask);
        _books[requestId].sponsor(slotMask);
        emit BookSponsored(requestId, msg.sender, slotMask);
    }

    // ------------------------------------------------------------------ views

    /// @notice Everything about request `requestId`.
    /// @param requestId The request to look up.
    function getRequest(uint256 requestId) external view override returns (RequestView memory v) {
        Request storage r = _knownRequest(requestId);
        v.status = r.status;
        v.rule = r.flags & PAY_AS_BID == 0 ? PricingRule.Uniform : PricingRule.PayAsBid;
        v.targetWatts = r.targetWatts;
        v.eventStart = r.eventStart;
        v.eventEnd = uint256(r.eventStart) + r.duration;
        v.biddingDeadline = r.biddingDeadline;
        v.tickWei = r.tickWei;
        v.maxPriceWeiPerKWh = uint256(r.tickWei) * TICKS;
        v.budget = r.budget;
        v.submissions = r.submissions;
        v.bidCount = r.bidCount;
        v.clearingPriceWeiPerKWh = uint256(r.clearingTick) * r.tickWei;
        v.acceptedWatts = r.acceptedWatts;
        v.reserved = r.reserved;
        v.paidOut = uint256(r.reserved) - r.unpaid;
        v.claimedWatts = r.claimedWatts;
        v.token = r.token;
    }

    /// @notice Bidder and number of bids of submission `index` (0-based) of `requestId`;
    ///         its bids have ids `index << 6` onwards. The lens pages with it.
    /// @param requestId The request to look up.
    /// @param index The submission.
    function submissionAt(uint256 requestId, uint256 index) external view override returns (address bidder, uint256 bidCount) {
        if (index < _requests[requestId].submissions) return _bids[requestId].header(index);
    }

    /// @notice The bids of submission `index` (0-based) of `requestId` with their outcomes
    ///         (zero until settled): ids `index << 6` onwards. The lens pages with it.
    /// @param requestId The request to look up.
    /// @param index The submission.
    function submissionBids(uint256 requestId, uint256 index)
        external
        view
        override
        returns (BidView[] memory bids) {
        Request storage r = _knownRequest(requestId);
        uint256 total = r.submissions;
        if (index >= total) return bids; // none: past the last submission
        bids = new BidView[](_bids[requestId].count(index));
        for (uint256 i; i < bids.length; ++i) {
            uint256 bidId = BidStore.firstId(index) | i;
            (address bidder, uint256 bid,,) = _loadBid(requestId, total, bidId);
            BidView memory v = bids[i];
            v.bidId = bidId;
            v.bidder = bidder;
            v.watts = bid.watts();
            v.priceWeiPerKWh = bid.tick() * r.tickWei;
            v.cancelled = bid.isCancelled();
            v.claimed = bid.isClaimed();
            (v.acceptedWatts, v.payout) = _outcome(r, bid);
        }
    }

    /// @notice The terms of `requestId` and the bonds it holds.
    /// @param requestId The request to look up.
    function termsOf(uint256 requestId) external view returns (TermsView memory v) {
        Request storage r = _knownRequest(requestId);
        StoredTerms storage t = _terms[requestId];
        v.sealedBids = r.flags & SEALED != 0;
        v.metered = r.flags & METERED != 0;
        v.revealDeadline = t.revealDeadline;
        if (v.metered) {
            (v.reportDeadline, v.disputeDeadline) = _deliveryDeadlines(r, t);
        }
        v.bondWei = t.bondWei;
        v.unrevealedBonds = t.unrevealedBonds;
        v.heldBonds = t.heldBonds;
        v.selectedAt = t.selectedAt;
        v.noticePeriod = t.noticePeriod;
    }

    /// @notice Where `consumer` stands in a sealed or metered request.
    /// @param requestId The request to look up.
    /// @param consumer The consumer.
    function participantOf(uint256 requestId, address consumer) external view returns (ParticipantView memory v) {
        Request storage r = _knownRequest(requestId);
        Participant storage p = _participants[requestId][consumer];
        v.stage = p.stage;
        v.commitment = p.commitment;
        uint256 submission = p.submission;
        if (submission != 0) {
            v.hasBids = true;
            v.firstBidId = BidStore.firstId(submission - 1);
            v.bidCount = _bids[requestId].count(submission - 1);
            (v.acceptedWatts, v.promisedPayout) = _participantOutcome(requestId, r, submission);
        }
        // A commitment never revealed lost its bond at selection.
        v.bond = p.stage == Stage.Committed && r.status == Status.Settled ? 0 : p.bond;
        v.deliveredWatts = p.delivered;
    }

    /// @notice The EIP-712 domain separator of signed bids (`submitSignedBids`): name
    ///         "DemandReduction", version "1", this chain's id and the market's address.
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparator();
    }

    /// @notice Most signed entries in one `submitSignedBids` call.
    function MAX_SIGNED_ENTRIES() external pure returns (uint256) {
        return _MAX_SIGNED_ENTRIES;
    }

    /// @notice Whether `bidder`'s signed bids for `requestId` were placed by
    ///         `submitSignedBids` (a relayer checks this before sending an entry).
    /// @param bidder The household that signed.
    /// @param requestId The request.
    function signedBidsUsed(address bidder, uint256 requestId) external view returns (bool) {
        return _signedBidsUsed[bidder][requestId >> 8] & (1 << (requestId & 255)) != 0;
    }

    /// @notice How much of price level `tick`'s queue `proveLevelPrefix` has proved so far.
    /// @param requestId The request to look up.
    /// @param tick The price level.
    /// @return placedBefore Watts placed at the level by the proved bids.
    /// @return liveBefore Of those, the watts not withdrawn.
    /// @return nextBidId The lowest bid id the next proof or hint may list.
    function levelProof(uint256 requestId, uint256 tick)
        external
        view
        returns (uint256 placedBefore, uint256 liveBefore, uint256 nextBidId)
    {
        LevelProofs.Prefix memory q = LevelProofs.decode(_levelProof[requestId][tick]);
        return (q.placedBefore, q.liveBefore, q.nextId);
    }

    /// @notice Live volume in W at each price level: index i is price (i+1)*tickWei.
    /// @param requestId The request to look up.
    function book(uint256 requestId) external view returns (uint256[] memory liveWatts) {
        _knownRequest(requestId);
        liveWatts = new uint256[](TICKS);
        TickBook.Book storage book_ = _books[requestId];
        for (uint256 t; t < TICKS; ++t) {
            liveWatts[t] = book_.liveAt(t + 1);
        }
    }
}
