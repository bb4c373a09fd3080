"""Pre-funding: what to pre-position where so chosen scenarios are covered in time (DESIGN §4).

The product brief asks to "pre-authorise fallback asset transfers to avoid cold-wallet delay".
Time-to-cover says, per scenario and pool, how much of the deficit no plan covers within a
deadline (a halted venue, slow withdrawals, a cut weight limit). Collateral already sitting in
the pool when the shock comes needs no transfer at all, so the remedy is to move some now.

The optimisation (cvxpy LP, HiGHS): choose USD amounts ``x_r ≥ 0`` along the desk's routes
that end in a pool's wallets and start outside every pool (spot, funding or cold wallets:
moving collateral out of another pool would only move the problem), minimising

    Σ_r x_r · (fee_bps_r + carry_bps) / 10⁴      (fixed fees are left out: it stays an LP)

subject to, for every chosen scenario s and pool p short at the deadline,

    Σ_{r → p} x_r · rate(asset_r) · (1 + m_s(asset_r)) ≥ short(s, p)

(``rate`` is the pool's collateral rate of the asset, ``m_s`` the scenario's USD move of it) and
``Σ_{r from wallet w, asset a} x_r ≤ balance(w, a)``. Margin is not linear in collateral in
every model (a coin balance also sits in the scenario model's risk matrix), so the
recommendation is **checked by re-running the scenarios on the state with the moves applied**
and re-solved on what is still short, at most three rounds; the advice reports the result of
that check, not the LP's promise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from core.config import DeskConfig, RouteCfg
from core.domain import Balance, Portfolio
from core.errors import DataError
from core.stress.evaluate import COVER_DEADLINES_S, PoolStress, evaluate
from core.stress.scenarios import Scenario

__all__ = [
    "PrefundAdvice",
    "Prepositioning",
    "apply_moves",
    "collateral_rate",
    "prefund",
    "uncovered",
]

_ZERO = Decimal(0)
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Prepositioning:
    """One move to make now: ``amount`` of ``asset`` along ``route_id`` into ``pool_id``."""

    route_id: str
    pool_id: str
    venue: str
    from_wallet: str
    to_venue: str
    to_wallet: str
    asset: str
    amount: Decimal
    amount_usd: Decimal
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class PrefundAdvice:
    """The moves, their cost, and uncovered USD per (scenario, pool) before and after them.

    ``status``: ``nothing_to_do`` (every chosen scenario already covered in time), ``covered``
    (after the moves, checked by re-running), ``partial`` (the wallets outside the pools do not
    hold enough, or no route reaches the pool; ``after`` says what is left).
    """

    deadline_s: float
    moves: tuple[Prepositioning, ...]
    cost_usd: Decimal
    before: dict[tuple[str, str], Decimal]
    after: dict[tuple[str, str], Decimal]
    status: str

    def lines(self) -> list[str]:
        """The advice in sentences a risk officer can act on."""
        if self.status == "nothing_to_do":
            return [
                f"nothing to pre-position: every chosen scenario is covered within {self.deadline_s:g} s"
            ]
        out = []
        for m in self.moves:
            cuts = [
                f"{s}: {_m(self.before[(s, p)])} → {_m(self.after.get((s, p), _ZERO))}"
                for (s, p) in self.before
                if p == m.pool_id and self.before[(s, p)] > 0
            ]
            out.append(
                f"move {m.amount:,f} {m.asset} ({_m(m.amount_usd)} USD) from "
                f"{m.venue}/{m.from_wallet} to {m.to_venue}/{m.to_wallet} ({m.pool_id}, route "
                f"{m.route_id}): uncovered at {self.deadline_s:g} s " + "; ".join(cuts)
            )
        left = {k: v for k, v in self.after.items() if v > 0}
        if left:
            worst = max(left, key=lambda k: left[k])
            out.append(
                f"still uncovered after the moves: {_m(left[worst])} USD in {worst[0]} on {worst[1]} "
                "(not enough outside the pools, or no route reaches the pool)"
            )
        return out


def _m(usd: Decimal) -> str:
    if abs(usd) >= 1_000_000:
        return f"{usd / 1_000_000:,.2f} M"
    return f"{usd:,.0f}"


def _short(rows: Sequence[PoolStress], deadline_s: float) -> dict[tuple[str, str], Decimal]:
    pick = {10.0: "covered_10s_usd", 60.0: "covered_60s_usd", 600.0: "covered_10m_usd"}
    field = pick[deadline_s]
    return {(r.scenario, r.pool_id): r.deficit_usd - getattr(r, field) for r in rows}


def uncovered(
    desk: DeskConfig, state: Portfolio, scenarios: Sequence[Scenario], deadline_s: float
) -> dict[tuple[str, str], Decimal]:
    """USD not covered within ``deadline_s`` per (scenario, pool) on ``state`` (≤ 0: covered):
    the check the advice runs on the moved state, and ``pmr prefund --apply`` on the venues
    after executing it."""
    if deadline_s not in COVER_DEADLINES_S:
        raise DataError("deadline_s must be one of 10, 60 or 600", value=deadline_s)
    return _short(evaluate(desk, state, scenarios), deadline_s)


def _candidates(desk: DeskConfig) -> list[tuple[RouteCfg, str]]:
    """(route, destination pool) for routes from outside every pool into a pool's wallet."""
    pooled = {(p.venue, w) for p in desk.pools for w in p.wallets}
    out = []
    for r in desk.routes:
        if (r.venue, r.from_wallet) in pooled:
            continue
        for p in desk.pools:
            if p.venue == r.destination_venue and r.to_wallet in p.wallets:
                out.append((r, p.id))
    return out


