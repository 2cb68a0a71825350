"""WTForms forms (all with CSRF through Flask-WTF)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    DecimalField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SubmitField,
    ValidationError,
)
from wtforms.validators import InputRequired, NumberRange, Optional, StopValidation

from demand_response.bids import MAX_WATTS
from demand_response.market import MAX_BIDS_PER_CALL
from demand_response.planner import MAX_BUDGET_WEI, MAX_TARGET_WATTS

try:  # WTForms >= 3.3 deprecates (value, label) tuples
    from wtforms.fields.choices import SelectChoice as _Choice
except ImportError:  # pragma: no cover - older WTForms
    def _Choice(value: str, label: str) -> tuple[str, str]:  # type: ignore[misc]
        return (value, label)

MAX_ROWS = MAX_BIDS_PER_CALL  # one transaction's worth of bids
MAX_KW = Decimal(MAX_WATTS) / 1000
#: The largest request target the contract takes (under 2^40 W), in kW.
MAX_TARGET_KW = Decimal(MAX_TARGET_WATTS) / 1000


def _finite(form: Form, field: DecimalField) -> None:
    """Validator: a number, not NaN or Infinity (which Decimal parses, and which made the
    validators after this one raise instead of report; found by test_fuzz_api)."""
    if field.data is not None and not field.data.is_finite():
        raise StopValidation("Enter a number.")


def _not_huge(form: Form, field: IntegerField) -> None:
    """An integer beyond any window or duration stops here: WTForms' ``NumberRange`` turns it
    into a float, which overflows (a 500) for numbers of more than ~308 digits."""
    if field.data is not None and abs(field.data) > 10**12:
        raise StopValidation("Too large.")


def _whole_watts(form: Form, field: DecimalField) -> None:
    if field.data is None:
        return
    try:
        watts = field.data * 1000
    except ArithmeticError:  # beyond Decimal's exponent range: NumberRange reports it
        raise ValidationError("Far too large.") from None
    if watts != watts.to_integral_value():
        raise ValidationError("At most 3 decimals (bids are in whole watts).")


class MoneyField(DecimalField):
    """A decimal amount shown in plain notation (``0.0000001``, never ``1E-7``)."""

    def _value(self) -> str:
        if not self.raw_data and isinstance(self.data, Decimal) and self.data.is_finite():
            text = format(self.data, "f")
            return text.rstrip("0").rstrip(".") if "." in text else text
        return super()._value()


def _money() -> Any:
    """The app's market money (``flaskapp.units.Money``)."""
    from flask import current_app

    return current_app.extensions["dr"].unit


def bids_money() -> Any:
    """The money the household's bids are priced in: the bid form's chosen ``currency`` when
    one is posted, else bids.json's (``currency``, else the market's)."""
    from flask import current_app, request

    chosen = request.form.get("currency") if request.method == "POST" else None
    return current_app.extensions["dr"].bids_money(chosen)


def _saved_bids_currency() -> str:
    from flask import current_app

    return current_app.extensions["dr"].bids_unit.symbol


def _request_money() -> Any:
    """The money of the requests the dashboard posts: the settlement token's
    (``SETTLEMENT_TOKEN``) when one is configured, else the market's."""
    from flask import current_app

    return current_app.extensions["dr"].request_unit


class _PriceInUnit:
    """Validator: a positive price in the market's currency per kWh (or ``money()``'s), in whole
    base units (``demand_response.units.parse_price``; its one-line reason is shown under the field)."""

    def __init__(self, money: Any = None) -> None:
        self.money = money or _money

    def __call__(self, form: Form, field: DecimalField) -> None:
        if field.data is None:
            return
        if field.data <= 0:
            raise ValidationError("The price must be above 0.")
        try:
            money = self.money()
        except Exception:
            raise ValidationError("The settlement token's currency cannot be read: is the chain up?") from None
        try:
            money.parse_price(field.data)
        except ValueError as exc:
            raise ValidationError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None


def _amount(field: DecimalField, what: str, money: Any = None) -> int:
    """``field``'s decimal amount of the market's currency (or ``money()``'s) in base units
    (ValidationError if not exact)."""
    try:
        return (money or _money)().parse_amount(field.data, what=what)
    except ValueError as exc:
        raise ValidationError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None


class BidRow(Form):
    """One bid: kW and price per kWh. A nested form, so no CSRF field of its own."""

    kw = DecimalField(
        "Reduction (kW)", places=None,
        validators=[InputRequired("Enter the kW you can cut."), _finite,
                    NumberRange(min=Decimal("0.001"), max=MAX_KW, message="Between 0.001 and %(max)s kW."),
                    _whole_watts],
    )
    price = MoneyField("Price", places=None,
                         validators=[InputRequired("Enter the least you accept per kWh."), _finite,
                                     _PriceInUnit(bids_money)])


class BidsForm(FlaskForm):
    """The consumer's offers (written to bids.json)."""

    rows = FieldList(FormField(BidRow), min_entries=1, max_entries=MAX_ROWS)
    currency = SelectField("Prices in", default=_saved_bids_currency)
    save = SubmitField("Save bids")
    add = SubmitField("Add a row")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from flask import current_app

        # The market's currency, the saved file's and those of the recent token requests.
        self.currency.choices = [_Choice(s, s) for s in current_app.extensions["dr"].bid_currencies()]

    def validate_rows(self, field: FieldList) -> None:
        if not field.entries:
            raise ValidationError("Give at least one bid.")
        if len(field.entries) > MAX_ROWS:
            raise ValidationError(f"At most {MAX_ROWS} bids.")


