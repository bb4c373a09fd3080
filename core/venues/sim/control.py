"""Client of the simulator's control endpoint (``/_control/...`` on ``pmr sim serve``).

A test in one process drives the faults of a simulator served by another: inject a fault, hold
a venue's answer, wait until a request is held, then (say) ``kill -9`` the client and release the
answer into the void. The server side is :mod:`core.venues.sim.server`; the calls are listed in
its module docstring and in ``docs/venues.md``.

Examples
--------
>>> ctl = SimControl("http://127.0.0.1:8800")  # doctest: +SKIP
>>> hold_id = ctl.hold("sim-a", "/sapi/v1/asset/transfer", method="POST")  # doctest: +SKIP
>>> ctl.wait_held("sim-a", hold_id, timeout_s=10)  # doctest: +SKIP
True
>>> ctl.release("sim-a", hold_id, drop=True)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from core.errors import ConfigError
from core.venues.sim.faults import FaultKind

__all__ = ["SimControl"]


class SimControl:
    """Talk to ``base_url`` (``http://127.0.0.1:PORT``); loopback addresses only."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        host = urlsplit(base_url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(
                f"the simulator's control endpoint is loopback only, not {host!r}",
                base_url=base_url,
            )
        self._base = base_url.rstrip("/") + "/_control/"
        self._timeout_s = timeout_s
        self._session = requests.Session()
        self._session.trust_env = False  # never through a proxy

    def _post(self, call: str, body: dict[str, Any], *, timeout_s: float | None = None) -> Any:
        resp = self._session.post(
            self._base + call, json=body, timeout=timeout_s or self._timeout_s
        )
        answer = resp.json()
        if resp.status_code != 200:
            raise ValueError(f"control call {call} refused: {answer.get('error', answer)}")
        return answer

    def faults(self) -> dict[str, Any]:
        """Every venue's fault plan, as the server describes it."""
        resp = self._session.get(self._base + "faults", timeout=self._timeout_s)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def inject(self, venue: str, kind: FaultKind | str, path_prefix: str, **options: Any) -> None:
        """``FaultPlan.inject`` on ``venue`` (``method``, ``times``, ``retry_after_s`` ...)."""
        self._post(
            "faults",
            {
                "venue": venue,
                "action": "inject",
                "kind": str(FaultKind(kind)),
                "path_prefix": path_prefix,
                **options,
            },
        )

    def shock(self, venue: str, moves: dict[str, float]) -> None:
        """Move ``venue``'s prices from now on: ``{"ETH": -0.26}`` is ETH −26 %."""
        self._post("faults", {"venue": venue, "action": "shock", "moves": moves})

    def hold(
        self,
        venue: str,
        path_prefix: str,
        *,
        method: str | None = None,
        applied: bool = True,
        max_hold_s: float = 60.0,
    ) -> str:
        """Hold the answer to the next matching request; returns the hold's id."""
        kind = FaultKind.HELD_APPLIED if applied else FaultKind.HELD_NOT_APPLIED
        answer = self._post(
            "faults",
            {
                "venue": venue,
                "action": "inject",
                "kind": kind.value,
                "path_prefix": path_prefix,
                "method": method,
                "max_hold_s": max_hold_s,
            },
        )
        return str(answer["hold_id"])

    def wait_held(self, venue: str, hold_id: str, *, timeout_s: float) -> bool:
        """Whether a request was held within ``timeout_s`` (the server waits, not us)."""
        answer = self._post(
            "wait",
            {"venue": venue, "hold_id": hold_id, "timeout_s": timeout_s},
            timeout_s=timeout_s + self._timeout_s,
        )
        return bool(answer["held"])

    def release(self, venue: str, hold_id: str | None = None, *, drop: bool = False) -> int:
        """Release one hold (or every hold with ``hold_id=None``); returns how many."""
        body: dict[str, Any] = {"venue": venue, "drop": drop}
        if hold_id is None:
            body["all"] = True
        else:
            body["hold_id"] = hold_id
        return int(self._post("release", body)["released"])

    def act(self, venue: str, action: str, **options: Any) -> None:
        """Any other plan action: ``ban_ip``, ``lag_transfer_history``, ``halt_pair``,
        ``halt_venue``, ``skew_desk_clock``, ``resume``, ``clear``."""
        self._post("faults", {"venue": venue, "action": action, **options})

    def close(self) -> None:
        self._session.close()
