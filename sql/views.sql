-- pmr post-mortem views (DESIGN §8). PostgreSQL only: they use percentile_cont and FILTER.
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
