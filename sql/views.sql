-- pmr post-mortem views (DESIGN §8). PostgreSQL only: they use percentile_cont, FILTER and JSONB.
--
-- Each block is a named statement read by core.ledger.queries (`-- name:` + `-- why:`);
-- `pmr db init` creates them on PostgreSQL with CREATE OR REPLACE, so re-running is safe.
-- Tested with rows in tests/ledger/test_ledger_views.py.

-- name: transfer_latency_by_route
-- why: which routes are fast and reliable enough to count on inside a margin-call deadline;
--      the router's latency estimates and the post-mortem's "what was slow" both read this.
-- One row per transfer leg. Latency percentiles are over confirmed legs only (a failure's answer
-- time says nothing about how long a completed move takes); percentile_cont interpolates
-- linearly. Refused legs were never sent (a gate denied them): counted apart.
CREATE OR REPLACE VIEW transfer_latency_by_route AS
SELECT
    t.venue_id,
    t.from_wallet,
    t.to_venue_id,
    t.to_wallet,
    t.asset,
    t.mode,
    count(*) AS n_transfers,
    count(*) FILTER (WHERE t.status = 'confirmed') AS n_confirmed,
    count(*) FILTER (WHERE t.status = 'failed') AS n_failed,
    count(*) FILTER (WHERE t.status = 'unknown') AS n_unknown,
    count(*) FILTER (WHERE t.status IN ('pending', 'sent')) AS n_in_flight,
    count(*) FILTER (WHERE t.status = 'refused') AS n_refused,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY t.latency_ms)
        FILTER (WHERE t.status = 'confirmed') AS latency_p50_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY t.latency_ms)
        FILTER (WHERE t.status = 'confirmed') AS latency_p95_ms,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY t.latency_ms)
        FILTER (WHERE t.status = 'confirmed') AS latency_p99_ms,
    max(t.latency_ms) FILTER (WHERE t.status = 'confirmed') AS latency_max_ms,
    coalesce(sum(t.amount) FILTER (WHERE t.status = 'confirmed'), 0) AS confirmed_amount,
    coalesce(sum(t.amount_usd) FILTER (WHERE t.status = 'confirmed'), 0) AS confirmed_usd,
    min(t.created_at) AS first_at,
    max(t.created_at) AS last_at
FROM transfer AS t
GROUP BY t.venue_id, t.from_wallet, t.to_venue_id, t.to_wallet, t.asset, t.mode;

-- name: source_mix_per_call
-- why: where the collateral that answered each margin call came from, planned vs delivered,
--      so a post-mortem sees which sources carried the cure and which ones failed it.
-- planned_usd sums the steps of every plan recorded for the call (re-plans included);
-- delivered_usd counts what arrived: the confirmed *last* leg of each step (a swap then a
-- transfer is two legs but one delivery; a transfer not from a plan counts as itself);
-- delivered_share_frac is the source's share of everything delivered for that call.
-- n_transfers counts legs; n_failed_or_unknown failed, unknown and refused ones.
CREATE OR REPLACE VIEW source_mix_per_call AS
WITH planned AS (
    SELECT
        p.margin_call_id,
        s.source_id,
        s.mode,
        min(s.tier) AS tier,
        count(DISTINCT p.id) AS n_plans,
        sum(s.amount_usd) AS planned_usd,
        sum(s.credit_usd) AS planned_credit_usd
    FROM plan_step AS s
    JOIN plan AS p ON p.id = s.plan_id
    WHERE p.margin_call_id IS NOT NULL
    GROUP BY p.margin_call_id, s.source_id, s.mode
),
last_leg AS (
    SELECT l.plan_id, l.step_no, max(l.leg_no) AS leg_no
    FROM plan_leg AS l
    GROUP BY l.plan_id, l.step_no
),
moved AS (
    SELECT
        t.margin_call_id,
        t.source_id,
        t.mode,
        count(*) AS n_transfers,
        count(*) FILTER (WHERE t.status = 'confirmed') AS n_confirmed,
        count(*) FILTER (WHERE t.status IN ('failed', 'unknown', 'refused')) AS n_failed_or_unknown,
        coalesce(
            sum(t.amount_usd) FILTER (
                WHERE t.status = 'confirmed' AND (t.leg_no IS NULL OR t.leg_no = ll.leg_no)
            ),
            0
        ) AS delivered_usd
    FROM transfer AS t
    LEFT JOIN last_leg AS ll ON ll.plan_id = t.plan_id AND ll.step_no = t.step_no
    WHERE t.margin_call_id IS NOT NULL
    GROUP BY t.margin_call_id, t.source_id, t.mode
),
joined AS (
    SELECT
        coalesce(pl.margin_call_id, mv.margin_call_id) AS margin_call_id,
        coalesce(pl.source_id, mv.source_id) AS source_id,
        coalesce(pl.mode, mv.mode) AS mode,
        pl.tier,
        coalesce(pl.n_plans, 0) AS n_plans,
        coalesce(pl.planned_usd, 0) AS planned_usd,
        coalesce(pl.planned_credit_usd, 0) AS planned_credit_usd,
        coalesce(mv.n_transfers, 0) AS n_transfers,
        coalesce(mv.n_confirmed, 0) AS n_confirmed,
        coalesce(mv.n_failed_or_unknown, 0) AS n_failed_or_unknown,
        coalesce(mv.delivered_usd, 0) AS delivered_usd
    FROM planned AS pl
    FULL OUTER JOIN moved AS mv
        ON mv.margin_call_id = pl.margin_call_id
        AND mv.source_id = pl.source_id
        AND mv.mode = pl.mode
)
SELECT
    j.*,
    j.delivered_usd
        / nullif(sum(j.delivered_usd) OVER (PARTITION BY j.margin_call_id), 0)
        AS delivered_share_frac
