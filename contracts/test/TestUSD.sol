// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestUSD
/// @notice A stablecoin stand-in for development chains and tests: an OpenZeppelin ERC-20
///         with 6 decimals like USDC. Only its deployer mints (`dr fund --test-usd`); it is
///         not money anywhere.
contract TestUSD is ERC20 {
    /// @notice The account that may mint: the deployer.
    address public immutable minter;

    /// @notice Only the minter may mint.
    error NotMinter();

    constructor() ERC20("Test USD", "TUSD") {
        minter = msg.sender;
    }

    /// @notice 6, like USDC: 1 TUSD = 1,000,000 base units.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Create `amount` base units for `to` (minter only).
    /// @param to The account credited.
    /// @param amount Base units (1 TUSD = 10^6).
    function mint(address to, uint256 amount) external {
        if (msg.sender != minter) revert NotMinter();
        _mint(to, amount);
    }
}
