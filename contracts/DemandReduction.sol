// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// @title DemandReduction
/// @notice A uniform-price (pay-as-clear) or pay-as-bid market for demand reduction.
///         The utility escrows a budget and asks for a number of watts over an event
///         window; consumers offer reductions at a unit price in wei per kWh; after the
///         bidding deadline the cheapest offers are accepted until the target is met,
///         the marginal offer in part.
/// @dev    Scale comes from a price-tick book: every request has `TICKS` price levels
///         (`tickWei`, 2*tickWei, ..., TICKS*tickWei = the price cap) and keeps one
///         aggregate volume per level. Selection scans the fixed-size book, never the
///         bids, so its cost does not depend on how many bids were placed. Each bid
///         records its queue position at its price level, so a winner's accepted watts
///         are computed in O(1) when it claims. Money only moves by pull (`withdraw`).
///         See docs/contract.md for the state machine, units, tie-breaking and rounding.
contract DemandReduction {
    // ------------------------------------------------------------------ constants

    /// @notice Number of price levels in every request's book.
    uint256 public constant TICKS = 128;
    /// @notice Most bids accepted in one `submitBids` call.
    uint256 public constant MAX_BIDS_PER_CALL = 64;
    /// @notice After `biddingDeadline + GRACE_PERIOD` anyone may call `selectWinners`.
    uint256 public constant GRACE_PERIOD = 1 hours;
    /// @dev W * s * (wei/kWh) / WS_PER_KWH = wei, since 1 kWh = 3.6e6 W*s.
    uint256 private constant WS_PER_KWH = 3_600_000;

    // Bids are stored per submission (one `submitBids` call). Bid id = submission << 6 | index.
    // A bid packs into 82 bits:
    //   bits  0..31  watts           (uint32, > 0)
    //   bits 32..39  price tick      (1..TICKS)
    //   bits 40..79  queue position  (uint40: watts placed at this tick before the bid)
    //   bit  80      cancelled;  bit 81 claimed
    // Storage key submission * 32 + 0, the header: bidder (bits 0..159), bid count
    // (bits 160..166) and bid 0 (bits 168..249). Keys submission * 32 + j, j = 1..21, hold
    // bids 3j-2 .. 3j, 82 bits apart. So one bid costs one new slot, five bids three.
    uint256 private constant _BID_BITS = 82;
    uint256 private constant _BID_MASK = (1 << 82) - 1;
    uint256 private constant _TICK_SHIFT = 32;
    uint256 private constant _POS_SHIFT = 40;
    uint256 private constant _CANCELLED = 1 << 80;
    uint256 private constant _CLAIMED = 1 << 81;
    uint256 private constant _COUNT_SHIFT = 160;
    uint256 private constant _HEADER_BID_SHIFT = 168;
    uint256 private constant _ID_BITS = 6; // MAX_BIDS_PER_CALL = 2^6
    uint256 private constant _KEYS_PER_SUBMISSION = 32;

    // Book layout: TICKS uint64 volumes packed four to a slot, tick t at slot (t-1)/4,
    // lane (t-1)%4. `_placed` only grows (it defines queue positions); `_cancelled`
    // holds the volume withdrawn again. Live volume = placed - cancelled.
    uint256 private constant _LANES = 4;
    uint256 private constant _BOOK_SLOTS = TICKS / _LANES;

    // Request flags (Request.flags).
    uint8 private constant _PAY_AS_BID = 1;
    uint8 private constant _SEALED = 2; // bids are committed, then revealed
    uint8 private constant _METERED = 4; // winners are paid on measured delivery

    // ------------------------------------------------------------------ types

    /// @notice How accepted watts are paid.
    enum PricingRule {
        Uniform, // every accepted watt earns the clearing (marginal accepted) price
        PayAsBid // every accepted watt earns its own bid price
    }

    /// @notice Life cycle of a request.
    enum Status {
        None,
        Open, // accepting bids until biddingDeadline
        Settled, // winners selected, payouts claimable
        Cancelled // cancelled before the deadline, budget refunded
    }

    /// @notice Enrolment of a consumer in registered mode.
    enum Enrolment {
        None,
        Requested,
        Enrolled
    }

    /// @dev Slot 0 is read and written by every submission; the rest is touched at
    ///      request, settlement and claim. Widths are bounded by checks in the functions.
    struct Request {
        // slot 0 (hot)
        uint40 biddingDeadline;
        uint40 eventStart;
        uint32 duration; // eventEnd - eventStart, seconds
        uint32 submissions; // number of submitBids calls; bid ids are below submissions << 6
        uint32 bidCount; // number of bids placed (withdrawn ones included)
        uint64 tickWei; // price of one tick; cap = TICKS * tickWei
        Status status;
        uint8 flags; // _PAY_AS_BID | _SEALED | _METERED
        // slot 1
        uint64 targetWatts;
        uint128 budget;
        uint8 clearingTick; // highest tick with accepted volume (0: nothing accepted)
        uint40 marginalPos; // queue position below which watts at clearingTick are accepted
        // slot 2
        uint64 acceptedWatts;
        uint128 reserved; // budget kept for payouts; the rest was refunded
        uint64 claimedWatts;
        // slot 3
        uint128 paidOut;
    }

    /// @notice Optional terms of a request (`requestReductionWithTerms`).
    struct Terms {
        uint256 revealWindow; // seconds after biddingDeadline for reveals; 0: open bids
        uint256 reportWindow; // seconds after eventEnd (or a later selection) for meter reports; 0: pay on acceptance
        uint256 disputeWindow; // seconds after the report deadline for the utility to confirm or dispute
        uint256 bondWei; // bond per participant, 0: none (needs a sealed or metered request)
    }

    /// @notice Where a consumer stands in a sealed or metered request.
    enum Stage {
        None,
        Committed, // sealed: a commitment (and any bond) is in, not yet revealed
        Bonded, // open and metered: the bond is posted, no bids yet
        Bid, // bids are in the book (placed, or revealed)
        Reported, // metered: the consumer reported its delivery
        Settled // payout, penalty and bond are settled
    }

    /// @dev Stored terms; only requests created with terms have them.
    struct StoredTerms {
        // slot 0
        uint40 revealDeadline;
        uint32 reportWindow;
        uint32 disputeWindow;
        uint96 bondWei;
        uint40 selectedAt; // metered: when winners were selected
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

    /// @notice A request's terms with their deadlines.
    struct TermsView {
        bool sealedBids;
        bool metered;
        uint256 revealDeadline;
        uint256 reportDeadline;
        uint256 disputeDeadline;
        uint256 bondWei;
        uint256 unrevealedBonds;
        uint256 heldBonds;
        uint256 selectedAt; // metered: when winners were selected (0 before)
    }

    /// @notice A consumer's standing in a sealed or metered request.
    struct ParticipantView {
        Stage stage;
        bytes32 commitment;
        bool hasBids;
        uint256 firstBidId;
        uint256 bidCount;
        uint256 bond;
        uint256 acceptedWatts;
        uint256 promisedPayout; // payout if the accepted watts are fully delivered
        uint256 deliveredWatts;
    }

    /// @dev Outcome of the scan over the book (memory only).
    struct Clearing {
        uint256 clearingTick; // highest tick with accepted volume
        uint256 marginalPos; // queue position at clearingTick below which watts are accepted
        uint256 accepted; // accepted watts
        uint256 valueTicks; // sum of accepted watts * tick, for pay-as-bid
    }

    /// @notice A request as stored, with derived fields.
    struct RequestView {
        Status status;
        PricingRule rule;
        uint256 targetWatts;
        uint256 eventStart;
        uint256 eventEnd;
        uint256 biddingDeadline;
        uint256 maxPriceWeiPerKWh;
        uint256 tickWei;
        uint256 budget;
        uint256 submissions;
        uint256 bidCount;
        uint256 clearingPriceWeiPerKWh;
        uint256 acceptedWatts;
        uint256 reserved;
        uint256 paidOut;
        uint256 claimedWatts;
    }

    /// @notice A bid with its outcome (zero until the request is settled).
    struct BidView {
        uint256 bidId;
        address bidder;
        uint256 watts;
        uint256 priceWeiPerKWh;
        bool cancelled;
        bool claimed;
        uint256 acceptedWatts;
        uint256 payout;
    }

    // ------------------------------------------------------------------ storage

    /// @notice The utility: it requests, cancels and settles, and receives refunds.
    address public utility;
    /// @notice The address that may accept the utility role (two-step transfer).
    address public pendingUtility;
    /// @notice True when only enrolled consumers may bid; fixed at deploy.
    bool public immutable registrationRequired;
    /// @notice Number of requests created; request ids are 1..requestCount.
    uint256 public requestCount;

    mapping(uint256 => Request) private _requests;
    mapping(uint256 => mapping(uint256 => uint256)) private _bidWords; // requestId => storage key => word
    mapping(uint256 => uint256[_BOOK_SLOTS]) private _placed;
    mapping(uint256 => uint256[_BOOK_SLOTS]) private _cancelled;
    mapping(address => uint256) private _owed;
    mapping(address => Enrolment) private _enrolment;
    // requestId => tick => proved queue prefix at that level (selectWinnersWithHint in
    // several transactions): placedBefore (bits 0..39), liveBefore (40..79), nextId (80..).
    mapping(uint256 => mapping(uint256 => uint256)) private _levelProof;
    uint256 private _lock = 1;
    mapping(uint256 => StoredTerms) private _terms;
    mapping(uint256 => mapping(address => Participant)) private _participants;

    // ------------------------------------------------------------------ events

    /// @notice The utility role transfer was started.
    event UtilityTransferStarted(address indexed previousUtility, address indexed newUtility);
    /// @notice The utility role changed hands.
    event UtilityTransferred(address indexed previousUtility, address indexed newUtility);
    /// @notice A consumer asked to be enrolled (registered mode).
    event EnrolmentRequested(address indexed consumer);
    /// @notice A consumer was enrolled; `onRequest` tells whether it had asked first.
    event ConsumerEnrolled(address indexed consumer, bool onRequest);
    /// @notice A consumer was removed from the register.
    event ConsumerUnenrolled(address indexed consumer);
    /// @notice A demand reduction was requested and its budget escrowed.
    event ReductionRequested(
        uint256 indexed requestId,
        uint256 targetWatts,
        uint256 eventStart,
        uint256 eventEnd,
        uint256 biddingDeadline,
        uint256 maxPriceWeiPerKWh,
        PricingRule pricingRule,
        uint256 budget
    );
    /// @notice A bid was placed.
    event BidSubmitted(
        uint256 indexed requestId, address indexed bidder, uint256 bidId, uint256 watts, uint256 priceWeiPerKWh
    );
    /// @notice A bid was withdrawn before the deadline.
    event BidCancelled(uint256 indexed requestId, address indexed bidder, uint256 bidId);
    /// @notice A request was cancelled and its budget refunded to the utility.
    event RequestCancelled(uint256 indexed requestId, uint256 refund);
    /// @notice Winners were selected.
    event WinnersSelected(
        uint256 indexed requestId,
        uint256 clearingPriceWeiPerKWh,
        uint256 acceptedWatts,
        uint256 totalPayout,
        uint256 refund
    );
    /// @notice A winning bid's payout was credited to its bidder.
    event PayoutCredited(
        uint256 indexed requestId, address indexed bidder, uint256 bidId, uint256 acceptedWatts, uint256 amount
    );
    /// @notice Rounding dust of a fully claimed request went back to the utility.
    event DustReturned(uint256 indexed requestId, uint256 amount);
    /// @notice Part of a price level's queue was proved ahead of `selectWinnersWithHint`.
    event LevelPrefixProved(uint256 indexed requestId, uint256 tick, uint256 placedBefore, uint256 nextBidId);
    /// @notice A request was created with terms (`requestReductionWithTerms`). Deadlines
    ///         are 0 where the feature is off.
    event RequestTerms(
        uint256 indexed requestId,
        uint256 revealDeadline,
        uint256 reportDeadline,
        uint256 disputeDeadline,
        uint256 bondWei
    );
    /// @notice A consumer committed to sealed bids (or replaced its commitment).
    event BidsCommitted(uint256 indexed requestId, address indexed bidder, bytes32 commitment);
    /// @notice A consumer revealed its sealed bids; they follow as `BidSubmitted` events.
    event BidsRevealed(uint256 indexed requestId, address indexed bidder, uint256 firstBidId, uint256 count);
    /// @notice A consumer posted its bond.
    event BondPosted(uint256 indexed requestId, address indexed consumer, uint256 amount);
    /// @notice Bonds of commitments never revealed went to the utility at selection.
    event BondsForfeited(uint256 indexed requestId, uint256 amount);
    /// @notice A consumer reported the reduction it delivered, in W averaged over the window.
    event DeliveryReported(uint256 indexed requestId, address indexed consumer, uint256 deliveredWatts);
    /// @notice The utility, as meter operator, set a lower delivery than reported.
    event DeliveryDisputed(
        uint256 indexed requestId, address indexed consumer, uint256 reportedWatts, uint256 meteredWatts
    );
    /// @notice A participant was settled: `payout` and `bondReturned` to the consumer,
    ///         `toUtility` (unearned payout and penalty) to the utility.
    event DeliverySettled(
        uint256 indexed requestId,
        address indexed consumer,
        uint256 acceptedWatts,
        uint256 deliveredWatts,
        uint256 payout,
        uint256 penalty,
        uint256 bondReturned,
        uint256 toUtility
    );
    /// @notice Ether was paid out of the contract.
    event Withdrawal(address indexed account, address indexed to, uint256 amount);

    // ------------------------------------------------------------------ errors

    /// @notice The caller is not the utility.
    error NotUtility();
    /// @notice The caller is not the pending utility.
    error NotPendingUtility();
    /// @notice The zero address was given where an account is needed.
    error ZeroAddress();
    /// @notice Enrolment calls on a contract deployed without registration.
    error RegistrationDisabled();
    /// @notice `consumer` is already enrolled.
    error AlreadyEnrolled(address consumer);
    /// @notice `consumer` is not enrolled (registered mode).
    error NotEnrolled(address consumer);
    /// @notice A request for zero watts.
    error ZeroTarget();
    /// @notice The target is above `max` watts.
    error TargetTooLarge(uint256 max);
    /// @notice The bidding deadline is not in the future.
    error DeadlineInPast(uint256 deadline, uint256 nowTimestamp);
    /// @notice The event would start before bidding closes.
    error EventBeforeDeadline(uint256 eventStart, uint256 deadline);
    /// @notice The event window is empty or reversed.
    error EmptyEventWindow(uint256 eventStart, uint256 eventEnd);
    /// @notice A time or duration does not fit its storage field.
    error TimeOutOfRange();
    /// @notice A price cap of zero.
    error ZeroPrice();
    /// @notice The cap is not a multiple of `ticks`.
    error CapNotOnTickGrid(uint256 cap, uint256 ticks);
    /// @notice The cap is above `max` wei per kWh.
    error CapTooLarge(uint256 max);
    /// @notice The escrow does not cover the target at the cap.
    error BudgetTooLow(uint256 required, uint256 provided);
    /// @notice The escrow is above `max` wei.
    error BudgetTooLarge(uint256 max);
    /// @notice No request has this id.
    error UnknownRequest(uint256 requestId);
    /// @notice The request is settled or cancelled.
    error RequestNotOpen(uint256 requestId);
    /// @notice The bidding deadline has passed.
    error BiddingClosed(uint256 deadline);
    /// @notice Selection before the bidding deadline has passed.
    error BiddingStillOpen(uint256 deadline);
    /// @notice Only the utility may settle before `openToAllAt`.
    error GracePeriodNotOver(uint256 openToAllAt);
    /// @notice An empty bid list.
    error NoBids();
    /// @notice The watts and price arrays differ in length.
    error LengthMismatch(uint256 watts, uint256 prices);
    /// @notice More than `max` bids in one call.
    error TooManyBids(uint256 max);
    /// @notice Bid `index` of the call offers zero watts.
    error ZeroWatts(uint256 index);
    /// @notice Bid `index` of the call offers more than `max` watts.
    error WattsTooLarge(uint256 index, uint256 max);
    /// @notice Bid `index` of the call has a zero price.
    error PriceZero(uint256 index);
    /// @notice Bid `index` of the call is priced above the cap.
    error PriceAboveCap(uint256 index, uint256 cap);
    /// @notice Bid `index` of the call is not a multiple of `tickWei`.
    error PriceOffTick(uint256 index, uint256 tickWei);
    /// @notice Price level `tick` would exceed 2^40 - 1 watts.
    error PriceLevelFull(uint256 tick);
    /// @notice No bid has this id in the request.
    error UnknownBid(uint256 bidId);
    /// @notice The caller did not place bid `bidId`.
    error NotBidder(uint256 bidId);
    /// @notice Bid `bidId` was already withdrawn.
    error BidAlreadyCancelled(uint256 bidId);
    /// @notice Bid `bidId` was already claimed.
    error AlreadyClaimed(uint256 bidId);
    /// @notice Claims need a settled request.
    error NotSettled(uint256 requestId);
    /// @notice The clearing level has withdrawn bids: use `selectWinnersWithHint`.
    error MarginalHintRequired(uint256 tick);
    /// @notice The hint is not the complete queue up to the marginal bid.
    error BadMarginalHint();
    /// @notice The caller is owed nothing.
    error NothingOwed();
    /// @notice The recipient refused the ether.
    error TransferFailed();
    /// @notice A withdrawal re-entered the contract.
    error Reentrancy();
    /// @notice A terms value does not fit its field, or the combination makes no sense.
    error BadTerms();
    /// @notice The reveal window would end after the event starts.
    error RevealAfterEventStart(uint256 revealDeadline, uint256 eventStart);
    /// @notice The request takes sealed bids only: use `commitBids` and `revealBids`.
    error SealedRequest(uint256 requestId);
    /// @notice The request does not take sealed bids.
    error NotSealed(uint256 requestId);
    /// @notice The request does not pay on delivery.
    error NotMetered(uint256 requestId);
    /// @notice Payouts of a metered request are settled with `settleDelivery`, not `claim`.
    error PaidOnDelivery(uint256 requestId);
    /// @notice The value sent is not the bond this call needs.
    error WrongBond(uint256 required, uint256 sent);
    /// @notice The consumer has already committed, bonded or bid where that is not allowed.
    error WrongStage(address consumer, Stage stage);
    /// @notice Reveals are accepted only after the bidding deadline, until the reveal deadline.
    error RevealWindowClosed(uint256 opensAfter, uint256 closesAt);
    /// @notice The revealed bids and salt do not hash to the caller's commitment.
    error CommitmentMismatch();
    /// @notice Meter reports are accepted after the event ends, until the report deadline.
    error ReportWindowClosed(uint256 opensAt, uint256 closesAt);
    /// @notice The utility's confirm or dispute came after the dispute deadline.
    error DisputeWindowClosed(uint256 closedAt);
    /// @notice A dispute must lower the reported delivery.
    error NotADispute(uint256 reportedWatts, uint256 meteredWatts);
    /// @notice The participant cannot be settled yet.
    error TooEarly(uint256 at);
    /// @notice A delivery figure does not fit in 64 bits.
    error DeliveryTooLarge(uint256 max);

    // ------------------------------------------------------------------ modifiers

    modifier onlyUtility() {
        if (msg.sender != utility) revert NotUtility();
        _;
    }

    modifier nonReentrant() {
        if (_lock != 1) revert Reentrancy();
        _lock = 2;
        _;
        _lock = 1;
    }

    // ------------------------------------------------------------------ setup

    /// @param registrationRequired_ When true, only consumers enrolled by the utility may bid.
    constructor(bool registrationRequired_) {
        utility = msg.sender;
        registrationRequired = registrationRequired_;
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

    // ------------------------------------------------------------------ enrolment

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
        (requestId,) =
            _newRequest(targetWatts, eventStart, eventEnd, biddingDeadline, maxPriceWeiPerKWh, pricingRule);
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
        if (
            terms.revealWindow > type(uint32).max || terms.reportWindow > type(uint32).max
                || terms.disputeWindow > type(uint32).max || terms.bondWei > type(uint96).max
        ) revert BadTerms();
        bool sealedBids = terms.revealWindow != 0;
        bool metered = terms.reportWindow != 0;
        // A bond needs something to secure; a dispute window needs reports.
        if ((terms.bondWei != 0 && !sealedBids && !metered) || (terms.disputeWindow != 0 && !metered)) {
            revert BadTerms();
        }
        Request storage r;
        (requestId, r) =
            _newRequest(targetWatts, eventStart, eventEnd, biddingDeadline, maxPriceWeiPerKWh, pricingRule);
        uint256 revealDeadline = sealedBids ? biddingDeadline + terms.revealWindow : 0;
        if (revealDeadline > eventStart) revert RevealAfterEventStart(revealDeadline, eventStart);
        r.flags |= (sealedBids ? _SEALED : 0) | (metered ? _METERED : 0);
        StoredTerms storage t = _terms[requestId];
        t.revealDeadline = uint40(revealDeadline);
        t.reportWindow = uint32(terms.reportWindow);
        t.disputeWindow = uint32(terms.disputeWindow);
        t.bondWei = uint96(terms.bondWei);
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
        uint256 targetWatts,
        uint256 eventStart,
        uint256 eventEnd,
        uint256 biddingDeadline,
        uint256 maxPriceWeiPerKWh,
        PricingRule pricingRule
    ) private returns (uint256 requestId, Request storage r) {
        if (targetWatts == 0) revert ZeroTarget();
        if (targetWatts > type(uint64).max) revert TargetTooLarge(type(uint64).max);
        if (biddingDeadline <= block.timestamp) revert DeadlineInPast(biddingDeadline, block.timestamp);
        if (eventStart < biddingDeadline) revert EventBeforeDeadline(eventStart, biddingDeadline);
        if (eventEnd <= eventStart) revert EmptyEventWindow(eventStart, eventEnd);
        if (eventStart > type(uint40).max || eventEnd - eventStart > type(uint32).max) revert TimeOutOfRange();
        if (maxPriceWeiPerKWh == 0) revert ZeroPrice();
        if (maxPriceWeiPerKWh % TICKS != 0) revert CapNotOnTickGrid(maxPriceWeiPerKWh, TICKS);
        if (maxPriceWeiPerKWh / TICKS > type(uint64).max) revert CapTooLarge(uint256(type(uint64).max) * TICKS);
        if (msg.value > type(uint128).max) revert BudgetTooLarge(type(uint128).max);
        uint256 duration = eventEnd - eventStart;
        // < 2^64 * 2^32 * 2^71: no overflow.
        uint256 required = targetWatts * duration * maxPriceWeiPerKWh / WS_PER_KWH;
        if (msg.value < required) revert BudgetTooLow(required, msg.value);

        requestId = ++requestCount;
        r = _requests[requestId];
        r.biddingDeadline = uint40(biddingDeadline);
        r.eventStart = uint40(eventStart);
        r.duration = uint32(duration);
        r.tickWei = uint64(maxPriceWeiPerKWh / TICKS);
        r.status = Status.Open;
        r.flags = pricingRule == PricingRule.PayAsBid ? _PAY_AS_BID : 0;
        r.targetWatts = uint64(targetWatts);
        r.budget = uint128(msg.value);
        emit ReductionRequested(
            requestId, targetWatts, eventStart, eventEnd, biddingDeadline, maxPriceWeiPerKWh, pricingRule, msg.value
        );
    }

    /// @notice Cancel an open request before its deadline and refund its budget.
    /// @param requestId The request to cancel.
    function cancelRequest(uint256 requestId) external onlyUtility {
        Request storage r = _openRequest(requestId);
        if (block.timestamp > r.biddingDeadline) revert BiddingClosed(r.biddingDeadline);
        r.status = Status.Cancelled;
        uint256 refund = r.budget;
        _owed[msg.sender] += refund;
        emit RequestCancelled(requestId, refund);
    }

    // ------------------------------------------------------------------ bids

    /// @notice Offer reductions: `watts[i]` W at `pricesWeiPerKWh[i]` wei per kWh.
    /// @dev Prices must be positive multiples of the request's tick, at most the cap.
    ///      Bids at equal price are served first come, first served. Bid ids are
    ///      `submission << 6 | index`, increasing in submission order.
    /// @param requestId An open request whose deadline has not passed.
    /// @param watts Reductions in W, each in 1..2^32-1.
    /// @param pricesWeiPerKWh Unit prices, wei per kWh.
    /// @return firstBidId Id of the first new bid; the others follow consecutively.
    function submitBids(uint256 requestId, uint256[] calldata watts, uint256[] calldata pricesWeiPerKWh)
        external
        returns (uint256 firstBidId)
    {
        return _submit(requestId, watts, pricesWeiPerKWh);
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
        return _submit(requestId, watts, pricesWeiPerKWh);
    }

    function _submit(uint256 requestId, uint256[] calldata watts, uint256[] calldata prices)
        private
        returns (uint256 firstBidId)
    {
        if (registrationRequired && _enrolment[msg.sender] != Enrolment.Enrolled) revert NotEnrolled(msg.sender);
        Request storage r = _openRequest(requestId);
        if (block.timestamp > r.biddingDeadline) revert BiddingClosed(r.biddingDeadline);
        uint256 flags = r.flags;
        if (flags & _SEALED != 0) revert SealedRequest(requestId);
        if (flags & _METERED == 0) return _record(requestId, r, watts, prices);
        // Metered: one submission per consumer, since its meter measures all its bids at once.
        Participant storage p = _participants[requestId][msg.sender];
        Stage stage = p.stage;
        if (stage == Stage.None) {
            uint256 bond = _terms[requestId].bondWei;
            if (bond != 0) revert WrongBond(bond, 0); // postBond first
        } else if (stage != Stage.Bonded) {
            revert WrongStage(msg.sender, stage); // one submission per consumer
        }
        firstBidId = _record(requestId, r, watts, prices);
        p.submission = uint32((firstBidId >> _ID_BITS) + 1);
        p.stage = Stage.Bid;
    }

    /// @dev Validate a batch of bids and store it as the next submission, from msg.sender.
    function _record(uint256 requestId, Request storage r, uint256[] calldata watts, uint256[] calldata prices)
        private
        returns (uint256 firstBidId)
    {
        uint256 n = watts.length;
        if (n != prices.length) revert LengthMismatch(n, prices.length);
        if (n == 0) revert NoBids();
        if (n > MAX_BIDS_PER_CALL) revert TooManyBids(MAX_BIDS_PER_CALL);
        uint256 submission = r.submissions;
        uint256 tickWei = r.tickWei;
        firstBidId = submission << _ID_BITS;
        mapping(uint256 => uint256) storage words = _bidWords[requestId];
        uint256 key = submission * _KEYS_PER_SUBMISSION;
        uint256 word = uint256(uint160(msg.sender)) | (n << _COUNT_SHIFT);
        for (uint256 i; i < n; ++i) {
            uint256 bid = _place(requestId, tickWei, i, watts[i], prices[i]);
            emit BidSubmitted(requestId, msg.sender, firstBidId | i, watts[i], prices[i]);
            if (i == 0) {
                word |= bid << _HEADER_BID_SHIFT;
            } else {
                uint256 lane = (i - 1) % 3;
                if (lane == 0) {
                    words[key++] = word;
                    word = 0;
                }
                word |= bid << (lane * _BID_BITS);
            }
        }
        words[key] = word;
        // Both counters stay below 2^32: each bid costs > 2^12 gas, so 2^32 bids cannot
        // be placed in any chain's lifetime.
        r.submissions = uint32(submission + 1);
        r.bidCount = uint32(r.bidCount + n);
    }

    // ------------------------------------------------------------------ sealed bids and bonds

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
        if (registrationRequired && _enrolment[msg.sender] != Enrolment.Enrolled) revert NotEnrolled(msg.sender);
        Request storage r = _openRequest(requestId);
        if (r.flags & _SEALED == 0) revert NotSealed(requestId);
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
        if (flags & _SEALED == 0) revert NotSealed(requestId);
        StoredTerms storage t = _terms[requestId];
        if (block.timestamp <= r.biddingDeadline || block.timestamp > t.revealDeadline) {
            revert RevealWindowClosed(r.biddingDeadline, t.revealDeadline);
        }
        Participant storage p = _participants[requestId][msg.sender];
        if (p.stage != Stage.Committed) revert WrongStage(msg.sender, p.stage);
        if (commitmentOf(requestId, msg.sender, watts, pricesWeiPerKWh, salt) != p.commitment) {
            revert CommitmentMismatch();
        }
        firstBidId = _record(requestId, r, watts, pricesWeiPerKWh);
        p.submission = uint32((firstBidId >> _ID_BITS) + 1);
        p.stage = Stage.Bid;
        uint256 bond = p.bond;
        if (bond != 0) {
            t.unrevealedBonds -= uint128(bond);
            if (flags & _METERED != 0) {
                t.heldBonds += uint128(bond); // at stake for delivery now
            } else {
                p.bond = 0;
                _owed[msg.sender] += bond;
            }
        }
        emit BidsRevealed(requestId, msg.sender, firstBidId, watts.length);
    }

    /// @notice Post the bond of an open, metered request before bidding.
    /// @param requestId An open metered request with a bond, before its bidding deadline.
    function postBond(uint256 requestId) external payable {
        if (registrationRequired && _enrolment[msg.sender] != Enrolment.Enrolled) revert NotEnrolled(msg.sender);
        Request storage r = _openRequest(requestId);
        if (r.flags & _SEALED != 0) revert SealedRequest(requestId); // the bond goes with the commitment
        if (r.flags & _METERED == 0) revert NotMetered(requestId);
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

    /// @dev Validate one bid and append it to the queue of its price level; returns it packed.
    function _place(uint256 requestId, uint256 tickWei, uint256 index, uint256 w, uint256 p)
        private
        returns (uint256)
    {
        if (w == 0) revert ZeroWatts(index);
        if (w > type(uint32).max) revert WattsTooLarge(index, type(uint32).max);
        if (p == 0) revert PriceZero(index);
        uint256 tick = p / tickWei;
        if (tick > TICKS) revert PriceAboveCap(index, tickWei * TICKS);
        if (tick * tickWei != p) revert PriceOffTick(index, tickWei);

        uint256[_BOOK_SLOTS] storage placed = _placed[requestId];
        uint256 slot = (tick - 1) / _LANES;
        uint256 shift = ((tick - 1) % _LANES) * 64;
        uint256 level = placed[slot];
        uint256 pos = (level >> shift) & type(uint64).max;
        if (pos + w > type(uint40).max) revert PriceLevelFull(tick);
        placed[slot] = level + (w << shift);
        return w | (tick << _TICK_SHIFT) | (pos << _POS_SHIFT);
    }

    function _cancel(uint256 requestId, uint256[] calldata bidIds) private {
        Request storage r = _openRequest(requestId);
        if (block.timestamp > r.biddingDeadline) revert BiddingClosed(r.biddingDeadline);
        uint256 submissions = r.submissions;
        uint256[_BOOK_SLOTS] storage cancelled = _cancelled[requestId];
        for (uint256 i; i < bidIds.length; ++i) {
            uint256 bidId = bidIds[i];
            (address bidder, uint256 bid, uint256 key, uint256 shift) = _loadBid(requestId, submissions, bidId);
            if (bidder != msg.sender) revert NotBidder(bidId);
            if (bid & _CANCELLED != 0) revert BidAlreadyCancelled(bidId);
            _bidWords[requestId][key] |= _CANCELLED << shift;
            uint256 tick = (bid >> _TICK_SHIFT) & 0xff;
            cancelled[(tick - 1) / _LANES] += (bid & type(uint32).max) << (((tick - 1) % _LANES) * 64);
            emit BidCancelled(requestId, msg.sender, bidId);
        }
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
        uint256 proof = _levelProof[requestId][tick];
        uint256 placedBefore = proof & type(uint40).max;
        uint256 liveBefore = (proof >> 40) & type(uint40).max;
        uint256 nextId = proof >> 80;
        uint256 submissions = r.submissions;
        for (uint256 i; i < levelBidIds.length; ++i) {
            uint256 id = levelBidIds[i];
            if (id < nextId) revert BadMarginalHint();
            (, uint256 bid,,) = _loadBid(requestId, submissions, id);
            if ((bid >> _TICK_SHIFT) & 0xff != tick || (bid >> _POS_SHIFT) & type(uint40).max != placedBefore) {
                revert BadMarginalHint(); // not the next bid of the level's queue
            }
            uint256 w = bid & type(uint32).max;
            placedBefore += w;
            if (bid & _CANCELLED == 0) {
                liveBefore += w;
                if (liveBefore >= take) revert BadMarginalHint(); // the marginal bid goes in the hint
            }
            nextId = id + 1;
        }
        _levelProof[requestId][tick] = placedBefore | (liveBefore << 40) | (nextId << 80);
        emit LevelPrefixProved(requestId, tick, placedBefore, nextId);
    }

    /// @dev Watts still wanted when the scan reaches `tick` (0 if cheaper levels cover the target).
    function _wantedAt(uint256 requestId, uint256 target, uint256 tick) private view returns (uint256) {
        uint256[_BOOK_SLOTS] storage placed = _placed[requestId];
        uint256[_BOOK_SLOTS] storage cancelled = _cancelled[requestId];
        for (uint256 t = 1; t < tick; ++t) {
            uint256 shift = ((t - 1) % _LANES) * 64;
            uint256 live = ((placed[(t - 1) / _LANES] >> shift) & type(uint64).max)
                - ((cancelled[(t - 1) / _LANES] >> shift) & type(uint64).max);
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

        Clearing memory c;
        uint256 remaining = r.targetWatts;
        uint256[_BOOK_SLOTS] storage placed = _placed[requestId];
        uint256[_BOOK_SLOTS] storage cancelled = _cancelled[requestId];
        for (uint256 s; s < _BOOK_SLOTS && remaining != 0; ++s) {
            uint256 placedWord = placed[s];
            if (placedWord != 0) remaining = _clearSlot(requestId, s, placedWord, cancelled[s], remaining, hint, c);
        }

        uint256 tickWei = r.tickWei;
        uint256 clearingPrice = c.clearingTick * tickWei;
        uint256 reserved = r.flags & _PAY_AS_BID == 0
            ? c.accepted * r.duration * clearingPrice / WS_PER_KWH
            : c.valueTicks * tickWei * r.duration / WS_PER_KWH;
        uint256 refund = r.budget - reserved; // reserved <= target * duration * cap / 3.6e6 <= budget

        r.status = Status.Settled;
        r.clearingTick = uint8(c.clearingTick);
        r.marginalPos = uint40(c.marginalPos);
        r.acceptedWatts = uint64(c.accepted);
        r.reserved = uint128(reserved);
        uint256 toUtility = refund;
        if (r.flags & _METERED != 0) _terms[requestId].selectedAt = uint40(block.timestamp);
        if (r.flags & _SEALED != 0) {
            StoredTerms storage t = _terms[requestId];
            uint256 forfeited = t.unrevealedBonds;
            if (forfeited != 0) {
                t.unrevealedBonds = 0;
                toUtility += forfeited;
                emit BondsForfeited(requestId, forfeited);
            }
        }
        if (toUtility != 0) _owed[utility] += toUtility;
        emit WinnersSelected(requestId, clearingPrice, c.accepted, reserved, refund);
    }

    /// @dev Take volume from the four price levels of one book slot, cheapest first.
    ///      Returns the watts still wanted afterwards.
    function _clearSlot(
        uint256 requestId,
        uint256 s,
        uint256 placedWord,
        uint256 cancelledWord,
        uint256 remaining,
        uint256[] memory hint,
        Clearing memory c
    ) private view returns (uint256) {
        for (uint256 lane; lane < _LANES && remaining != 0; ++lane) {
            uint256 placedVol = (placedWord >> (lane * 64)) & type(uint64).max;
            uint256 live = placedVol - ((cancelledWord >> (lane * 64)) & type(uint64).max);
            if (live == 0) continue;
            uint256 tick = s * _LANES + lane + 1;
            uint256 take = live < remaining ? live : remaining;
            c.clearingTick = tick;
            if (take == live) {
                c.marginalPos = placedVol; // the whole level is accepted
            } else if (placedVol == live) {
                c.marginalPos = take; // no withdrawn bids: queue positions are live volume
            } else {
                c.marginalPos = _marginalFromHint(requestId, tick, take, hint);
            }
            c.accepted += take;
            c.valueTicks += take * tick;
            remaining -= take;
        }
        return remaining;
    }

    /// @dev Queue position at `tick` up to which bids are accepted, when the level has
    ///      withdrawn bids ("holes"). The hint lists every bid at the level before the
    ///      marginal one, then the marginal one; the positions prove the list complete.
    function _marginalFromHint(uint256 requestId, uint256 tick, uint256 take, uint256[] memory hint)
        private
        view
        returns (uint256)
    {
        uint256 n = hint.length;
        if (n == 0) revert MarginalHintRequired(tick);
        uint256 submissions = _requests[requestId].submissions;
        // Start after the prefix proved by proveLevelPrefix, if any.
        uint256 proof = _levelProof[requestId][tick];
        uint256 placedBefore = proof & type(uint40).max;
        uint256 liveBefore = (proof >> 40) & type(uint40).max;
        uint256 nextId = proof >> 80;
        for (uint256 i; i < n; ++i) {
            if (hint[i] < nextId) revert BadMarginalHint();
            nextId = hint[i] + 1;
            (, uint256 bid,,) = _loadBid(requestId, submissions, hint[i]);
            uint256 pos = (bid >> _POS_SHIFT) & type(uint40).max;
            // Positions are cumulative placed volume: each listed bid must be the next in
            // the level's queue, so no bid is missing and none is listed twice.
            if ((bid >> _TICK_SHIFT) & 0xff != tick || pos != placedBefore) revert BadMarginalHint();
            uint256 w = bid & type(uint32).max;
            if (i + 1 < n) {
                placedBefore += w;
                if (bid & _CANCELLED == 0) liveBefore += w;
            } else {
                if (bid & _CANCELLED != 0) revert BadMarginalHint();
                if (liveBefore >= take || liveBefore + w < take) revert BadMarginalHint();
                return pos + (take - liveBefore);
            }
        }
        revert BadMarginalHint(); // unreachable: the loop returns on its last element
    }

    // ------------------------------------------------------------------ payouts

    /// @notice Credit the payouts of settled bids to their bidders. Anyone may call it.
    /// @param requestId A settled request.
    /// @param bidIds Bids to claim; losing bids are marked claimed with a zero payout.
    function claim(uint256 requestId, uint256[] calldata bidIds) external {
        Request storage r = _requests[requestId];
        if (r.status != Status.Settled) revert NotSettled(requestId);
        if (r.flags & _METERED != 0) revert PaidOnDelivery(requestId);
        uint256 submissions = r.submissions;
        uint256 claimedWatts;
        uint256 paid;
        for (uint256 i; i < bidIds.length; ++i) {
            uint256 bidId = bidIds[i];
            (address bidder, uint256 bid, uint256 key, uint256 shift) = _loadBid(requestId, submissions, bidId);
            if (bid & _CLAIMED != 0) revert AlreadyClaimed(bidId);
            _bidWords[requestId][key] |= _CLAIMED << shift;
            (uint256 w, uint256 amount) = _outcome(r, bid);
            if (w == 0) continue;
            _owed[bidder] += amount;
            claimedWatts += w;
            paid += amount;
            emit PayoutCredited(requestId, bidder, bidId, w, amount);
        }
        _disburse(requestId, r, claimedWatts, paid);
    }

    /// @dev Count `claimedWatts` accepted watts worth `paid` wei as taken from the reserve;
    ///      once every accepted watt is, the rounding dust goes to the utility.
    function _disburse(uint256 requestId, Request storage r, uint256 claimedWatts, uint256 paid) private {
        if (claimedWatts == 0) return;
        uint256 totalClaimed = r.claimedWatts + claimedWatts;
        uint256 totalPaid = r.paidOut + paid;
        r.claimedWatts = uint64(totalClaimed);
        r.paidOut = uint128(totalPaid);
        if (totalClaimed == r.acceptedWatts) {
            // Every accepted watt is paid: what is left of the reserve is rounding dust.
            uint256 dust = r.reserved - totalPaid;
            if (dust != 0) {
                _owed[utility] += dust;
                emit DustReturned(requestId, dust);
            }
        }
    }

    // ------------------------------------------------------------------ delivery

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

    /// @notice The utility accepts `consumer`'s report and settles it at once.
    /// @param requestId A settled metered request.
    /// @param consumer A consumer that reported.
    function confirmDelivery(uint256 requestId, address consumer) external onlyUtility {
        Request storage r = _meteredAndSettled(requestId);
        Participant storage p = _reported(requestId, r, consumer);
        _settleParticipant(requestId, r, consumer, p);
    }

    /// @notice The utility, as meter operator, replaces `consumer`'s report by its own
    ///         lower measurement and settles it at once. The dispute is public on chain.
    /// @param requestId A settled metered request.
    /// @param consumer A consumer that reported.
    /// @param meteredWatts The utility's figure, W averaged over the window, below the report.
    function disputeDelivery(uint256 requestId, address consumer, uint256 meteredWatts) external onlyUtility {
        Request storage r = _meteredAndSettled(requestId);
        Participant storage p = _reported(requestId, r, consumer);
        uint256 reported = p.delivered;
        if (meteredWatts >= reported) revert NotADispute(reported, meteredWatts);
        p.delivered = uint64(meteredWatts);
        emit DeliveryDisputed(requestId, consumer, reported, meteredWatts);
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
            _owed[consumer] += bond;
            emit DeliverySettled(requestId, consumer, 0, 0, 0, 0, bond, 0);
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

    /// @dev Report and dispute deadlines of a metered request. The report window runs from
    ///      the end of the event, or from the selection if that came later, so a late
    ///      selection cannot leave winners without time to report.
    function _deliveryDeadlines(Request storage r, StoredTerms storage t)
        private
        view
        returns (uint256 reportDeadline, uint256 disputeDeadline)
    {
        uint256 opens = uint256(r.eventStart) + r.duration;
        uint256 selectedAt = t.selectedAt;
        if (selectedAt > opens) opens = selectedAt;
        reportDeadline = opens + t.reportWindow;
        disputeDeadline = reportDeadline + t.disputeWindow;
    }

    function _meteredAndSettled(uint256 requestId) private view returns (Request storage r) {
        r = _requests[requestId];
        if (r.status != Status.Settled) revert NotSettled(requestId);
        if (r.flags & _METERED == 0) revert NotMetered(requestId);
    }

    /// @dev The participant, if it reported and the dispute window is still open.
    function _reported(uint256 requestId, Request storage r, address consumer)
        private
        view
        returns (Participant storage p)
    {
        p = _participants[requestId][consumer];
        if (p.stage != Stage.Reported) revert WrongStage(consumer, p.stage);
        (, uint256 disputeDeadline) = _deliveryDeadlines(r, _terms[requestId]);
        if (block.timestamp > disputeDeadline) revert DisputeWindowClosed(disputeDeadline);
    }

    /// @dev Accepted watts and promised payout over a participant's submission (1-based).
    function _participantOutcome(uint256 requestId, Request storage r, uint256 submission)
        private
        view
        returns (uint256 accepted, uint256 promised)
    {
        if (submission == 0) return (0, 0);
        uint256 first = (submission - 1) << _ID_BITS;
        uint256 total = r.submissions;
        uint256 n = (_bidWords[requestId][(submission - 1) * _KEYS_PER_SUBMISSION] >> _COUNT_SHIFT) & 0x7f;
        for (uint256 i; i < n; ++i) {
            (, uint256 bid,,) = _loadBid(requestId, total, first | i);
            (uint256 w, uint256 amount) = _outcome(r, bid);
            accepted += w;
            promised += amount;
        }
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
        // Winners selected once the event had started could not plan their reduction: no penalty.
        uint256 penalty = accepted == 0 || _terms[requestId].selectedAt >= r.eventStart
            ? 0
            : bond * (accepted - credited) / accepted;
        p.stage = Stage.Settled;
        if (bond != 0) {
            p.bond = 0;
            _terms[requestId].heldBonds -= uint128(bond);
        }
        if (payout + bond - penalty != 0) _owed[consumer] += payout + bond - penalty;
        uint256 toUtility = promised - payout + penalty;
        if (toUtility != 0) _owed[utility] += toUtility;
        if (p.submission != 0) _markClaimed(requestId, r, p.submission);
        emit DeliverySettled(requestId, consumer, accepted, delivered, payout, penalty, bond - penalty, toUtility);
        _disburse(requestId, r, accepted, promised);
    }

    /// @dev Mark every bid of a submission (1-based) claimed.
    function _markClaimed(uint256 requestId, Request storage r, uint256 submission) private {
        uint256 first = (submission - 1) << _ID_BITS;
        uint256 total = r.submissions;
        mapping(uint256 => uint256) storage words = _bidWords[requestId];
        uint256 n = (words[(submission - 1) * _KEYS_PER_SUBMISSION] >> _COUNT_SHIFT) & 0x7f;
        for (uint256 i; i < n; ++i) {
            (,, uint256 key, uint256 shift) = _loadBid(requestId, total, first | i);
            words[key] |= _CLAIMED << shift;
        }
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

    function _withdraw(address payable to) private nonReentrant {
        uint256 amount = _owed[msg.sender];
        if (amount == 0) revert NothingOwed();
        _owed[msg.sender] = 0;
        emit Withdrawal(msg.sender, to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed();
    }

    // ------------------------------------------------------------------ views

    /// @notice Ether `account` can withdraw now, in wei.
    /// @param account The address to look up.
    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    /// @notice Everything about request `requestId`.
    /// @param requestId The request to look up.
    function getRequest(uint256 requestId) external view returns (RequestView memory v) {
        Request storage r = _knownRequest(requestId);
        v.status = r.status;
        v.rule = r.flags & _PAY_AS_BID == 0 ? PricingRule.Uniform : PricingRule.PayAsBid;
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
        v.paidOut = r.paidOut;
        v.claimedWatts = r.claimedWatts;
    }

    /// @notice The bids of submissions `start` .. `start + count - 1` of `requestId`
    ///         (clipped to the end), in bid id order. A submission holds 1 to 64 bids.
    /// @param requestId The request to look up.
    /// @param start First submission of the page.
    /// @param count Number of submissions in the page.
    function getBids(uint256 requestId, uint256 start, uint256 count) external view returns (BidView[] memory) {
        return _page(requestId, start, count, address(0));
    }

    /// @notice The bids `consumer` placed in `requestId`, among submissions
    ///         `start` .. `start + count - 1`; pass count = 2^256-1 for all.
    /// @param requestId The request to look up.
    /// @param consumer The bidder.
    /// @param start First submission to scan.
    /// @param count Number of submissions to scan.
    function bidsOf(uint256 requestId, address consumer, uint256 start, uint256 count)
        external
        view
        returns (BidView[] memory)
    {
        if (consumer == address(0)) revert ZeroAddress();
        return _page(requestId, start, count, consumer);
    }

    /// @notice Accepted watts and payout of `consumer` in `requestId`, over all its bids.
    /// @param requestId The request to look up.
    /// @param consumer The bidder.
    function outcomeOf(uint256 requestId, address consumer)
        external
        view
        returns (uint256 acceptedWatts, uint256 payout)
    {
        BidView[] memory mine = _page(requestId, 0, type(uint256).max, consumer);
        for (uint256 i; i < mine.length; ++i) {
            acceptedWatts += mine[i].acceptedWatts;
            payout += mine[i].payout;
        }
    }

    /// @notice The terms of `requestId` and the bonds it holds.
    /// @param requestId The request to look up.
    function termsOf(uint256 requestId) external view returns (TermsView memory v) {
        Request storage r = _knownRequest(requestId);
        StoredTerms storage t = _terms[requestId];
        v.sealedBids = r.flags & _SEALED != 0;
        v.metered = r.flags & _METERED != 0;
        v.revealDeadline = t.revealDeadline;
        if (v.metered) {
            (v.reportDeadline, v.disputeDeadline) = _deliveryDeadlines(r, t);
        }
        v.bondWei = t.bondWei;
        v.unrevealedBonds = t.unrevealedBonds;
        v.heldBonds = t.heldBonds;
        v.selectedAt = t.selectedAt;
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
            v.firstBidId = (submission - 1) << _ID_BITS;
            v.bidCount = (_bidWords[requestId][(submission - 1) * _KEYS_PER_SUBMISSION] >> _COUNT_SHIFT) & 0x7f;
            (v.acceptedWatts, v.promisedPayout) = _participantOutcome(requestId, r, submission);
        }
        // A commitment never revealed lost its bond at selection.
        v.bond = p.stage == Stage.Committed && r.status == Status.Settled ? 0 : p.bond;
        v.deliveredWatts = p.delivered;
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
        uint256 proof = _levelProof[requestId][tick];
        return (proof & type(uint40).max, (proof >> 40) & type(uint40).max, proof >> 80);
    }

    /// @notice Live volume in W at each price level: index i is price (i+1)*tickWei.
    /// @param requestId The request to look up.
    function book(uint256 requestId) external view returns (uint256[] memory liveWatts) {
        _knownRequest(requestId);
        liveWatts = new uint256[](TICKS);
        uint256[_BOOK_SLOTS] storage placed = _placed[requestId];
        uint256[_BOOK_SLOTS] storage cancelled = _cancelled[requestId];
        for (uint256 t; t < TICKS; ++t) {
            uint256 shift = (t % _LANES) * 64;
            liveWatts[t] = ((placed[t / _LANES] >> shift) & type(uint64).max)
                - ((cancelled[t / _LANES] >> shift) & type(uint64).max);
        }
    }

    // ------------------------------------------------------------------ internals

    function _openRequest(uint256 requestId) private view returns (Request storage r) {
        r = _requests[requestId];
        if (r.status != Status.Open) {
            if (r.status == Status.None) revert UnknownRequest(requestId);
            revert RequestNotOpen(requestId);
        }
    }

    /// @dev When selection may start: the bidding deadline, or the reveal deadline for sealed bids.
    function _closesAt(uint256 requestId, Request storage r) private view returns (uint256) {
        return r.flags & _SEALED != 0 ? _terms[requestId].revealDeadline : r.biddingDeadline;
    }

    function _knownRequest(uint256 requestId) private view returns (Request storage r) {
        r = _requests[requestId];
        if (r.status == Status.None) revert UnknownRequest(requestId);
    }

    /// @dev Bidder, packed bid, storage key and bit offset of `bidId`; reverts if unknown.
    function _loadBid(uint256 requestId, uint256 submissions, uint256 bidId)
        private
        view
        returns (address bidder, uint256 bid, uint256 key, uint256 shift)
    {
        uint256 submission = bidId >> _ID_BITS;
        uint256 index = bidId & (MAX_BIDS_PER_CALL - 1);
        if (submission >= submissions) revert UnknownBid(bidId);
        mapping(uint256 => uint256) storage words = _bidWords[requestId];
        key = submission * _KEYS_PER_SUBMISSION;
        uint256 header = words[key];
        if (index >= (header >> _COUNT_SHIFT) & 0x7f) revert UnknownBid(bidId);
        bidder = address(uint160(header));
        if (index == 0) {
            shift = _HEADER_BID_SHIFT;
            bid = (header >> shift) & _BID_MASK;
        } else {
            key += 1 + (index - 1) / 3;
            shift = ((index - 1) % 3) * _BID_BITS;
            bid = (words[key] >> shift) & _BID_MASK;
        }
    }

    /// @dev The bids of a range of submissions, all of them or those of `consumer`.
    function _page(uint256 requestId, uint256 start, uint256 count, address consumer)
        private
        view
        returns (BidView[] memory page)
    {
        Request storage r = _knownRequest(requestId);
        uint256 total = r.submissions;
        uint256 end = start >= total ? start : (count > total - start ? total : start + count);
        mapping(uint256 => uint256) storage words = _bidWords[requestId];
        uint256 found;
        for (uint256 sub = start; sub < end; ++sub) {
            uint256 header = words[sub * _KEYS_PER_SUBMISSION];
            if (consumer == address(0) || address(uint160(header)) == consumer) found += (header >> _COUNT_SHIFT) & 0x7f;
        }
        page = new BidView[](found);
        found = 0;
        for (uint256 sub = start; sub < end; ++sub) {
            uint256 header = words[sub * _KEYS_PER_SUBMISSION];
            if (consumer != address(0) && address(uint160(header)) != consumer) continue;
            uint256 n = (header >> _COUNT_SHIFT) & 0x7f;
            for (uint256 index; index < n; ++index) {
                (address bidder, uint256 bid,,) = _loadBid(requestId, total, (sub << _ID_BITS) | index);
                page[found++] = _bidView(r, (sub << _ID_BITS) | index, bidder, bid);
            }
        }
    }

    /// @dev Accepted watts and payout of one packed bid; zero unless settled.
    function _outcome(Request storage r, uint256 bid) private view returns (uint256 w, uint256 amount) {
        if (r.status != Status.Settled || bid & _CANCELLED != 0) return (0, 0);
        uint256 tick = (bid >> _TICK_SHIFT) & 0xff;
        uint256 clearingTick = r.clearingTick;
        if (tick > clearingTick) return (0, 0);
        w = bid & type(uint32).max;
        if (tick == clearingTick) {
            uint256 pos = (bid >> _POS_SHIFT) & type(uint40).max;
            uint256 limit = r.marginalPos;
            if (pos >= limit) return (0, 0);
            if (limit - pos < w) w = limit - pos;
        }
        uint256 priceTick = r.flags & _PAY_AS_BID == 0 ? clearingTick : tick;
        amount = w * r.duration * priceTick * r.tickWei / WS_PER_KWH;
    }

    function _bidView(Request storage r, uint256 bidId, address bidder, uint256 bid)
        private
        view
        returns (BidView memory v)
    {
        v.bidId = bidId;
        v.bidder = bidder;
        v.watts = bid & type(uint32).max;
        v.priceWeiPerKWh = ((bid >> _TICK_SHIFT) & 0xff) * r.tickWei;
        v.cancelled = bid & _CANCELLED != 0;
        v.claimed = bid & _CLAIMED != 0;
        (v.acceptedWatts, v.payout) = _outcome(r, bid);
    }
}