FROM joined AS j;

-- name: transfer_failure_rates
-- why: which venue and mode fail or leave outcomes unknown, per UTC day, so a degrading
--      venue shows up as a trend before it costs a margin call.
CREATE OR REPLACE VIEW transfer_failure_rates AS
SELECT
    date_trunc('day', t.created_at AT TIME ZONE 'UTC') AS day_utc,
    t.venue_id,
    t.mode,
    count(*) AS n_transfers,
    count(*) FILTER (WHERE t.status = 'failed') AS n_failed,
    count(*) FILTER (WHERE t.status = 'unknown') AS n_unknown,
    (count(*) FILTER (WHERE t.status = 'failed'))::numeric / count(*) AS failed_frac,
    (count(*) FILTER (WHERE t.status = 'unknown'))::numeric / count(*) AS unknown_frac,
    avg(t.attempts)::numeric AS mean_attempts,
    count(*) FILTER (WHERE t.status = 'refused') AS n_refused
FROM transfer AS t
GROUP BY 1, t.venue_id, t.mode;

-- name: venue_failure_rates
-- why: which venue lets margin calls down: of the legs that reached it, how many failed and
--      how many timed out (outcome unknown, even when a lookup settled them later: only the
--      audit trail remembers those), beside the legs our own gates refused before sending.
-- A leg counts as sent once it left (sent, confirmed, failed, unknown); pending legs never
-- left and refused legs never reach a venue. Timeouts come from LegUnknown audit events
-- (joined on the leg's key), refusals from refused rows and LegRefused events; troubled_frac counts each leg
-- once, whether it failed, is still unknown, or timed out and was then resolved.
CREATE OR REPLACE VIEW venue_failure_rates AS
WITH timed_out AS (
    SELECT DISTINCT e.transfer_key
    FROM audit_event AS e
    WHERE e.kind = 'LegUnknown' AND e.transfer_key IS NOT NULL
),
legs AS (
    SELECT
        t.venue_id,
        count(*) FILTER (WHERE t.status IN ('sent', 'confirmed', 'failed', 'unknown')) AS n_sent,
        count(*) FILTER (WHERE t.status = 'confirmed') AS n_confirmed,
        count(*) FILTER (WHERE t.status = 'failed') AS n_failed,
        count(*) FILTER (WHERE t.status = 'unknown') AS n_unknown_now,
        count(*) FILTER (WHERE o.transfer_key IS NOT NULL) AS n_timed_out,
        count(*) FILTER (
            WHERE t.status IN ('failed', 'unknown') OR o.transfer_key IS NOT NULL
        ) AS n_troubled,
        count(*) FILTER (WHERE t.status = 'pending') AS n_pending,
        string_agg(DISTINCT t.error_kind, ', ' ORDER BY t.error_kind)
            FILTER (WHERE t.status = 'failed') AS failed_error_kinds,
        max(t.finished_at) FILTER (WHERE t.status = 'failed') AS last_failed_at
    FROM transfer AS t
    LEFT JOIN timed_out AS o ON o.transfer_key = t.idempotency_key
    GROUP BY t.venue_id
),
refused AS (
    -- A refused leg is a transfer row in state 'refused' (the executor records it) and a
    -- LegRefused audit event; either alone counts, each leg once.
    SELECT r.venue_id, count(DISTINCT r.leg_key) AS n_refused
    FROM (
        SELECT t.venue_id, t.idempotency_key AS leg_key
        FROM transfer AS t
        WHERE t.status = 'refused'
        UNION
        SELECT e.payload ->> 'venue_id', e.transfer_key
        FROM audit_event AS e
        WHERE e.kind = 'LegRefused'
    ) AS r
    GROUP BY r.venue_id
)
SELECT
    v.id AS venue_id,
    coalesce(l.n_sent, 0) AS n_sent,
    coalesce(l.n_confirmed, 0) AS n_confirmed,
    coalesce(l.n_failed, 0) AS n_failed,
    coalesce(l.n_unknown_now, 0) AS n_unknown_now,
    coalesce(l.n_timed_out, 0) AS n_timed_out,
    coalesce(l.n_pending, 0) AS n_pending,
    coalesce(r.n_refused, 0) AS n_refused,
    l.n_failed::numeric / nullif(l.n_sent, 0) AS failed_frac,
    l.n_timed_out::numeric / nullif(l.n_sent, 0) AS timed_out_frac,
    l.n_troubled::numeric / nullif(l.n_sent, 0) AS troubled_frac,
    l.failed_error_kinds,
    l.last_failed_at
FROM venue AS v
LEFT JOIN legs AS l ON l.venue_id = v.id
LEFT JOIN refused AS r ON r.venue_id = v.id;