def collateral_rate(desk: DeskConfig, asset: str) -> float:
    """The rate the LP credits ``asset`` at: the desk's flat rate, or its first tier's (1 when
    the desk declares none)."""
    rate = desk.collateral_rates.get(asset)
    if rate is None:
        return 1.0
    if rate.rate is not None:
        return float(rate.rate)
    assert rate.tiers is not None
    return float(rate.tiers[0].rate)


def apply_moves(state: Portfolio, moves: Sequence[Prepositioning]) -> Portfolio:
    """``state`` with each move's amount taken from its origin wallet and put in its pool.

    Raises ``DataError`` when an origin wallet does not hold the amount (nothing applied).
    """
    book: dict[tuple[str, str, str], Balance] = {
        (b.venue, b.wallet.value, b.asset.code): b for b in state.balances
    }
    from dataclasses import replace

    from core.domain import Asset, WalletKind

    for m in moves:
        src = book.get((m.venue, m.from_wallet, m.asset))
        if src is None or src.amount < m.amount:
            raise DataError(
                "origin wallet does not hold the amount to pre-position",
                where=f"{m.venue}/{m.from_wallet}",
                asset=m.asset,
                amount=m.amount,
                held=None if src is None else src.amount,
            )
        book[(m.venue, m.from_wallet, m.asset)] = replace(src, amount=src.amount - m.amount)
        key = (m.to_venue, m.to_wallet, m.asset)
        dst = book.get(key)
        book[key] = (
            replace(dst, amount=dst.amount + m.amount)
            if dst is not None
            else Balance(m.to_venue, WalletKind.parse(m.to_wallet), Asset(m.asset), m.amount)
        )
    return Portfolio.of(book.values(), state.positions, state.prices.values(), state.as_of)


def prefund(
    desk: DeskConfig,
    state: Portfolio,
    scenarios: Sequence[Scenario],
    *,
    deadline_s: float = 60.0,
    carry_bps: float = 1.0,
    rounds: int = 3,
) -> PrefundAdvice:
    """The cheapest pre-positioning that covers ``scenarios`` within ``deadline_s`` (checked).

    ``carry_bps``: the cost of idle collateral per USD pre-positioned (basis points), so that a
    free route still moves no more than needed. ``deadline_s`` is one of 10, 60 or 600.
    """
    if deadline_s not in COVER_DEADLINES_S:
        raise DataError("deadline_s must be one of 10, 60 or 600", value=deadline_s)
    if not scenarios:
        raise DataError("pre-funding needs at least one scenario")
    before = _short(evaluate(desk, state, scenarios), deadline_s)
    if all(v <= 0 for v in before.values()):
        return PrefundAdvice(deadline_s, (), _ZERO, before, before, "nothing_to_do")
    cands = _candidates(desk)
    # Each round solves from scratch for what must be covered: the original shortfall plus
    # what the last check found still short. A need the moves did not reduce at all is
    # *hopeless* by pre-positioning (moving a wallet that the router could already draw on
    # only relabels the source) and is dropped, so no collateral is moved for it.
    extra: dict[tuple[str, str], Decimal] = {}
    hopeless: set[tuple[str, str]] = set()
    total: dict[int, Decimal] = {}
    after = before
    for _ in range(rounds):
        need = {
            k: v + extra.get(k, _ZERO) for k, v in before.items() if v > 0 and k not in hopeless
        }
        if not need:
            break
        total = _solve(desk, state, scenarios, cands, need, {}, carry_bps)
        if not total:
            break
        moved = apply_moves(state, _moves(desk, state, cands, total))
        after = _short(evaluate(desk, moved, scenarios), deadline_s)
        still = {k: after[k] for k in need if after[k] > 0}
        if not still:
            break
        for k, v in still.items():
            if v >= before[k] - _CENT:
                hopeless.add(k)
            else:
                extra[k] = extra.get(k, _ZERO) + v
    moves = _moves(desk, state, cands, total)
    cost = sum((m.cost_usd for m in moves), _ZERO)
    status = "covered" if all(v <= 0 for v in after.values()) else "partial"
    return PrefundAdvice(deadline_s, tuple(moves), cost, before, after, status)


