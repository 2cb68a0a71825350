// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title HostileTokens
/// @notice Test-only tokens that do not behave like a plain stablecoin, for the market's
///         token tests (tests/contract/test_token_settlement.py). Anyone may mint: never
///         deploy them anywhere that matters.

/// @notice A 6-decimal ERC-20 anyone may mint, with a minter-free faucet for tests.
abstract contract OpenMint is ERC20 {
    /// @notice Create `amount` base units for `to` (anyone: tests only).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }
}

/// @notice Keeps 1 % of every transfer: the recipient gets less than `transfer` says.
contract FeeOnTransferToken is OpenMint {
    constructor() ERC20("Fee Token", "FEE") {}

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) return super._update(from, to, value);
        uint256 fee = value / 100;
        super._update(from, address(0xFEE), fee);
        super._update(from, to, value - fee);
    }
}

/// @notice A stablecoin with a blacklist, like USDC's: a listed account can neither send nor
///         receive, so a push to it reverts.
contract BlacklistToken is OpenMint {
    mapping(address => bool) public blacklisted;

    error Blacklisted(address account);

    constructor() ERC20("Blacklist USD", "BUSD") {}

    /// @notice List or unlist `account` (anyone: tests only).
    function setBlacklisted(address account, bool listed) external {
        blacklisted[account] = listed;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blacklisted[from]) revert Blacklisted(from);
        if (blacklisted[to]) revert Blacklisted(to);
        super._update(from, to, value);
    }
}

/// @notice Returns false instead of reverting when it refuses a transfer (a listed recipient).
contract FalseReturningToken is OpenMint {
    mapping(address => bool) public refused;

    constructor() ERC20("False USD", "FUSD") {}

    function setRefused(address account, bool value) external {
        refused[account] = value;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (refused[to]) return false;
        return super.transfer(to, value);
    }
}

/// @notice The receiver side of `HookToken`'s ERC-777-like hook.
interface ITokenReceiver {
    function onTokenReceived(address from, uint256 amount) external;
}

/// @notice Calls `onTokenReceived` on a recipient that registered for it, after every
///         transfer (ERC-777's tokensReceived, registered in ERC-1820 there): the hook runs
///         in the middle of whoever moved the tokens, and can re-enter it.
contract HookToken is OpenMint {
    mapping(address => bool) public hooked;

    constructor() ERC20("Hook USD", "HUSD") {}

    /// @notice The caller wants `onTokenReceived` calls.
    function registerHook() external {
        hooked[msg.sender] = true;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (hooked[to]) ITokenReceiver(to).onTokenReceived(from, value);
    }
}

/// @notice A market account whose token hook re-enters the market: it claims, withdraws and
///         requests in the middle of a payment, or burns all the gas it is given. Its storage
///         starts non-zero, so the hook itself is cheap and only the re-entry decides.
contract HookReceiver is ITokenReceiver {
    /// @notice What the hook does: 0 nothing, 1 re-enter once with `payload`, 2 burn all gas,
    ///         3 revert, 4 re-entered already (nothing more).
    uint256 public mode = 4;
    address public target;
    bytes public payload;
    /// @notice 1: no re-entry tried; 2: the re-entry reverted; 3: it succeeded.
    uint256 public reentry = 1;

    function setMode(uint256 mode_, address target_, bytes calldata payload_) external {
        mode = mode_;
        target = target_;
        payload = payload_;
    }

    /// @notice Whether the re-entry succeeded.
    function reentered() external view returns (bool) {
        return reentry == 3;
    }

    /// @notice Call `to` with `data` as this account (to bid, withdraw, register ...).
    function exec(address to, bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    function onTokenReceived(address, uint256) external {
        uint256 m = mode;
        if (m == 1) {
            mode = 4;
            (bool ok,) = target.call(payload);
            reentry = ok ? 3 : 2;
        } else if (m == 2) {
            while (true) {}
        } else if (m == 3) {
            revert("refused");
        }
    }
}