class FillForm(FlaskForm):
    """Fill the bid form from the household simulation."""

    fill = SubmitField("Fill from household simulation")


class DaemonStartForm(FlaskForm):
    """Start the consumer daemon."""

    source = RadioField("Bids come from", choices=[_Choice("file", "the saved bids (bids.json)"),
                                                    _Choice("gridsim", "the household simulation, fitted to each request")],
                        default="file", validators=[InputRequired()])
    password = PasswordField("Keystore password", validators=[Optional()])
    start = SubmitField("Start daemon")


class PlainForm(FlaskForm):
    """A form with only a button (stop, withdraw, settle, …): CSRF is what it checks."""

    submit = SubmitField("Go")


class UnlockForm(FlaskForm):
    """Unlock a keystore for this server's lifetime."""

    password = PasswordField("Keystore password", validators=[InputRequired("Enter the keystore password.")])
    unlock = SubmitField("Unlock")


class RequestForm(FlaskForm):
    """The utility's demand-reduction request."""

    target_kw = DecimalField("Target reduction (kW)", places=None,
                             validators=[InputRequired("Enter the reduction you need."), _finite,
                                         NumberRange(min=Decimal("0.001"), max=MAX_TARGET_KW,
                                                     message="Between 0.001 and %(max)s kW (the contract "
                                                             "takes a target under 2^40 W)."),
                                         _whole_watts])
    bidding_s = IntegerField("Bidding window (s)", default=60,
                             validators=[InputRequired("How long may consumers bid?"),
                                         _not_huge, NumberRange(min=5, max=30 * 86400, message="Between 5 s and 30 days.")])
    delay_s = IntegerField("Delay after bidding (s)", default=0,
                           validators=[InputRequired("Enter 0 to start right after bidding closes."),
                                       _not_huge, NumberRange(min=0, max=30 * 86400, message="Between 0 s and 30 days.")])
    duration_s = IntegerField("Duration (s)", default=3600,
                              validators=[InputRequired("How long must the reduction last?"),
                                          _not_huge, NumberRange(min=60, max=7 * 86400, message="Between 60 s and 7 days.")])
    cap = MoneyField("Price cap (per kWh)", places=None,
                       validators=[InputRequired("Enter the most you pay per kWh."), _finite,
                                   _PriceInUnit(_request_money)])
    budget_eth = MoneyField("Budget (optional)", places=None, validators=[Optional(), _finite])
    rule = SelectField("Pricing", choices=[_Choice("uniform", "Uniform price"),
                                           _Choice("pay_as_bid", "Pay as bid")], default="uniform")
    reveal_s = IntegerField("Reveal window (s)", validators=[
        Optional(), _not_huge, NumberRange(min=0, max=30 * 86400, message="Between 0 (open bids) and 30 days.")])
    report_s = IntegerField("Report window (s)", validators=[
        Optional(), _not_huge, NumberRange(min=0, max=30 * 86400, message="Between 0 (paid on acceptance) and 30 days.")])
    dispute_s = IntegerField("Dispute window (s)", validators=[
        Optional(), _not_huge, NumberRange(min=0, max=30 * 86400, message="Between 0 and 30 days.")])
    bond_eth = MoneyField("Bond per participant", places=None, validators=[Optional(), _finite])
    preview = SubmitField("Preview")
    post = SubmitField("Post request")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The cap and budget read in the requests' currency (the settlement token's, if one is
        # configured); bonds are ether only.
        try:
            symbol = _request_money().symbol
        except Exception:  # the chain is down: the token's symbol cannot be read (posting fails anyway)
            symbol = "settlement token"
        self.cap.label.text = f"Price cap ({symbol}/kWh)"
        self.budget_eth.label.text = f"Budget ({symbol}, optional)"
        self.bond_eth.label.text = f"Bond per participant ({_money().symbol})"

    @property
    def bond_wei(self) -> int:
        """The bond in base units (0 when empty)."""
        return _money().parse_amount(self.bond_eth.data, what="bond") if self.bond_eth.data is not None else 0

    def validate_bond_eth(self, field: DecimalField) -> None:
        if field.data is None:
            return
        if field.data < 0:
            raise ValidationError("The bond cannot be negative.")
        if _amount(field, "bond") >= 2**96:
            raise ValidationError("The bond is too large (under 2^96 base units).")
        # Rules between fields (a bond or a dispute window needs what it needs, the reveal
        # window ends by the event start) are the planner's: demand_response.planner.

    def validate_budget_eth(self, field: DecimalField) -> None:
        if field.data is None:
            return
        if field.data <= 0:
            raise ValidationError("The budget must be above 0 (or leave it empty for the minimum).")
        if field.data >= 2**128:
            raise ValidationError("The budget is far too large.")
        money = _request_money()
        if _amount(field, "budget", _request_money) > MAX_BUDGET_WEI:
            raise ValidationError(f"The budget is above the contract's maximum of 2^96 − 1 base units "
                                  f"({money.amount(MAX_BUDGET_WEI)}).")


class DeliveryForm(FlaskForm):
    """Confirm, dispute (with the utility's metered figure) or settle one participant's delivery."""

    consumer = HiddenField("Consumer", validators=[InputRequired("Which consumer?")])
    metered_kw = DecimalField("Metered reduction (kW)", places=None,
                              validators=[Optional(), _finite, NumberRange(min=Decimal(0), max=MAX_KW,
                                                                  message="Between 0 and %(max)s kW."),
                                          _whole_watts])
    submit = SubmitField("Go")

    def validate_consumer(self, field: HiddenField) -> None:
        from web3 import Web3

        if not Web3.is_address(field.data or ""):
            raise ValidationError("Not an Ethereum address.")
