-- pmr named queries over the store, read by core.ledger.queries.load_queries().
-- Portable: each runs on SQLite and PostgreSQL (tested on both in tests/ledger/test_ledger_queries.py).
-- Money columns come back as Decimal on PostgreSQL and as exact text on SQLite.

-- name: unsettled_transfers
-- why: after a crash or a timeout, these movements must be looked up at the venue by their
--      idempotency key before anything is resent (DESIGN §7: never blind-retry a write).
SELECT idempotency_key, venue_id, from_wallet, to_venue_id, to_wallet, asset, amount,
       status, attempts, created_at, sent_at, margin_call_id, plan_id, plan_version, step_no,
       leg_no, route_id, owner, lease_expires_at
FROM transfer
WHERE status IN ('pending', 'sent', 'unknown')
ORDER BY created_at, id;

-- name: open_margin_calls
-- why: the margin calls still being cured, oldest first, for the monitor and the desk screen
--      (an open pre-funding, kind 'prefund', is not a call to cure).
SELECT id, pool_id, venue_id, raised_at, ratio_at_raise, target_ratio, deficit_usd
FROM margin_call
WHERE status = 'open' AND kind = 'margin_call'
ORDER BY raised_at, id;

-- name: latest_venue_balances
-- why: the newest balances a venue reported, per wallet and asset: the "reported" side of
--      reconciliation and the starting point of the router's sources.
SELECT b.venue_id, b.wallet, b.asset, b.amount, b.loan, b.interest, s.taken_at, s.id AS snapshot_id
FROM balance_snapshot AS b
JOIN snapshot AS s ON s.id = b.snapshot_id
WHERE b.venue_id = :venue_id
  AND s.id = (
      SELECT s2.id
      FROM snapshot AS s2
      JOIN balance_snapshot AS b2 ON b2.snapshot_id = s2.id
      WHERE s2.source = 'venue' AND b2.venue_id = :venue_id
      ORDER BY s2.taken_at DESC, s2.id DESC
      LIMIT 1
  )
ORDER BY b.wallet, b.asset;

-- name: audit_trail_for_call
-- why: a post-mortem reads every event of one margin call in the order it was recorded,
--      with the hashes that prove the order was not rewritten.
SELECT seq, event_id, kind, ts_event, ts_init, plan_id, transfer_key, payload, prev_hash, hash
FROM audit_event
WHERE margin_call_id = :margin_call_id
ORDER BY seq;
