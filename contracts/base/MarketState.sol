// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {BidStore} from "../libraries/BidStore.sol";
import {PackedBids} from "../libraries/PackedBids.sol";
import {TickBook} from "../libraries/TickBook.sol";
import {ConsumerRegister} from "./ConsumerRegister.sol";
import {PullPayments} from "./PullPayments.sol";

/// @title MarketState
/// @notice The storage of every request (its header, bids, price-tick book, terms and
///         participants) and the rules that read it, shared by the core and its bases.
abstract contract MarketState is ConsumerRegister, PullPayments {
    using BidStore for BidStore.Bids;
    using PackedBids for uint256;
    using TickBook for TickBook.Book;

    // ------------------------------------------------------------------ constants

    /// @notice Number of price levels in every request's book.
    uint256 public constant TICKS = TickBook.TICKS;
    /// @notice Most bids accepted in one `submitBids` call.
    uint256 public constant MAX_BIDS_PER_CALL = 1 << BidStore.ID_BITS;
    /// @notice After `biddingDeadline + GRACE_PERIOD` anyone may call `selectWinners`.
    uint256 public constant GRACE_PERIOD = 1 hours;
    /// @dev Most signed entries (households) in one `submitSignedBids` call: 100 one-bid
    ///      entries take about 9M gas at worst, below the 2^24 cap on a transaction (EIP-7825).
    uint256 internal constant _MAX_SIGNED_ENTRIES = 100;
    /// @dev EIP-712 type hashes of the domain and of signed bids; arrays are hashed as
    ///      keccak256 of their packed elements. OpenZeppelin's EIP712 base is not used: it
    ///      keeps two strings in storage, which would shift the core's storage away from the
    ///      facet's (`dr compile` checks they are the same).
    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant _SIGNED_BIDS_TYPEHASH =
        keccak256("SignedBids(uint256 requestId,address bidder,uint256[] watts,uint256[] pricesPerKWh)");
    /// @dev W * s * (wei/kWh) / WS_PER_KWH = wei, since 1 kWh = 3.6e6 W*s.
    uint256 internal constant WS_PER_KWH = 3_600_000;
    /// @dev Most submissions per request: `Request.submissions` and `Participant.submission`
    ///      (1 + an index) are uint32.
    uint256 private constant _MAX_SUBMISSIONS = type(uint32).max;

    // Request flags (Request.flags).
    uint8 internal constant PAY_AS_BID = 1;
    uint8 internal constant SEALED = 2; // bids are committed, then revealed
    uint8 internal constant METERED = 4; // winners are paid on measured delivery
    uint8 internal constant WITHDRAWN = 8; // a bid was withdrawn: selection reads the cancelled book
    uint8 internal constant IN_TOKEN = 16; // settled in the ERC-20 `Request.token`, not ether

    // ------------------------------------------------------------------ storage types

    /// @dev Slot 0 is read and written by every submission; slot 1 at request and
    ///      selection (and by views); slot 2 at selection and by every claim: it holds all a
    ///      claim reads and writes besides slot 0 (what was accepted, how much of it is
    ///      claimed, and what of the reserve is still unpaid), so a claim reads two request
    ///      slots cold and writes one. Slot 3 only for a request in an ERC-20 token. Widths are
    ///      bounded by checks in the functions: a target below 2^40 W (1.1 TW; claimed <=
    ///      accepted <= target) and a budget below 2^96 base units (79 billion ETH).
    struct Request {
        // slot 0 (hot)
        uint40 biddingDeadline;
        uint40 eventStart;
        uint32 duration; // eventEnd - eventStart, seconds
        uint32 submissions; // number of submitBids calls; bid ids are below submissions << 6
        uint32 bidCount; // number of bids placed (withdrawn ones included)
        uint64 tickWei; // price of one tick, base units of the currency per kWh; cap = TICKS * tickWei
        Status status;
        uint8 flags; // PAY_AS_BID | SEALED | METERED | WITHDRAWN | IN_TOKEN
        // slot 1 (request, selection, views)
        uint40 targetWatts;
        uint96 budget;
        uint96 reserved; // budget kept for payouts at selection; the rest was refunded
        // slot 2 (selection, claims)
        uint40 acceptedWatts;
        uint8 clearingTick; // highest tick with accepted volume (0: nothing accepted)
        uint48 marginalPos; // queue position below which watts at clearingTick are accepted
        uint40 claimedWatts; // <= acceptedWatts
        uint96 unpaid; // reserved - paid out so far; once every accepted watt is paid, the dust
        // slot 3 (token requests only: read when flags has IN_TOKEN)
        address token; // the currency: address(0) for ether, else an ERC-20
    }

    /// @dev Stored terms; only requests created with terms have them.
    struct StoredTerms {
        // slot 0
        uint40 revealDeadline;
        uint32 reportWindow;
        uint32 disputeWindow;
        uint80 bondWei;
        uint40 selectedAt; // metered: when winners were selected
        uint32 noticePeriod; // metered: least notice between selection and eventStart for a penalty
        // slot 1
        uint128 unrevealedBonds; // bonds of commitments not revealed yet
        uint128 heldBonds; // bonds waiting for delivery settlement
    }

    /// @dev A consumer in a sealed or metered request.
    struct Participant {
        bytes32 commitment;
        uint32 submission; // 1 + the consumer's submission index; 0: no bids
        uint96 bond; // bond still held
        uint64 delivered; // W delivered, as reported or as the utility measured it
        Stage stage;
    }

    /// @dev Outcome of the scan over the book (memory only).
    struct Clearing {
        uint256 clearingTick; // highest tick with accepted volume
        uint256 marginalPos; // queue position at clearingTick below which watts are accepted
        uint256 accepted; // accepted watts
        uint256 valueTicks; // sum of accepted watts * tick, for pay-as-bid
    }

    // ------------------------------------------------------------------ storage

    /// @notice Number of requests created; request ids are 1..requestCount.
    uint256 public requestCount;

    mapping(uint256 => Request) internal _requests;
    mapping(uint256 => BidStore.Bids) internal _bids;
    mapping(uint256 => TickBook.Book) internal _books;
    // requestId => tick => proved queue prefix at that level (LevelProofs).
    mapping(uint256 => mapping(uint256 => uint256)) internal _levelProof;
    mapping(uint256 => StoredTerms) internal _terms;
    mapping(uint256 => mapping(address => Participant)) internal _participants;
    // Relayed bids (`submitSignedBids`): bidder => requestId >> 8 => bit (requestId & 255) set
    // once the bidder's signed submission for that request is placed (Permit2's unordered-nonce
    // bitmap): a household's first request of each 256 writes the word from zero, the rest 5,000.
    mapping(address => mapping(uint256 => uint256)) internal _signedBidsUsed;

    // ------------------------------------------------------------------ request lookups

    /// @dev The request, if it is open; reverts `UnknownRequest` or `RequestNotOpen`.
    function _openRequest(uint256 requestId) internal view returns (Request storage r) {
        r = _requests[requestId];
        if (r.status != Status.Open) {
            if (r.status == Status.None) revert UnknownRequest(requestId);
            revert RequestNotOpen(requestId);
        }
    }

    /// @dev The request, if it exists.
    function _knownRequest(uint256 requestId) internal view returns (Request storage r) {
        r = _requests[requestId];
        if (r.status == Status.None) revert UnknownRequest(requestId);
    }

    /// @dev When selection may start: the bidding deadline, or the reveal deadline for sealed bids.
    function _closesAt(uint256 requestId, Request storage r) internal view returns (uint256) {
        return r.flags & SEALED != 0 ? _terms[requestId].revealDeadline : r.biddingDeadline;
    }

    /// @dev The EIP-712 domain of signed bids: "DemandReduction", "1", this chain, this
    ///      contract (the market's address also when the facet runs on the market's storage).
    function _domainSeparator() internal view returns (bytes32) {
        return keccak256(
            abi.encode(_DOMAIN_TYPEHASH, keccak256("DemandReduction"), keccak256("1"), block.chainid, address(this))
        );
    }

    // ------------------------------------------------------------------ placing bids

    /// @dev Validate a batch of bids and store it as the next submission, in `bidder`'s name
    ///      (the caller, or the signer of relayed bids).
    function _record(
        uint256 requestId,
        Request storage r,
        address bidder,
        uint256[] calldata watts,
        uint256[] calldata prices
    ) internal returns (uint256 firstBidId) {
        uint256 n = watts.length;
        if (n != prices.length) revert LengthMismatch(n, prices.length);
        if (n == 0) revert NoBids();
        if (n > MAX_BIDS_PER_CALL) revert TooManyBids(MAX_BIDS_PER_CALL);
        uint256 submission = r.submissions;
        // The counter is a uint32, and 1 + the index is stored as Participant.submission: at
        // 2^32 - 1 it would wrap to 0, making every bid unknown and the next submission
        // overwrite the first one's bidder (F-12).
        if (submission >= _MAX_SUBMISSIONS) revert TooManySubmissions(_MAX_SUBMISSIONS);
        uint256 tickWei = r.tickWei;
        firstBidId = BidStore.firstId(submission);
        BidStore.Bids storage bids = _bids[requestId];
        TickBook.Book storage book_ = _books[requestId];
        (uint256 key, uint256 word) = BidStore.open(submission, bidder, n);
        for (uint256 i; i < n; ++i) {
            (key, word) = bids.append(key, word, i, _place(book_, tickWei, i, watts[i], prices[i]));
        }
        bids.close(key, word);
        // One event per submission: the bids are ids firstBidId .. firstBidId + n - 1, and
        // their watts and prices are in the calldata and in `submissionBids`.
        emit BidsSubmitted(requestId, bidder, firstBidId, n);
        // Unchecked: `submission` < 2^32 - 1 (checked above). `bidCount` is only reported
        // (getRequest), never read by the market: past 2^32 bids (~2^45 gas) it wraps harmlessly.
        unchecked {
            r.submissions = uint32(submission + 1);
            r.bidCount = uint32(r.bidCount + n);
        }
    }

    /// @dev Validate one bid and append it to the queue of its price level; returns it packed.
    function _place(TickBook.Book storage book_, uint256 tickWei, uint256 index, uint256 w, uint256 p)
        private
        returns (uint256)
    {
        if (w == 0) revert ZeroWatts(index);
        if (w > PackedBids.MAX_WATTS) revert WattsTooLarge(index, PackedBids.MAX_WATTS);
        if (p == 0) revert PriceZero(index);
        // Unchecked: tickWei is in 1..2^64 - 1, tick <= TICKS, w < 2^24 and pos < 2^49.
        unchecked {
            uint256 tick = p / tickWei;
            if (tick > TICKS) revert PriceAboveCap(index, tickWei * TICKS);
            if (tick * tickWei != p) revert PriceOffTick(index, tickWei); // also tick 0 (p < tickWei)
            uint256 pos = book_.place(tick, w);
            if (pos + w > PackedBids.MAX_LEVEL) revert PriceLevelFull(tick); // undoes the placement
            return PackedBids.pack(w, tick, pos);
        }
    }

    // ------------------------------------------------------------------ outcomes

    /// @dev Bidder, packed bid, storage key and bit offset of `bidId`; reverts if unknown.
    function _loadBid(uint256 requestId, uint256 submissions, uint256 bidId)
        internal
        view
        returns (address bidder, uint256 bid, uint256 key, uint256 shift)
    {
        return _bids[requestId].load(submissions, bidId);
    }

    /// @dev Accepted watts and payout of one packed bid; zero unless settled.
    function _outcome(Request storage r, uint256 bid) internal view returns (uint256 w, uint256 amount) {
        if (r.status != Status.Settled || bid.isCancelled()) return (0, 0);
        uint256 tick = bid.tick();
        uint256 clearingTick = r.clearingTick;
        if (tick > clearingTick) return (0, 0);
        w = bid.watts();
        if (tick == clearingTick) {
            uint256 pos = bid.queuePos();
            uint256 limit = r.marginalPos;
            if (pos >= limit) return (0, 0);
            if (limit - pos < w) w = limit - pos;
        }
        uint256 priceTick = r.flags & PAY_AS_BID == 0 ? clearingTick : tick;
        amount = w * r.duration * priceTick * r.tickWei / WS_PER_KWH;
    }

    /// @dev Accepted watts and promised payout over a participant's submission (1-based).
    function _participantOutcome(uint256 requestId, Request storage r, uint256 submission)
        internal
        view
        returns (uint256 accepted, uint256 promised)
    {
        if (submission == 0) return (0, 0);
        uint256 first = BidStore.firstId(submission - 1);
        uint256 total = r.submissions;
        uint256 n = _bids[requestId].count(submission - 1);
        for (uint256 i; i < n; ++i) {
            (, uint256 bid,,) = _loadBid(requestId, total, first | i);
            (uint256 w, uint256 amount) = _outcome(r, bid);
            accepted += w;
            promised += amount;
        }
    }

    /// @dev Mark every bid of a submission (1-based) claimed.
    function _markClaimed(uint256 requestId, Request storage r, uint256 submission) internal {
        uint256 first = BidStore.firstId(submission - 1);
        uint256 total = r.submissions;
        BidStore.Bids storage bids = _bids[requestId];
        uint256 n = bids.count(submission - 1);
        for (uint256 i; i < n; ++i) {
            (,, uint256 key, uint256 shift) = _loadBid(requestId, total, first | i);
            bids.setFlag(key, shift, PackedBids.CLAIMED);
        }
    }

    /// @dev The currency of request `r`: address(0) for ether (without reading slot 3).
    function _currency(Request storage r) internal view returns (address) {
        return r.flags & IN_TOKEN == 0 ? address(0) : r.token;
    }

    /// @dev Credit `amount` in request `r`'s currency to `account`'s pull balance.
    function _credit(Request storage r, address account, uint256 amount) internal {
        _credit(_currency(r), account, amount);
    }

    /// @dev Report and dispute deadlines of a metered request. The report window runs from
    ///      the end of the event, or from the selection if that came later, so a late
    ///      selection cannot leave winners without time to report.
    function _deliveryDeadlines(Request storage r, StoredTerms storage t)
        internal
        view
        returns (uint256 reportDeadline, uint256 disputeDeadline)
    {
        uint256 opens = uint256(r.eventStart) + r.duration;
        uint256 selectedAt = t.selectedAt;
        if (selectedAt > opens) opens = selectedAt;
        reportDeadline = opens + t.reportWindow;
        disputeDeadline = reportDeadline + t.disputeWindow;
    }

    /// @dev Count `claimedWatts` accepted watts worth `paid` base units as taken from the reserve;
    ///      once every accepted watt is, the rounding dust (what is left unpaid) goes to the
    ///      utility. `paid` <= `unpaid`: every payout is its watts' share of the reserve,
    ///      rounded down. `unpaid` keeps the dust afterwards, so paidOut = reserved - unpaid.
    function _disburse(uint256 requestId, Request storage r, uint256 claimedWatts, uint256 paid) internal {
        if (claimedWatts == 0) return;
        uint256 totalClaimed = r.claimedWatts + claimedWatts;
        uint256 unpaid = r.unpaid - paid;
        r.claimedWatts = uint40(totalClaimed);
        r.unpaid = uint96(unpaid);
        if (totalClaimed == r.acceptedWatts && unpaid != 0) {
            // Every accepted watt is paid: what is left of the reserve is rounding dust.
            _credit(r, utility, unpaid);
            emit DustReturned(requestId, unpaid);
        }
    }
}
