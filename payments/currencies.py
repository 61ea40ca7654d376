"""ISO 4217 currencies the service accepts, with their minor units.

Amounts are integers in the minor unit: 1999 ``usd`` is 19.99 USD, 1999 ``jpy``
is 1999 JPY, 1999 ``kwd`` is 1.999 KWD. Fund codes, precious metals and test
codes (XAU, XTS, ...) are left out on purpose: nobody pays in them.
"""

from __future__ import annotations

from decimal import Decimal

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


def format_amount(amount: int, currency: str) -> str:
    """``1999, "usd"`` -> ``"19.99 USD"``: how people read money, for summaries."""
    places = minor_units(currency)
    value = Decimal(amount).scaleb(-places)
    return f"{value:.{places}f} {currency.upper()}"
