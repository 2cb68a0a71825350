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
        PricingRule rule;
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
        Request storage r = _requests[requestId];
        r.biddingDeadline = uint40(biddingDeadline);
        r.eventStart = uint40(eventStart);
        r.duration = uint32(duration);
        r.tickWei = uint64(maxPriceWeiPerKWh / TICKS);
        r.status = Status.Open;
        r.rule = pricingRule;
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
        uint256 n = watts.length;
        if (n != prices.length) revert LengthMismatch(n, prices.length);
        if (n == 0) revert NoBids();
        if (n > MAX_BIDS_PER_CALL) revert TooManyBids(MAX_BIDS_PER_CALL);
        Request storage r = _openRequest(requestId);
        if (block.timestamp > r.biddingDeadline) revert BiddingClosed(r.biddingDeadline);

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
        if (block.timestamp <= r.biddingDeadline) revert BiddingStillOpen(r.biddingDeadline);
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
        uint256 deadline = r.biddingDeadline;
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
        uint256 reserved = r.rule == PricingRule.Uniform
            ? c.accepted * r.duration * clearingPrice / WS_PER_KWH
            : c.valueTicks * tickWei * r.duration / WS_PER_KWH;
        uint256 refund = r.budget - reserved; // reserved <= target * duration * cap / 3.6e6 <= budget

        r.status = Status.Settled;
        r.clearingTick = uint8(c.clearingTick);
        r.marginalPos = uint40(c.marginalPos);
        r.acceptedWatts = uint64(c.accepted);
        r.reserved = uint128(reserved);
        if (refund != 0) _owed[utility] += refund;
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
        v.rule = r.rule;
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
        uint256 priceTick = r.rule == PricingRule.Uniform ? clearingTick : tick;
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
