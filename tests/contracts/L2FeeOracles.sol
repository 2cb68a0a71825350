// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// Test-only stand-ins for the fee oracles of L2 chains, placed at their real addresses on
/// anvil with anvil_setCode (tests/contract/test_fees_l2.py). Never deployed outside tests.
/// Their interfaces follow the chains' own (sources in docs/economics.md); their numbers
/// come from setters, so a test controls every input of the fee formula.

/// OP Stack GasPriceOracle (predeploy 0x420000000000000000000000000000000000000F), Fjord.
/// getL1FeeUpperBound is the spec's formula exactly. getL1Fee would FastLZ-compress the
/// transaction; this stand-in does not compress (it prices the uncompressed size), which is
/// the one part of the real oracle not reproduced here.
contract MockGasPriceOracle {
    int256 private constant COST_INTERCEPT = -42_585_600;
    uint256 private constant COST_FASTLZ_COEF = 836_500;
    uint256 private constant MIN_TRANSACTION_SIZE = 100;
    uint256 public constant DECIMALS = 6;

    uint256 public l1BaseFee;
    uint256 public blobBaseFee;
    uint32 public baseFeeScalar;
    uint32 public blobBaseFeeScalar;
    bool public isFjord;

    function setParams(uint256 l1BaseFee_, uint256 blobBaseFee_, uint32 baseFeeScalar_, uint32 blobBaseFeeScalar_)
        external
    {
        l1BaseFee = l1BaseFee_;
        blobBaseFee = blobBaseFee_;
        baseFeeScalar = baseFeeScalar_;
        blobBaseFeeScalar = blobBaseFeeScalar_;
        isFjord = true;
    }

    function decimals() external pure returns (uint256) {
        return DECIMALS;
    }

    /// @notice L1 fee of an unsigned RLP-encoded transaction (here: without compression).
    function getL1Fee(bytes calldata data) external view returns (uint256) {
        return _fjordL1Cost(data.length + 68);
    }

    /// @notice Upper bound of the L1 fee of a transaction of this unsigned size (Fjord).
    function getL1FeeUpperBound(uint256 unsignedTxSize) external view returns (uint256) {
        require(isFjord, "GasPriceOracle: getL1FeeUpperBound only supports Fjord");
        uint256 txSize = unsignedTxSize + 68;
        uint256 flzUpperBound = txSize + txSize / 255 + 16;
        return _fjordL1Cost(flzUpperBound);
    }

    function _fjordL1Cost(uint256 fastLzSize) private view returns (uint256) {
        uint256 feeScaled = uint256(baseFeeScalar) * 16 * l1BaseFee + uint256(blobBaseFeeScalar) * blobBaseFee;
        int256 estimated = COST_INTERCEPT + int256(COST_FASTLZ_COEF * fastLzSize);
        if (estimated < int256(MIN_TRANSACTION_SIZE) * 1e6) {
            estimated = int256(MIN_TRANSACTION_SIZE) * 1e6;
        }
        return (uint256(estimated) * feeScaled) / (10 ** (DECIMALS * 2));
    }
}

/// Arbitrum ArbGasInfo (precompile 0x000000000000000000000000000000000000006C): the
/// read-only calls the fee estimator uses.
contract MockArbGasInfo {
    uint256[6] private prices;
    uint256 private minimumGasPrice;
    uint256 private l1BaseFeeEstimate;

    function setPrices(uint256[6] calldata prices_, uint256 minimumGasPrice_, uint256 l1BaseFeeEstimate_) external {
        prices = prices_;
        minimumGasPrice = minimumGasPrice_;
        l1BaseFeeEstimate = l1BaseFeeEstimate_;
    }

    /// @return (per L2 tx, per L1 calldata byte, per storage allocation,
    ///          per ArbGas base, per ArbGas congestion, per ArbGas total), in wei
    function getPricesInWei() external view returns (uint256, uint256, uint256, uint256, uint256, uint256) {
        return (prices[0], prices[1], prices[2], prices[3], prices[4], prices[5]);
    }

    function getMinimumGasPrice() external view returns (uint256) {
        return minimumGasPrice;
    }

    function getL1BaseFeeEstimate() external view returns (uint256) {
        return l1BaseFeeEstimate;
    }
}