def _available_usd(state: Portfolio, venue: str, wallet: str, asset: str) -> float:
    for b in state.balances:
        if b.venue == venue and b.wallet.value == wallet and b.asset.code == asset:
            return max(0.0, float(b.amount) * float(state.price(asset, where="pre-funding").mark))
    return 0.0


def _solve(
    desk: DeskConfig,
    state: Portfolio,
    scenarios: Sequence[Scenario],
    cands: list[tuple[RouteCfg, str]],
    need: dict[tuple[str, str], Decimal],
    already: dict[int, Decimal],
    carry_bps: float,
) -> dict[int, Decimal]:
    """One LP round: extra USD per candidate index covering ``need`` (empty: nothing helps)."""
    from core.lazy import import_cvxpy
    from core.routing.problem import silence_highs_banner

    cp = import_cvxpy()
    silence_highs_banner()  # stdout is the advice; HiGHS's first-solve banner is not
    useful = [i for i, (_, p) in enumerate(cands) if any(pp == p for (_, pp) in need)]
    if not useful:
        return {}
    x = cp.Variable(len(useful), nonneg=True)
    by_name = {s.name: s for s in scenarios}
    covers = []
    shorts = []
    for (sname, pid), short in need.items():
        pool = desk.pool(pid)
        moves = by_name[sname].moves_on(pool.venue)
        terms = [
            x[j]
            * collateral_rate(desk, cands[i][0].asset)
            * (1.0 + moves.get(cands[i][0].asset, 0.0))
            for j, i in enumerate(useful)
            if cands[i][1] == pid
        ]
        if terms:
            covers.append(cp.sum(cp.hstack(terms)))
            shorts.append(float(short) * 1.0001)
    if not covers:
        return {}
    # Slack on each need, priced far above any fee: covers everything when the wallets can,
    # else as much as they can (the advice then says what is left).
    slack = cp.Variable(len(covers), nonneg=True)
    cons = [c + slack[k] >= shorts[k] for k, c in enumerate(covers)]
    origins: dict[tuple[str, str, str], list[int]] = {}
    for j, i in enumerate(useful):
        r = cands[i][0]
        origins.setdefault((r.venue, r.from_wallet.value, r.asset), []).append(j)
    for (v, w, a), js in origins.items():
        used = sum(float(already.get(useful[j], _ZERO)) for j in js)
        cons.append(cp.sum(x[js]) <= max(0.0, _available_usd(state, v, w, a) - used))
    unit = [(float(cands[i][0].fee_bps) + carry_bps) / 1e4 for i in useful]
    prob = cp.Problem(cp.Minimize(1e3 * cp.sum(slack) + unit @ x), cons)
    prob.solve(solver=cp.HIGHS)
    if x.value is None:
        return {}
    return {i: _cents_up(x.value[j]) for j, i in enumerate(useful) if x.value[j] > 0.005}


def _cents_up(v: float) -> Decimal:
    return Decimal(repr(float(v))).quantize(_CENT, rounding=ROUND_CEILING)


def _moves(
    desk: DeskConfig, state: Portfolio, cands: list[tuple[RouteCfg, str]], usd: dict[int, Decimal]
) -> list[Prepositioning]:
    out = []
    for i, amount_usd in sorted(usd.items()):
        if amount_usd <= 0:
            continue
        r, pid = cands[i]
        price = state.price(r.asset, where=f"route {r.id}").mark
        step = desk.assets[r.asset].step
        amount = (amount_usd / price / step).to_integral_value(rounding=ROUND_CEILING) * step
        value = (amount * price).quantize(_CENT)
        cost = (value * r.fee_bps / Decimal(10_000) + r.fee_usd).quantize(_CENT)
        out.append(
            Prepositioning(
                route_id=r.id,
                pool_id=pid,
                venue=r.venue,
                from_wallet=r.from_wallet.value,
                to_venue=r.destination_venue,
                to_wallet=r.to_wallet.value,
                asset=r.asset,
                amount=amount,
                amount_usd=value,
                cost_usd=cost,
            )
        )
    return out
