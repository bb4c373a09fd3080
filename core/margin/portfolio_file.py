"""The self-contained portfolio JSON read by ``pmr margin --portfolio`` (schema in docs/margin.md).

A file carries one pool's balances, positions (with their instrument definitions), prices and
margin parameters, so margin can be computed without a desk configuration. Errors name the
file and the key path (``positions[0].qty``) like the desk loader's, and the file is read by
``core.files``, like every file pmr reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from core.config import InstrumentCfg, validation_problems
from core.domain import (
    Asset,
    Balance,
    MarginModelKind,
    MarkPrice,
    Pool,
    Portfolio,
    Position,
    WalletKind,
)
from core.errors import ConfigError, DataError, UnknownAssetError
from core.files import read_json_file
from core.margin.params import FrozenModel, MarginParams

__all__ = ["PortfolioFile", "load_params", "load_portfolio_file", "parse_portfolio"]


class FileBalance(FrozenModel):
    wallet: WalletKind
    asset: str
    amount: Decimal
    loan: Decimal = Decimal(0)
    interest: Decimal = Decimal(0)


class FilePosition(FrozenModel):
    wallet: WalletKind
    symbol: str
    qty: Decimal
    entry_price: Decimal


class FilePrice(FrozenModel):
    """A mark: an asset's USD price or an instrument's mark (``iv`` for options).

    ``at`` defaults to the file's ``as_of`` (a fresh price); give it to test staleness.
    """

    symbol: str
    # NaN/inf/negative pass here so the domain check names the symbol (NaNPriceError).
    mark: Decimal = Field(allow_inf_nan=True)
    index: Decimal | None = Field(None, allow_inf_nan=True)
    iv: Decimal | None = Field(None, allow_inf_nan=True)
    at: datetime | None = None


class PortfolioFile(FrozenModel):
    """One pool, self-contained: what ``pmr margin --portfolio`` reads."""

    pool: str = "portfolio"
    venue: str = "portfolio"
    model: MarginModelKind = MarginModelKind.UNIFIED
    margin_currency: str = "USDT"
    wallets: tuple[WalletKind, ...] | None = None  # default: every wallet the file mentions
    as_of: datetime
    params: MarginParams = MarginParams()
    instruments: tuple[InstrumentCfg, ...] = ()
    balances: tuple[FileBalance, ...] = ()
    positions: tuple[FilePosition, ...] = ()
    prices: tuple[FilePrice, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _aware(self) -> PortfolioFile:
        if self.as_of.tzinfo is None:
            raise ValueError("as_of must carry a timezone (e.g. 2026-11-27T12:00:00Z)")
        return self

    def pool_spec(self, model: MarginModelKind | None = None) -> Pool:
        wallets = self.wallets or tuple(
            {b.wallet for b in self.balances} | {p.wallet for p in self.positions}
        )
        if not wallets:
            raise DataError("the portfolio has neither balances nor positions", pool=self.pool)
        return Pool(
            id=self.pool,
            venue=self.venue,
            wallets=frozenset(wallets),
            model=model or self.model,
            margin_currency=Asset(self.margin_currency),
        )

    def to_portfolio(self) -> Portfolio:
        """Domain objects; an unknown instrument symbol or asset code is a ``DataError``."""
        instruments = {}
        for i, inst in enumerate(self.instruments):
            try:
                instruments[inst.symbol] = inst.to_domain()
            except ValueError as exc:
                raise DataError(f"instruments[{i}]: {exc}") from None
        positions = []
        for i, p in enumerate(self.positions):
            inst_d = instruments.get(p.symbol)
            if inst_d is None:
                raise UnknownAssetError(
                    "position refers to an instrument the file does not define",
                    symbol=p.symbol,
                    where=f"positions[{i}]",
                )
            positions.append(Position(self.venue, p.wallet, inst_d, p.qty, p.entry_price))
        balances = [
            Balance(self.venue, b.wallet, Asset(b.asset), b.amount, b.loan, b.interest)
            for b in self.balances
        ]
        prices = [
            MarkPrice(pr.symbol, pr.mark, pr.at or self.as_of, pr.index, pr.iv)
            for pr in self.prices
        ]
        return Portfolio.of(balances, positions, prices, self.as_of)


def _errors(exc: ValidationError) -> str:
    return "\n  ".join(validation_problems(exc))


def parse_portfolio(data: Mapping[str, Any], *, source: str = "<memory>") -> PortfolioFile:
    """Validate an already-parsed portfolio mapping; one ``ConfigError`` lists every problem."""
    try:
        return PortfolioFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid portfolio {source}:\n  {_errors(exc)}", file=source) from None


def load_portfolio_file(path: str | Path, params_path: str | Path | None = None) -> PortfolioFile:
    """Read a portfolio JSON; keys of an optional params JSON override its ``params`` block."""
    p = Path(path)
    data = read_json_file(p, what="portfolio")
    if not isinstance(data, dict):
        raise ConfigError("a portfolio file must hold a JSON object", file=str(p))
    if params_path is not None:
        merged = dict(data.get("params") or {})
        merged.update(load_params(params_path))
        data = {**data, "params": merged}
    return parse_portfolio(data, source=str(p))


def load_params(path: str | Path) -> dict[str, Any]:
    """Read and validate a margin-parameters JSON (the ``params`` block on its own)."""
    p = Path(path)
    data = read_json_file(p, what="margin params")
    if not isinstance(data, dict):
        raise ConfigError("a params file must hold a JSON object", file=str(p))
    try:
        MarginParams.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid margin params {p}:\n  {_errors(exc)}", file=str(p)) from None
    return data
