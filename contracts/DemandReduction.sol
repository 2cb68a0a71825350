// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {BidStore} from "./libraries/BidStore.sol";
import {LevelProofs} from "./libraries/LevelProofs.sol";
import {PackedBids} from "./libraries/PackedBids.sol";
import {TickBook} from "./libraries/TickBook.sol";
import {ConsumerRegister} from "./base/ConsumerRegister.sol";
import {MeteredDelivery} from "./base/MeteredDelivery.sol";
import {SealedBids} from "./base/SealedBids.sol";
import {DemandReductionLens} from "./DemandReductionLens.sol";
import {DemandReductionFacet} from "./DemandReductionFacet.sol";
import {IBidReader} from "./interfaces/IBidReader.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title DemandReduction
/// @notice A uniform-price (pay-as-clear) or pay-as-bid market for demand reduction.
///         The utility escrows a budget and asks for a number of watts over an event
///         window; consumers offer reductions at a unit price per kWh; after the
///         bidding deadline the cheapest offers are accepted until the target is met,
///         the marginal offer in part.
/// @dev    Scale comes from a price-tick book (TickBook): every request has `TICKS` price
///         levels (`tickWei`, 2*tickWei, ..., TICKS*tickWei = the price cap) and keeps one
///         aggregate volume per level. Selection scans the fixed-size book, never the
///         bids, so its cost does not depend on how many bids were placed. Each bid
///         records its queue position at its price level (PackedBids), so a winner's
///         accepted watts are computed in O(1) when it claims. Money only moves by pull
///         (PullPayments), in ether or in an ERC-20 token chosen per request. Sealed bids
///         and metered delivery are their own bases. Requests and the views over storage
///         live in `DemandReductionFacet`, run on this contract's storage through its
///         fallback; the paged views in `DemandReductionLens`; both are created with it.
///         See docs/contract.md for the state machine, units, tie-breaking and rounding.
contract DemandReduction is SealedBids, MeteredDelivery {
    using BidStore for BidStore.Bids;
    using PackedBids for uint256;
    using TickBook for TickBook.Book;

    /// @notice The read-only lens with the paged bid views (`getBids`, `bidsOf`, `outcomeOf`).
    address public immutable lens;
    /// @notice The facet with the request functions (`requestReduction`, ...,
    ///         `cancelRequest`) and the views over storage (`getRequest`, `termsOf`, `book`,
    ///         ...): every call to a function this contract does not have runs that code on
    ///         this contract's storage (delegatecall). Created here, so its code is part of
    ///         this contract's, and it has the same storage layout by inheritance (checked by
    ///         `dr compile`). See `DemandReductionFacet`.
    address public immutable facet;

    // The EIP-712 domain separator of signed bids (`MarketState._domainSeparator`), cached.
    bytes32 private immutable _cachedDomainSeparator;
    uint256 private immutable _cachedChainId;

    // Reasons a signed entry is skipped (`SignedBidsSkipped`).
    uint8 private constant _SKIP_USED = 1;
    uint8 private constant _SKIP_NOT_ENROLLED = 2;
    uint8 private constant _SKIP_NO_BOND = 3;
    uint8 private constant _SKIP_STAGE = 4;

    /// @param registrationRequired_ When true, only consumers enrolled by the utility may bid.
    constructor(bool registrationRequired_) ConsumerRegister(registrationRequired_) {
        lens = address(new DemandReductionLens(IBidReader(address(this))));
        facet = address(new DemandReductionFacet(registrationRequired_));
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _domainSeparator();
    }

    /// @notice Runs the functions of `facet` (see there) on this contract's storage. Plain
    ///         ether sent here is refused (the facet has no receive function).
    fallback() external payable {
        address target = facet;
        assembly ("memory-safe") {
            let ptr := mload(0x40) // scratch past the free memory pointer; the call ends here
            calldatacopy(ptr, 0, calldatasize())
            let ok := delegatecall(gas(), target, ptr, calldatasize(), 0, 0)
            returndatacopy(ptr, 0, returndatasize())
            if iszero(ok) { revert(ptr, returndatasize()) }
            return(ptr, returndatasize())
        }
    }

    // ------------------------------------------------------------------ bids

    /// @notice Offer reductions: `watts[i]` W at `pricesWeiPerKWh[i]` wei per kWh.
    /// @dev Prices must be positive multiples of the request's tick, at most the cap.
    ///      Bids at equal price are served first come, first served. Bid ids are
    ///      `submission << 6 | index`, increasing in submission order.
    /// @param requestId An open request whose deadline has not passed.
    /// @param watts Reductions in W, each in 1..2^24-1.
    /// @param pricesWeiPerKWh Unit prices, wei per kWh.
    /// @return firstBidId Id of the first new bid; the others follow consecutively.
    function submitBids(uint256 requestId, uint256[] calldata watts, uint256[] calldata pricesWeiPerKWh)
        external
        returns (uint256 firstBidId)
    {
        return _submitOwn(requestId, watts, pricesWeiPerKWh);
    }

    /// @notice Place bids that households signed off chain (EIP-712), so that they send no
    ///         transaction: anyone (the utility daemon, an aggregator) relays many households'
    ///         bids in one call and pays the gas. Each entry's bids are placed exactly as
    ///         `submitBids` from its `bidder` would place them: same rules, ids and event.
    ///         One signed submission per bidder per request: the signature binds the bids to
    ///         the request, this market and this chain, and once placed it is used up. An
    ///         entry a third party can void after the relayer checked it is skipped with
    ///         `SignedBidsSkipped` (already placed, e.g. front-run by the household itself;
    ///         not enrolled; metered: no bond, or already bid); everything a relayer can check
    ///         up front reverts (a bad signature, bad bids, a closed or sealed request).
    ///         The domain separator and `MAX_SIGNED_ENTRIES` are views of the facet.
    /// @param requestId An open, unsealed request whose deadline has not passed.
    /// @param entries Up to `MAX_SIGNED_ENTRIES` signed entries, each at most
    ///        `MAX_BIDS_PER_CALL` bids.
    /// @return placed The number of entries placed (the others were skipped).
    function submitSignedBids(uint256 requestId, SignedBids[] calldata entries) external returns (uint256 placed) {
        if (entries.length > _MAX_SIGNED_ENTRIES) revert TooManyEntries(_MAX_SIGNED_ENTRIES);
        (Request storage r, uint256 flags) = _biddable(requestId);
        bytes32 domain = _domainSeparatorNow();
        for (uint256 i; i < entries.length; ++i) {
            SignedBids calldata e = entries[i];
            address bidder = e.bidder;
            bytes32 digest = keccak256(
                abi.encodePacked(
                    hex"1901",
                    domain,
                    keccak256(
                        abi.encode(
                            _SIGNED_BIDS_TYPEHASH,
                            requestId,
                            bidder,
                            keccak256(abi.encodePacked(e.watts)),
                            keccak256(abi.encodePacked(e.pricesPerKWh))
                        )
                    )
                )
            );
            // OpenZeppelin's recovery refuses a length other than 65 and a high s (malleable).
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, e.signature);
            if (err != ECDSA.RecoverError.NoError || signer != bidder) revert BadSignature(bidder);
            mapping(uint256 => uint256) storage used = _signedBidsUsed[bidder];
            uint256 word = used[requestId >> 8];
            uint256 bit = 1 << (requestId & 255);
            uint8 skipped;
            if (word & bit != 0) skipped = _SKIP_USED;
            else if (!_mayTakePart(bidder)) skipped = _SKIP_NOT_ENROLLED;
            else if (flags & METERED == 0) _record(requestId, r, bidder, e.watts, e.pricesPerKWh);
            else (, skipped) = _submitMetered(requestId, r, bidder, e.watts, e.pricesPerKWh);
            if (skipped != 0) {
                emit SignedBidsSkipped(requestId, bidder, skipped);
                continue;
            }
            used[requestId >> 8] = word | bit;
            ++placed;
        }
    }

    /// @notice Withdraw some of the caller's bids before the deadline.
    /// @param requestId The request the bids belong to.
    /// @param bidIds Ids of the caller's live bids.
    function cancelBids(uint256 requestId, uint256[] calldata bidIds) external {
        _cancel(requestId, bidIds);
    }

    /// @notice Withdraw `cancelIds` and place new bids in one transaction.
    /// @param requestId The request the bids belong to.
    /// @param cancelIds Ids of the caller's live bids to withdraw.
    /// @param watts New reductions in W.
    /// @param pricesWeiPerKWh New unit prices, wei per kWh.
    /// @return firstBidId Id of the first new bid.
    function replaceBids(
        uint256 requestId,
        uint256[] calldata cancelIds,
        uint256[] calldata watts,
        uint256[] calldata pricesWeiPerKWh
    ) external returns (uint256 firstBidId) {
        _cancel(requestId, cancelIds);
        return _submitOwn(requestId, watts, pricesWeiPerKWh);
    }

    /// @dev The request, if bids may be placed on it now (open, before its deadline,
    ///      unsealed), and its flags.
    function _biddable(uint256 requestId) private view returns (Request storage r, uint256 flags) {
        r = _openRequest(requestId);
        if (block.timestamp > r.biddingDeadline) revert BiddingClosed(r.biddingDeadline);
        flags = r.flags;
        if (flags & SEALED != 0) revert SealedRequest(requestId);
    }

    /// @dev `submitBids` and `replaceBids`: the caller's own bids; what the metered rules
    ///      skip reverts here.
    function _submitOwn(uint256 requestId, uint256[] calldata watts, uint256[] calldata prices)
        private
        returns (uint256 firstBidId)
    {
        _requireEnrolled();
        (Request storage r, uint256 flags) = _biddable(requestId);
        if (flags & METERED == 0) return _record(requestId, r, msg.sender, watts, prices);
        uint8 skipped;
        (firstBidId, skipped) = _submitMetered(requestId, r, msg.sender, watts, prices);
        if (skipped == _SKIP_NO_BOND) revert WrongBond(_terms[requestId].bondWei, 0); // postBond first
        if (skipped != 0) revert WrongStage(msg.sender, _participants[requestId][msg.sender].stage);
    }

    /// @dev The metered rules, for the bids of `bidder` (the caller or a signer): one
    ///      submission per consumer, since its meter measures all its bids at once, after its
    ///      bond if the request takes one. These depend on the bidder's standing, which others
    ///      can change, so they return a skip reason (nothing placed) rather than revert:
    ///      a bond required and not posted, or already bid. Bad bids revert (`_record`).
    function _submitMetered(
        uint256 requestId,
        Request storage r,
        address bidder,
        uint256[] calldata watts,
        uint256[] calldata prices
    ) private returns (uint256 firstBidId, uint8 skipped) {
        Participant storage p = _participants[requestId][bidder];
        Stage stage = p.stage;
        if (stage == Stage.None) {
            if (_terms[requestId].bondWei != 0) return (0, _SKIP_NO_BOND);
        } else if (stage != Stage.Bonded) {
            return (0, _SKIP_STAGE);
        }
        firstBidId = _record(requestId, r, bidder, watts, prices);
        p.submission = uint32(BidStore.submissionOf(firstBidId) + 1);
        p.stage = Stage.Bid;
    }

    /// @dev The EIP-712 domain separator, recomputed only if the chain id changed (a fork).
    function _domainSeparatorNow() private view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _domainSeparator();
    }

    function _cancel(uint256 requestId, uint256[] calldata bidIds) private {
        Request storage r = _openRequest(requestId);
        if (block.timestamp > r.biddingDeadline) revert BiddingClosed(r.biddingDeadline);
        uint256 submissions = r.submissions;
        BidStore.Bids storage bids = _bids[requestId];
        TickBook.Book storage book_ = _books[requestId];
        for (uint256 i; i < bidIds.length; ++i) {
            uint256 bidId = bidIds[i];
            (address bidder, uint256 bid, uint256 key, uint256 shift) = bids.load(submissions, bidId);
            if (bidder != msg.sender) revert NotBidder(bidId);
            if (bid.isCancelled()) revert BidAlreadyCancelled(bidId);
            bids.setFlag(key, shift, PackedBids.CANCELLED);
            book_.cancel(bid.tick(), bid.watts());
            emit BidCancelled(requestId, msg.sender, bidId);
        }
        // Selection reads the cancelled side of the book only once this is set (the first
        // withdrawal pays 2,900 gas for it; later ones rewrite the same value for 100).
        if (bidIds.length != 0) r.flags |= WITHDRAWN;
    }

    // ------------------------------------------------------------------ selection

    /// @notice Select the winners of `requestId` after its deadline. The utility may call
    ///         it at once; anyone may after `biddingDeadline + GRACE_PERIOD`.
    /// @dev Reverts with `MarginalHintRequired` in the rare case that bids were withdrawn
    ///      at the clearing price level and the level is only partly accepted; call
    ///      `selectWinnersWithHint` then.
    /// @param requestId The request to settle.
    function selectWinners(uint256 requestId) external {
        _select(requestId, new uint256[](0));
    }

    /// @notice Like `selectWinners`, with the queue at the clearing price level spelled out.
    /// @param requestId The request to settle.
    /// @param levelBidIds Every bid id at the clearing price level, ascending, up to and
    ///        including the marginal (partly accepted) live bid.
    function selectWinnersWithHint(uint256 requestId, uint256[] calldata levelBidIds) external {
        _select(requestId, levelBidIds);
    }

    /// @notice Prove the first bids of price level `tick`'s queue ahead of selection, when
    ///         the full hint would not fit in one block. Anyone may call it after the
    ///         deadline, in as many transactions as needed; `selectWinnersWithHint` then
    ///         lists only the remaining bids, ending with the marginal one.
    /// @param requestId An open request whose deadline has passed.
    /// @param tick The clearing price level.
    /// @param levelBidIds The next bids of the level, in queue order, all before the marginal one.
    function proveLevelPrefix(uint256 requestId, uint256 tick, uint256[] calldata levelBidIds) external {
        Request storage r = _openRequest(requestId);
        uint256 closes = _closesAt(requestId, r);
        if (block.timestamp <= closes) revert BiddingStillOpen(closes);
        if (tick == 0 || tick > TICKS) revert BadMarginalHint();
        uint256 take = _wantedAt(requestId, r.targetWatts, tick);
        LevelProofs.Prefix memory q = LevelProofs.decode(_levelProof[requestId][tick]);
        _walkLevel(requestId, r.submissions, tick, levelBidIds, q);
        if (q.liveBefore >= take) revert BadMarginalHint(); // the marginal bid goes in the hint
        _levelProof[requestId][tick] = LevelProofs.encode(q);
        emit LevelPrefixProved(requestId, tick, q.placedBefore, q.nextId);
    }

    /// @dev Walk `ids` along price level `tick`'s queue from the prefix `q`, advancing it:
    ///      each id must be the next bid of the queue (its position is the watts placed
    ///      before it), so no bid is missing and none is listed twice. Ids the prefix
    ///      already covers are skipped, so a proof mined first (by anyone) cannot void a
    ///      proof or hint that lists them too. Returns the last bid walked (0: none).
    function _walkLevel(
        uint256 requestId,
        uint256 submissions,
        uint256 tick,
        uint256[] memory ids,
        LevelProofs.Prefix memory q
    ) private view returns (uint256 bid) {
        BidStore.Bids storage bids = _bids[requestId];
        for (uint256 i; i < ids.length; ++i) {
            uint256 id = ids[i];
            if (id < q.nextId) continue; // proved already
            (, bid,,) = bids.load(submissions, id);
            if (bid.tick() != tick || bid.queuePos() != q.placedBefore) revert BadMarginalHint();
            uint256 w = bid.watts();
            q.placedBefore += w;
            if (!bid.isCancelled()) q.liveBefore += w;
            q.nextId = id + 1;
        }
    }

    /// @dev Watts still wanted when the scan reaches `tick` (0 if cheaper levels cover the target).
    function _wantedAt(uint256 requestId, uint256 target, uint256 tick) private view returns (uint256) {
        TickBook.Book storage book_ = _books[requestId];
        for (uint256 t = 1; t < tick; ++t) {
            uint256 live = book_.liveAt(t);
            if (live >= target) return 0;
            target -= live;
        }
        return target;
    }

    function _select(uint256 requestId, uint256[] memory hint) private {
        Request storage r = _openRequest(requestId);
        uint256 deadline = _closesAt(requestId, r); // the reveal deadline for sealed bids
        if (block.timestamp <= deadline) revert BiddingStillOpen(deadline);
        if (msg.sender != utility && block.timestamp <= deadline + GRACE_PERIOD) {
            revert GracePeriodNotOver(deadline + GRACE_PERIOD);
        }

        Clearing memory c = _clear(requestId, r.targetWatts, r.flags & WITHDRAWN != 0, hint);
        uint256 tickWei = r.tickWei;
        uint256 clearingPrice = c.clearingTick * tickWei;
        uint256 reserved = r.flags & PAY_AS_BID == 0
            ? c.accepted * r.duration * clearingPrice / WS_PER_KWH
            : c.valueTicks * tickWei * r.duration / WS_PER_KWH;
        uint256 refund = r.budget - reserved; // reserved <= target * duration * cap / 3.6e6 <= budget

        r.status = Status.Settled;
        r.reserved = uint96(reserved);
        // Slot 2 (from zero) in one write: acceptedWatts (bits 0..39), clearingTick (40..47),
        // marginalPos (48..95), claimedWatts (96..135, zero), unpaid = reserved (136..231). The
        // fields' widths are the scan's bounds (accepted <= target < 2^40, tick <= 128, a
        // position < 2^48) and reserved <= budget < 2^96; MarketState.Request is the layout.
        uint256 claimsSlot = (c.accepted | c.clearingTick << 40 | c.marginalPos << 48) | reserved << 136;
        assembly ("memory-safe") {
            sstore(add(r.slot, 2), claimsSlot)
        }
        uint256 toUtility = refund;
        if (r.flags & METERED != 0) _terms[requestId].selectedAt = uint40(block.timestamp);
        if (r.flags & SEALED != 0) {
            StoredTerms storage t = _terms[requestId];
            uint256 forfeited = t.unrevealedBonds;
            if (forfeited != 0) {
                t.unrevealedBonds = 0;
                toUtility += forfeited;
                emit BondsForfeited(requestId, forfeited);
            }
        }
        if (toUtility != 0) _credit(r, utility, toUtility); // bonds only in ether requests
        emit WinnersSelected(requestId, clearingPrice, c.accepted, reserved, refund);
    }

    /// @dev Accept the cheapest live volume up to `target`, in price order. A book slot's
    ///      five levels are taken whole while their total is short of what is still wanted
    ///      (no per-level work); the slot that meets the target is walked level by level.
    ///      The cancelled side is read only if a bid was ever withdrawn (`withdrawn`): since
    ///      cancelled <= placed in every lane, one subtraction of the words gives every
    ///      lane's live volume, with no borrow between lanes. Cost: one cold read per
    ///      non-empty slot (at most 26, twice that with withdrawals) and ~400 gas per slot.
    function _clear(uint256 requestId, uint256 target, bool withdrawn, uint256[] memory hint)
        private
        view
        returns (Clearing memory c)
    {
        TickBook.Book storage book_ = _books[requestId];
        uint256 remaining = target;
        uint256 liveSlots; // sum of live volume * slot index over the slots taken whole
        uint256 laneTicks; // sum of live volume * lane index over the slots taken whole
        uint256 lastSlot; // 1 + the last slot taken whole with live volume
        uint256 meetSlot; // 1 + the slot whose volume meets the target (0: none does)
        // The scan over the slots, in assembly because it is the worst case's only work
        // (Solidity's bounds checks and calls cost ~520 gas a slot, this ~400). It reads only the
        // book's own slots: placed[s] at book_.slot + s, cancelled[s] at book_.slot + 26 + s.
        // Lanes < 2^48, volumes below the target < 2^64, s < 26: nothing overflows. The top
        // lane is masked like the others: bit 255 may hold the sponsorship sentinel
        // (TickBook.SPONSORED), never a volume (a sponsored slot without volume takes the
        // arithmetic of a live one, ~400 gas, and adds nothing).
        assembly ("memory-safe") {
            let m := 0xffffffffffff // TickBook.LANE_MASK
            for { let s := 0 } lt(s, 26) { s := add(s, 1) } {
                let w := sload(add(book_.slot, s))
                if w {
                    if withdrawn { w := sub(w, sload(add(book_.slot, add(26, s)))) }
                    // a = l4, l4 + l3, ..., l4 + .. + l1; their sum is sum(lane * volume).
                    let a := and(shr(192, w), m)
                    let lanes := a
                    a := add(a, and(shr(144, w), m))
                    lanes := add(lanes, a)
                    a := add(a, and(shr(96, w), m))
                    lanes := add(lanes, a)
                    a := add(a, and(shr(48, w), m))
                    lanes := add(lanes, a)
                    let live := add(a, and(w, m))
                    // Added before the test, so that the optimizer does not recompute the lanes.
                    laneTicks := add(laneTicks, lanes)
                    if iszero(lt(live, remaining)) {
                        laneTicks := sub(laneTicks, lanes)
                        meetSlot := add(s, 1)
                        break
                    }
                    remaining := sub(remaining, live)
                    liveSlots := add(liveSlots, mul(live, s))
                    if live { lastSlot := add(s, 1) }
                }
            }
        }
        unchecked {
            // Each live watt taken whole at slot s, lane i, tick 5s + i + 1.
            uint256 valueTicks = TickBook.LANES * liveSlots + laneTicks + (target - remaining);
            if (meetSlot != 0) {
                // This slot meets the target: walk its levels.
                (uint256 placedWord, uint256 liveWord) = TickBook.words(book_, meetSlot - 1, withdrawn);
                uint256 end = meetSlot * TickBook.LANES + 1; // the slot's levels meet the target before it
                for (uint256 tick = end - TickBook.LANES; tick < end; ++tick) {
                    uint256 placedVol = placedWord & TickBook.LANE_MASK;
                    uint256 live = liveWord & TickBook.LANE_MASK;
                    placedWord >>= TickBook.LANE_BITS;
                    liveWord >>= TickBook.LANE_BITS;
                    if (live < remaining) {
                        remaining -= live;
                        valueTicks += live * tick;
                        continue;
                    }
                    // The level that meets the target: accepted whole, or up to a queue position.
                    c.clearingTick = tick;
                    c.marginalPos = live == remaining
                        ? placedVol
                        : placedVol == live // no withdrawn bids: queue positions are live volume
                            ? remaining
                            : _marginalFromHint(requestId, tick, remaining, hint);
                    c.valueTicks = valueTicks + remaining * tick;
                    c.accepted = target;
                    return c;
                }
            }
            // Short of the target: every live level is accepted whole; the clearing level is
            // the last live one, its whole queue accepted.
            c.accepted = target - remaining;
            c.valueTicks = valueTicks;
            if (lastSlot != 0) {
                (uint256 placedWord, uint256 liveWord) = TickBook.words(book_, lastSlot - 1, withdrawn);
                uint256 lane = TickBook.LANES - 1; // the slot has a live level: the search stops
                for (; (liveWord >> (lane * TickBook.LANE_BITS)) & TickBook.LANE_MASK == 0; --lane) {}
                c.clearingTick = (lastSlot - 1) * TickBook.LANES + lane + 1;
                c.marginalPos = (placedWord >> (lane * TickBook.LANE_BITS)) & TickBook.LANE_MASK;
            }
        }
    }

    /// @dev Queue position at `tick` up to which bids are accepted, when the level has
    ///      withdrawn bids ("holes"). The hint lists every bid at the level after the proved
    ///      prefix and before the marginal one, then the marginal one: a live bid that
    ///      reaches the wanted volume `take`.
    function _marginalFromHint(uint256 requestId, uint256 tick, uint256 take, uint256[] memory hint)
        private
        view
        returns (uint256)
    {
        if (hint.length == 0) revert MarginalHintRequired(tick);
        LevelProofs.Prefix memory q = LevelProofs.decode(_levelProof[requestId][tick]);
        uint256 marginal = _walkLevel(requestId, _requests[requestId].submissions, tick, hint, q);
        // q now includes the marginal bid: live before it < take <= live up to its end.
        if (marginal.isCancelled() || q.liveBefore - marginal.watts() >= take || q.liveBefore < take) {
            revert BadMarginalHint();
        }
        return q.placedBefore - q.liveBefore + take;
    }

    // ------------------------------------------------------------------ payouts

    /// @notice Credit the payouts of settled bids to their bidders. Anyone may call it.
    /// @param requestId A settled request.
    /// @param bidIds Bids to claim; losing bids are marked claimed with a zero payout.
    function claim(uint256 requestId, uint256[] calldata bidIds) external {
        _claim(requestId, bidIds, false);
    }

    /// @notice Claim settled winning bids and send each payout to its bidder at once, so a
    ///         winner is paid without sending a transaction. Anyone may call it (the utility
    ///         daemon does, right after selection). A bid already claimed, or one that won
    ///         nothing, is skipped, so a front-running `claim` cannot void a batch. Each
    ///         payment, in the request's currency, is made after the bid is marked and
    ///         counted: ether by a call with at most `PAY_GAS` gas, a token by its `transfer`
    ///         with at most `TOKEN_PAY_GAS`. One that fails (the recipient reverts or burns
    ///         the gas, the token refuses it or returns false) is credited to the pull balance
    ///         instead (`PaymentDeferred`), so a reverting or blacklisted recipient blocks nobody.
    ///         No lock: each payment comes after its bid's effects (checks, effects, call), so
    ///         a recipient re-entering `claimAndPay` or `claim` finds its own bid claimed and
    ///         pays later bids once, which this loop then skips (tests/contract/
    ///         test_token_settlement.py re-enters from a token hook); `withdraw` keeps its lock.
    /// @param requestId A settled request that is not paid on delivery.
    /// @param bidIds Bids to pay; unknown ids revert with `UnknownBid`.
    function claimAndPay(uint256 requestId, uint256[] calldata bidIds) external {
        _claim(requestId, bidIds, true);
    }

    /// @dev `claim` (`pay` false: credit, revert on a claimed bid) and `claimAndPay` (`pay`
    ///      true: skip claimed and losing bids, count each winner, then send its payout).
    function _claim(uint256 requestId, uint256[] calldata bidIds, bool pay) private {
        Request storage r = _requests[requestId];
        if (r.status != Status.Settled) revert NotSettled(requestId);
        if (r.flags & METERED != 0) revert PaidOnDelivery(requestId);
        uint256 submissions = r.submissions;
        BidStore.Bids storage bids = _bids[requestId];
        address token = _currency(r);
        uint256 claimedWatts;
        uint256 paid;
        for (uint256 i; i < bidIds.length; ++i) {
            uint256 bidId = bidIds[i];
            (address bidder, uint256 bid, uint256 key, uint256 shift) = bids.load(submissions, bidId);
            (uint256 w, uint256 amount) = _outcome(r, bid);
            if (bid.isClaimed()) {
                if (pay) continue;
                revert AlreadyClaimed(bidId);
            }
            if (pay && w == 0) continue;
            bids.setFlag(key, shift, PackedBids.CLAIMED);
            if (w == 0) continue;
            if (pay) {
                _disburse(requestId, r, w, amount);
                // One event per payment: `PayoutSent` carries all a listener needs (bid, watts,
                // amount). One that fails is credited as a claim would be (`PayoutCredited`),
                // then `PaymentDeferred`.
                if (_push(token, bidder, amount)) {
                    emit PayoutSent(requestId, bidder, bidId, w, amount);
                } else {
                    emit PayoutCredited(requestId, bidder, bidId, w, amount);
                    _defer(requestId, token, bidder, amount);
                }
            } else {
                emit PayoutCredited(requestId, bidder, bidId, w, amount);
                _credit(token, bidder, amount);
                claimedWatts += w;
                paid += amount;
            }
        }
        _disburse(requestId, r, claimedWatts, paid);
    }
}
