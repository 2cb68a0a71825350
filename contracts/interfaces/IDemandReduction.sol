// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// @title IDemandReduction
/// @notice The market's shared vocabulary: the enums and view structs its functions take
///         and return, every event and every custom error. The core contract, its
///         abstract bases and the read-only lens all inherit it, so each is declared once.
interface IDemandReduction {
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

    /// @notice Optional terms of a request (`requestReductionWithTerms`).
    struct Terms {
        uint256 revealWindow; // seconds after biddingDeadline for reveals; 0: open bids
        uint256 reportWindow; // seconds after eventEnd (or a later selection) for meter reports; 0: pay on acceptance
        uint256 disputeWindow; // seconds after the report deadline for the utility to confirm or dispute
        uint256 bondWei; // bond per participant, in wei, 0: none (needs a sealed or metered request; ether requests only)
        uint256 noticePeriod; // metered: a shortfall is penalised only if winners were selected at least this long before eventStart; 0: never
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
        uint256 noticePeriod; // metered: notice a winner must have had for a penalty to apply
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
        address token; // the currency: address(0) for ether, else an ERC-20 token
    }

    /// @notice One household's bids, signed off chain (EIP-712 typed data `SignedBids(uint256
    ///         requestId,address bidder,uint256[] watts,uint256[] pricesPerKWh)` in the domain
    ///         "DemandReduction", "1", chain id, the market's address) for a relayer to place
    ///         with `submitSignedBids`: the household sends no transaction.
    struct SignedBids {
        address bidder;
        uint256[] watts;
        uint256[] pricesPerKWh;
        bytes signature; // 65 bytes r, s, v; s in the lower half of the curve order
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
    /// @notice A demand reduction was requested and its budget escrowed. Amounts are in
    ///         base units of `token` (address(0): wei).
    event ReductionRequested(
        uint256 indexed requestId,
        uint256 targetWatts,
        uint256 eventStart,
        uint256 eventEnd,
        uint256 biddingDeadline,
        uint256 maxPriceWeiPerKWh,
        PricingRule pricingRule,
        uint256 budget,
        address token
    );
    /// @notice `count` bids were placed in one submission (`submitBids`, `replaceBids`,
    ///         `revealBids` or one entry of `submitSignedBids`): ids `firstBidId` .. `firstBidId + count - 1`, in the order of the
    ///         call's arrays. Their watts and prices are read with `submissionBids`.
    event BidsSubmitted(uint256 indexed requestId, address indexed bidder, uint256 firstBidId, uint256 count);
    /// @notice `submitSignedBids` skipped `bidder`'s signed entry for a reason a third party
    ///         can bring about after the relayer checked it: 1 its signed submission for this
    ///         request was already placed (replayed or front-run), 2 it is not enrolled
    ///         (registered mode), 3 the metered request needs a bond it has not posted, 4 it
    ///         has already bid in this metered request.
    event SignedBidsSkipped(uint256 indexed requestId, address indexed bidder, uint8 reason);
    /// @notice A bid was withdrawn before the deadline.
    event BidCancelled(uint256 indexed requestId, address indexed bidder, uint256 bidId);
    /// @notice `sponsor` paid ahead for the first write of the book slots in `slotMask` (bit s:
    ///         price levels 5s+1 .. 5s+5), so the first bidder at each pays what later ones do.
    event BookSponsored(uint256 indexed requestId, address indexed sponsor, uint256 slotMask);
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
    /// @notice A winning bid's payout was credited to its bidder's pull balance: by `claim`,
    ///         or by `claimAndPay` when the payment failed (then `PaymentDeferred` follows).
    event PayoutCredited(
        uint256 indexed requestId, address indexed bidder, uint256 bidId, uint256 acceptedWatts, uint256 amount
    );
    /// @notice `claimAndPay` sent a winning bid's payout straight to its bidder: the bid's
    ///         only event (no `PayoutCredited`, no `PaymentSent`).
    event PayoutSent(
        uint256 indexed requestId, address indexed bidder, uint256 bidId, uint256 acceptedWatts, uint256 amount
    );
    /// @notice A metered settlement (payout and the bond's rest), or a losing bidder's bond,
    ///         was sent straight to the consumer.
    event PaymentSent(uint256 indexed requestId, address indexed bidder, uint256 amount);
    /// @notice A pushed payment failed (the recipient reverted or ran out of gas, the token
    ///         refused it): it was credited to the bidder's pull balance (`withdraw`) instead.
    event PaymentDeferred(uint256 indexed requestId, address indexed bidder, uint256 amount);
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
    /// @notice A consumer revealed its sealed bids; a `BidsSubmitted` event precedes it.
    event BidsRevealed(uint256 indexed requestId, address indexed bidder, uint256 firstBidId, uint256 count);
    /// @notice A consumer posted its bond.
    event BondPosted(uint256 indexed requestId, address indexed consumer, uint256 amount);
    /// @notice Bonds of commitments never revealed went to the utility at selection.
    event BondsForfeited(uint256 indexed requestId, uint256 amount);
    /// @notice A consumer reported the reduction it delivered, in W averaged over the window.
    event DeliveryReported(uint256 indexed requestId, address indexed consumer, uint256 deliveredWatts);
    /// @notice The utility, as meter operator, metered `consumer`'s delivery (W averaged over
    ///         the window; below a report it is a dispute) and published how: `evidence` is
    ///         the measurement record (canonical JSON: method, parameters, SHA-256 of the
    ///         interval data), so anyone holding the data can recompute it (docs/mv.md).
    event DeliveryMetered(uint256 indexed requestId, address indexed consumer, uint256 meteredWatts, bytes evidence);
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
    /// @notice What `account` was owed in `token` (address(0): ether) was paid to `to`.
    event Withdrawal(address indexed account, address indexed to, address indexed token, uint256 amount);

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
    /// @notice The escrow is above `max` base units.
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
    /// @notice The signature of `bidder`'s signed entry is malformed, malleable (high s) or
    ///         made by another key, or signs other bids, another request, market or chain.
    error BadSignature(address bidder);
    /// @notice More than `max` signed entries in one `submitSignedBids` call.
    error TooManyEntries(uint256 max);
    /// @notice The request has taken the most submissions its counter holds (2^32 - 1).
    error TooManySubmissions(uint256 max);
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
    /// @notice Price level `tick` would exceed 2^48 - 1 watts placed (withdrawn ones included).
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
    /// @notice `sponsorBook`'s mask is empty or names a slot past the book's 26 (bits 0..25).
    error BadSlotMask(uint256 slotMask);
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
    /// @notice The utility's metering came after the dispute deadline.
    error DisputeWindowClosed(uint256 closedAt);
    /// @notice Only a winner's delivery is metered.
    error NotAWinner(address consumer);
    /// @notice The participant cannot be settled (or metered) yet.
    error TooEarly(uint256 at);
    /// @notice A delivery figure does not fit in 64 bits.
    error DeliveryTooLarge(uint256 max);
    /// @notice The token moved `received`, not the `sent` it was asked to: fee-on-transfer
    ///         and rebasing tokens are refused (docs/contract.md, "Currencies").
    error FeeOnTransfer(address token, uint256 sent, uint256 received);
    /// @notice `claimAndPay` was sent with too little gas for a payment to get its whole cap
    ///         (`PAY_GAS` or `TOKEN_PAY_GAS`): raise the gas limit.
    error PaymentGasTooLow();
    /// @notice `token` has no code: it is not a token contract.
    error NotAToken(address token);
    /// @notice Bonds are in ether: a request in a token takes none.
    error BondInEtherOnly();
}
