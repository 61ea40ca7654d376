"""ISO 4217 currencies the service accepts, with their minor units.

Amounts are integers in the minor unit: 1999 ``usd`` is 19.99 USD, 1999 ``jpy``
is 1999 JPY, 1999 ``kwd`` is 1.999 KWD. Fund codes, precious metals and test
codes (XAU, XTS, ...) are left out on purpose: nobody pays in them.

A gateway may count a currency in other units than ISO's. Its table here says
how (keyed by ``Settings.gateway``), so the API can refuse an amount the
configured gateway cannot hold exactly before anything starts, and an adapter
converts with the same rule, without either importing the other.
``to_gateway_units`` and ``from_gateway_units`` raise :class:`NotRepresentable`.

Stripe's units (its "Supported currencies" page, special cases): BIF CLP DJF
GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF have no decimals there
(ISO gives MGA two: our 12300 is Stripe's 123, our 12345 has no Stripe
equivalent); ISK keeps two decimals there in whole krónur (our 500 is Stripe's
50000); BHD JOD KWD OMR TND have three, the last one 0 (our 1230 KWD-minor
passes, 1234 does not). IQD and LYD are three-decimal in ISO but not on
Stripe's three-decimal list: its unit for them is undocumented, so they are
refused rather than guessed. HUF and TWD are two-decimal for charges (only
payouts are restricted). Every other currency is counted as ISO counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

_ZERO_DECIMAL = "bif clp djf gnf isk jpy kmf krw pyg rwf ugx vnd vuv xaf xof xpf"
_THREE_DECIMAL = "bhd iqd jod kwd lyd omr tnd"
_TWO_DECIMAL = (
    "aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob brl bsd btn bwp "
    "byn bzd cad cdf chf cny cop crc cup cve czk dkk dop dzd egp ern etb eur fjd fkp gbp "
    "gel ghs gip gmd gtq gyd hkd hnl htg huf idr ils inr irr jmd kes kgs khr kpw kyd kzt "
    "lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn "
    "nio nok npr nzd pab pen pgk php pkr pln qar ron rsd rub sar sbd scr sdg sek sgd shp "
    "sle sos srd ssp stn svc syp szl thb tjs tmt top try ttd twd tzs uah usd uyu uzs ves "
    "wst xcd yer zar zmw zwg"
)

MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(_TWO_DECIMAL.split(), 2),
    **dict.fromkeys(_ZERO_DECIMAL.split(), 0),
    **dict.fromkeys(_THREE_DECIMAL.split(), 3),
}


def is_known(currency: str) -> bool:
    return currency in MINOR_UNITS


def minor_units(currency: str) -> int:
    """Decimal places of ``currency``; KeyError for a currency we do not know."""
    return MINOR_UNITS[currency]


def _in_major_units(amount: int, currency: str, grouped: bool = False) -> str:
    places = minor_units(currency)
    value = Decimal(amount).scaleb(-places)
    return f"{value:{',' if grouped else ''}.{places}f}"


def format_amount(amount: int, currency: str) -> str:
    """``1999, "usd"`` -> ``"19.99 USD"``: how people read money, for summaries."""
    return f"{_in_major_units(amount, currency)} {currency.upper()}"


# How people write these amounts; any other currency is written "12.345 KWD".
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}


def display_amount(amount: int, currency: str) -> str:
    """``1999, "usd"`` -> ``"$19.99"``; ``123456, "kwd"`` -> ``"123.456 KWD"``:
    money as a customer reads it on a receipt."""
    number = _in_major_units(amount, currency, grouped=True)
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{number} {currency.upper()}"


class NotRepresentable(ValueError):
    """An amount the gateway cannot hold exactly in its own units; the message
    names the currency and the rule."""


@dataclass(frozen=True)
class GatewayUnit:
    """How a gateway counts a currency: ``decimals`` places, and amounts in
    steps of ``step`` of its own units."""

    decimals: int
    step: int = 1


_STRIPE_ZERO_DECIMAL = "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf"
_STRIPE_THREE_DECIMAL = "bhd jod kwd omr tnd"
# None: the gateway's unit for the currency is unknown, so nothing is sent in it.
_STRIPE: dict[str, GatewayUnit | None] = {
    **dict.fromkeys(_STRIPE_ZERO_DECIMAL.split(), GatewayUnit(0)),
    # Two decimals there in whole krónur: ours times 100, a multiple of 100 by construction.
    "isk": GatewayUnit(2),
    **dict.fromkeys(_STRIPE_THREE_DECIMAL.split(), GatewayUnit(3, step=10)),
    "iqd": None,
    "lyd": None,
}

# The simulator speaks ISO minor units: nothing differs.
GATEWAY_UNITS: dict[str, dict[str, GatewayUnit | None]] = {"simulator": {}, "stripe": _STRIPE}


def counts_as_iso(gateway: str) -> bool:
    """Whether ``gateway`` counts every currency in ISO minor units (nothing to refuse)."""
    return not GATEWAY_UNITS[gateway]


def _unit(currency: str, gateway: str) -> GatewayUnit:
    table = GATEWAY_UNITS[gateway]
    places = minor_units(currency)
    if currency not in table:
        return GatewayUnit(places)
    unit = table[currency]
    if unit is None:
        raise NotRepresentable(
            f"the {gateway} gateway does not document its unit for {currency.upper()}: "
            f"{currency.upper()} amounts cannot be sent to it"
        )
    return unit


def _gateway_per_iso(currency: str, unit: GatewayUnit) -> Fraction:
    """Gateway units in one ISO minor unit."""
    return Fraction(10**unit.decimals, 10 ** minor_units(currency))


def to_gateway_units(amount: int, currency: str, gateway: str) -> int:
    """``amount`` (ISO minor units) in ``gateway``'s units; NotRepresentable
    when it has no exact equivalent there."""
    unit = _unit(currency, gateway)
    converted = amount * _gateway_per_iso(currency, unit)
    if converted.denominator != 1 or converted.numerator % unit.step:
        # The smallest ISO amount the gateway takes, and so every multiple of it.
        multiple = (unit.step / _gateway_per_iso(currency, unit)).numerator
        raise NotRepresentable(
            f"the {gateway} gateway takes {currency.upper()} in steps of "
            f"{format_amount(multiple, currency)}: amount {amount} "
            f"({format_amount(amount, currency)}) must be a multiple of {multiple}"
        )
    return converted.numerator


def from_gateway_units(amount: int, currency: str, gateway: str) -> int:
    """An amount ``gateway`` reports, in ISO minor units; NotRepresentable when
    it is a fraction of one (nothing this service sent)."""
    unit = _unit(currency, gateway)
    converted = amount / _gateway_per_iso(currency, unit)
    if converted.denominator != 1:
        raise NotRepresentable(
            f"{amount} in the {gateway} gateway's {currency.upper()} units is not a whole "
            "number of ISO minor units"
        )
    return converted.numerator
