-- pmr store: PostgreSQL DDL (DESIGN §8), at schema revision 0006.
--
-- This file, core/ledger/tables.py and the migrations in core/ledger/migrations/versions/
-- describe the same schema; tests/ledger/test_ledger_schema_sql.py builds a database from each on
-- a real PostgreSQL and compares their catalogs (columns, types, nullability, defaults,
-- constraints, indexes). Regenerate with `uv run python -m core.ledger.migrations schema-sql`.
--
-- Conventions: money and quantities are NUMERIC(38, 18) (18 places = ETH wei; values that do not
-- fit are refused by the application, never rounded); columns named *_usd are USD, a bare amount
-- is in the row's asset; *_at columns are TIMESTAMP WITH TIME ZONE (UTC); ts_* columns are integer
-- nanoseconds; closed vocabularies are VARCHAR + CHECK; constraint names follow
-- core.ledger.tables.NAMING_CONVENTION. No table holds credentials.
--
-- Apply with:  psql "$URL" -1 -f sql/schema.sql   (then `pmr db init` adds the views; the
-- alembic_version row at the end tells `pmr db upgrade` where this store stands)

-- venue: A named exchange connection (`binance-main`, `sim-a`); never its keys.
CREATE TABLE IF NOT EXISTS venue (
    id VARCHAR(64) NOT NULL,
    exchange VARCHAR(32) NOT NULL,
    mode VARCHAR(16) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT pk_venue PRIMARY KEY (id),
    CONSTRAINT ck_venue_mode CHECK (mode IN ('live', 'sim'))
);

-- wallet: A wallet (`spot`, `um` ...) of one account on one venue, and the pool it margins.
CREATE TABLE IF NOT EXISTS wallet (
    id BIGSERIAL NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    account VARCHAR(64) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    pool_id VARCHAR(64),
    CONSTRAINT pk_wallet PRIMARY KEY (id),
    CONSTRAINT uq_wallet_venue_id_account_kind UNIQUE (venue_id, account, kind),
    CONSTRAINT ck_wallet_kind CHECK (kind IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')),
    CONSTRAINT fk_wallet_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id)
);

-- snapshot: One read of balances, positions and prices taken at one instant.
CREATE TABLE IF NOT EXISTS snapshot (
    id BIGSERIAL NOT NULL,
    taken_at TIMESTAMP WITH TIME ZONE NOT NULL,
    source VARCHAR(16) NOT NULL,
    venue_id VARCHAR(64),
    CONSTRAINT pk_snapshot PRIMARY KEY (id),
    CONSTRAINT ck_snapshot_source CHECK (source IN ('venue', 'expected', 'config')),
    CONSTRAINT fk_snapshot_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id)
);
CREATE INDEX IF NOT EXISTS ix_snapshot_taken_at ON snapshot (taken_at);

-- balance_snapshot: A `core.domain.Balance` inside a snapshot.
CREATE TABLE IF NOT EXISTS balance_snapshot (
    id BIGSERIAL NOT NULL,
    snapshot_id BIGINT NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    wallet VARCHAR(16) NOT NULL,
    asset VARCHAR(16) NOT NULL,
    amount NUMERIC(38, 18) NOT NULL,
    loan NUMERIC(38, 18) NOT NULL,
    interest NUMERIC(38, 18) NOT NULL,
    CONSTRAINT pk_balance_snapshot PRIMARY KEY (id),
    CONSTRAINT uq_balance_snapshot_snapshot_id_venue_id_wallet_asset UNIQUE (snapshot_id, venue_id, wallet, asset),
    CONSTRAINT ck_balance_snapshot_wallet CHECK (wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')),
    CONSTRAINT fk_balance_snapshot_snapshot_id_snapshot FOREIGN KEY (snapshot_id) REFERENCES snapshot (id),
    CONSTRAINT fk_balance_snapshot_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id)
);
CREATE INDEX IF NOT EXISTS ix_balance_snapshot_snapshot_id ON balance_snapshot (snapshot_id);

-- position_snapshot: A `core.domain.Position` (with its instrument inlined) inside a snapshot.
CREATE TABLE IF NOT EXISTS position_snapshot (
    id BIGSERIAL NOT NULL,
    snapshot_id BIGINT NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    wallet VARCHAR(16) NOT NULL,
    symbol VARCHAR(64) NOT NULL,
    instrument_kind VARCHAR(16) NOT NULL,
    underlying VARCHAR(16) NOT NULL,
    quote VARCHAR(16) NOT NULL,
    contract_size NUMERIC(38, 18) NOT NULL,
    expiry_at TIMESTAMP WITH TIME ZONE,
    strike NUMERIC(38, 18),
    option_right VARCHAR(16),
    settlement VARCHAR(16),
    qty NUMERIC(38, 18) NOT NULL,
    entry_price NUMERIC(38, 18) NOT NULL,
    side VARCHAR(16) DEFAULT 'both' NOT NULL,
    CONSTRAINT pk_position_snapshot PRIMARY KEY (id),
    CONSTRAINT uq_position_snapshot_snapshot_id_venue_id_wallet_symbol_side UNIQUE (snapshot_id, venue_id, wallet, symbol, side),
    CONSTRAINT ck_position_snapshot_wallet CHECK (wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')),
    CONSTRAINT ck_position_snapshot_instrument_kind CHECK (instrument_kind IN ('spot', 'linear_perp', 'linear_future', 'inverse_perp', 'inverse_future', 'option')),
    CONSTRAINT ck_position_snapshot_option_right CHECK (option_right IN ('call', 'put')),
    CONSTRAINT ck_position_snapshot_settlement CHECK (settlement IN ('linear', 'inverse')),
    CONSTRAINT ck_position_snapshot_side CHECK (side IN ('both', 'long', 'short')),
    CONSTRAINT fk_position_snapshot_snapshot_id_snapshot FOREIGN KEY (snapshot_id) REFERENCES snapshot (id),
    CONSTRAINT fk_position_snapshot_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id)
);
CREATE INDEX IF NOT EXISTS ix_position_snapshot_snapshot_id ON position_snapshot (snapshot_id);

-- price_snapshot: A `core.domain.MarkPrice` inside a snapshot.
CREATE TABLE IF NOT EXISTS price_snapshot (
    id BIGSERIAL NOT NULL,
    snapshot_id BIGINT NOT NULL,
    symbol VARCHAR(64) NOT NULL,
    mark NUMERIC(38, 18) NOT NULL,
    index_price NUMERIC(38, 18),
    iv NUMERIC(38, 18),
    priced_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT pk_price_snapshot PRIMARY KEY (id),
    CONSTRAINT uq_price_snapshot_snapshot_id_symbol UNIQUE (snapshot_id, symbol),
    CONSTRAINT fk_price_snapshot_snapshot_id_snapshot FOREIGN KEY (snapshot_id) REFERENCES snapshot (id)
);
CREATE INDEX IF NOT EXISTS ix_price_snapshot_snapshot_id ON price_snapshot (snapshot_id);

-- margin_report: A pool's margin report (DESIGN §3.2). Bare figures are in `margin_currency`.
CREATE TABLE IF NOT EXISTS margin_report (
    id BIGSERIAL NOT NULL,
    pool_id VARCHAR(64) NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    snapshot_id BIGINT,
    model VARCHAR(16) NOT NULL,
    computed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    margin_currency VARCHAR(16) NOT NULL,
    equity NUMERIC(38, 18) NOT NULL,
    adjusted_equity NUMERIC(38, 18) NOT NULL,
    initial_margin NUMERIC(38, 18) NOT NULL,
    maint_margin NUMERIC(38, 18) NOT NULL,
    ratio NUMERIC(38, 18),
    venue_band VARCHAR(16) NOT NULL,
    desk_level VARCHAR(16),
    target_ratio NUMERIC(38, 18) NOT NULL,
    deficit_to_target NUMERIC(38, 18) NOT NULL,
    equity_usd NUMERIC(38, 18) NOT NULL,
    maint_margin_usd NUMERIC(38, 18) NOT NULL,
    deficit_usd NUMERIC(38, 18) NOT NULL,
    standard_maint_margin NUMERIC(38, 18),
    capital_efficiency NUMERIC(38, 18),
    worst_scenario VARCHAR(128),
    detail JSONB,
    CONSTRAINT pk_margin_report PRIMARY KEY (id),
    CONSTRAINT ck_margin_report_model CHECK (model IN ('unified', 'scenario', 'standard')),
    CONSTRAINT fk_margin_report_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id),
    CONSTRAINT fk_margin_report_snapshot_id_snapshot FOREIGN KEY (snapshot_id) REFERENCES snapshot (id)
);
CREATE INDEX IF NOT EXISTS ix_margin_report_computed_at ON margin_report (computed_at);
CREATE INDEX IF NOT EXISTS ix_margin_report_pool_id ON margin_report (pool_id);

-- stress_result: One (scenario, pool) outcome of a stress run, with time-to-cover (DESIGN §4).
CREATE TABLE IF NOT EXISTS stress_result (
    id BIGSERIAL NOT NULL,
    run_id VARCHAR(64) NOT NULL,
    scenario VARCHAR(128) NOT NULL,
    scenario_kind VARCHAR(32) NOT NULL,
    pool_id VARCHAR(64) NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    computed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    ratio_after NUMERIC(38, 18),
    band_after VARCHAR(16) NOT NULL,
    deficit_usd NUMERIC(38, 18) NOT NULL,
    covered_10s_usd NUMERIC(38, 18) NOT NULL,
    covered_60s_usd NUMERIC(38, 18) NOT NULL,
    covered_600s_usd NUMERIC(38, 18) NOT NULL,
    uncovered_usd NUMERIC(38, 18) NOT NULL,
    detail JSONB,
    CONSTRAINT pk_stress_result PRIMARY KEY (id),
    CONSTRAINT uq_stress_result_run_id_scenario_pool_id UNIQUE (run_id, scenario, pool_id),
    CONSTRAINT fk_stress_result_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id)
);
CREATE INDEX IF NOT EXISTS ix_stress_result_run_id ON stress_result (run_id);

-- margin_call: A detected breach of a pool's `call` threshold: at most one open call per pool.
CREATE TABLE IF NOT EXISTS margin_call (
    id VARCHAR(64) NOT NULL,
    pool_id VARCHAR(64) NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    margin_report_id BIGINT,
    status VARCHAR(16) NOT NULL,
    raised_at TIMESTAMP WITH TIME ZONE NOT NULL,
    closed_at TIMESTAMP WITH TIME ZONE,
    ratio_at_raise NUMERIC(38, 18),
    target_ratio NUMERIC(38, 18) NOT NULL,
    deficit_usd NUMERIC(38, 18) NOT NULL,
    note TEXT,
    kind VARCHAR(16) DEFAULT 'margin_call' NOT NULL,
    CONSTRAINT pk_margin_call PRIMARY KEY (id),
    CONSTRAINT ck_margin_call_status CHECK (status IN ('open', 'cured', 'escalated', 'cancelled', 'applied', 'partial')),
    CONSTRAINT ck_margin_call_kind CHECK (kind IN ('margin_call', 'prefund')),
    CONSTRAINT fk_margin_call_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id),
    CONSTRAINT fk_margin_call_margin_report_id_margin_report FOREIGN KEY (margin_report_id) REFERENCES margin_report (id)
);
CREATE INDEX IF NOT EXISTS ix_margin_call_pool_id ON margin_call (pool_id);
CREATE UNIQUE INDEX IF NOT EXISTS uq_margin_call_open_pool_id ON margin_call (pool_id) WHERE status = 'open' AND kind = 'margin_call';

-- plan: A routing plan (DESIGN §5.3), version `version` of one margin call's plans.
CREATE TABLE IF NOT EXISTS plan (
    id VARCHAR(64) NOT NULL,
    margin_call_id VARCHAR(64),
    version INTEGER NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    policy VARCHAR(16) NOT NULL,
    solver VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL,
    deadline_s DOUBLE PRECISION NOT NULL,
    deficit_usd NUMERIC(38, 18) NOT NULL,
    credit_usd NUMERIC(38, 18) NOT NULL,
    cost_usd NUMERIC(38, 18) NOT NULL,
    uncovered_usd NUMERIC(38, 18) NOT NULL,
    solve_ms DOUBLE PRECISION NOT NULL,
    alternative_policy VARCHAR(16),
    alternative_cost_usd NUMERIC(38, 18),
    config_repr TEXT NOT NULL,
    detail JSONB,
    CONSTRAINT pk_plan PRIMARY KEY (id),
    CONSTRAINT ck_plan_status CHECK (status IN ('optimal', 'partial', 'infeasible')),
    CONSTRAINT uq_plan_margin_call_id_version UNIQUE (margin_call_id, version),
    CONSTRAINT fk_plan_margin_call_id_margin_call FOREIGN KEY (margin_call_id) REFERENCES margin_call (id)
);
CREATE INDEX IF NOT EXISTS ix_plan_margin_call_id ON plan (margin_call_id);

-- plan_step: One allocation of a plan, in execution order (ordered by ETA).
CREATE TABLE IF NOT EXISTS plan_step (
    id BIGSERIAL NOT NULL,
    plan_id VARCHAR(64) NOT NULL,
    step_no INTEGER NOT NULL,
    source_id VARCHAR(128) NOT NULL,
    tier INTEGER NOT NULL,
    mode VARCHAR(16) NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    from_wallet VARCHAR(16),
    to_venue_id VARCHAR(64),
    to_wallet VARCHAR(16),
    asset VARCHAR(16) NOT NULL,
    amount NUMERIC(38, 18) NOT NULL,
    amount_usd NUMERIC(38, 18) NOT NULL,
    credit_usd NUMERIC(38, 18) NOT NULL,
    cost_usd NUMERIC(38, 18) NOT NULL,
    eta_s DOUBLE PRECISION NOT NULL,
    requests INTEGER,
    latency_s DOUBLE PRECISION,
    binding VARCHAR(32),
    origin_pool VARCHAR(64),
    CONSTRAINT pk_plan_step PRIMARY KEY (id),
    CONSTRAINT uq_plan_step_plan_id_step_no UNIQUE (plan_id, step_no),
    CONSTRAINT ck_plan_step_mode CHECK (mode IN ('pnl_offset', 'in_place', 'transfer', 'swap', 'withdrawal')),
    CONSTRAINT ck_plan_step_from_wallet CHECK (from_wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')),
    CONSTRAINT ck_plan_step_to_wallet CHECK (to_wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')),
    CONSTRAINT fk_plan_step_plan_id_plan FOREIGN KEY (plan_id) REFERENCES plan (id),
    CONSTRAINT fk_plan_step_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id),
    CONSTRAINT fk_plan_step_to_venue_id_venue FOREIGN KEY (to_venue_id) REFERENCES venue (id)
);
CREATE INDEX IF NOT EXISTS ix_plan_step_plan_id ON plan_step (plan_id);

-- plan_leg: One leg of a plan step: one venue operation, its asset amount and its idempotency key.
CREATE TABLE IF NOT EXISTS plan_leg (
    id BIGSERIAL NOT NULL,
    plan_id VARCHAR(64) NOT NULL,
    step_no INTEGER NOT NULL,
    leg_no INTEGER NOT NULL,
    kind VARCHAR(16) NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    from_wallet VARCHAR(16) NOT NULL,
    to_venue_id VARCHAR(64) NOT NULL,
    to_wallet VARCHAR(16) NOT NULL,
    asset VARCHAR(16) NOT NULL,
    to_asset VARCHAR(16),
    amount NUMERIC(38, 18) NOT NULL,
    amount_usd NUMERIC(38, 18) NOT NULL,
    price_usd NUMERIC(38, 18) NOT NULL,
    route_id VARCHAR(64),
    latency_s DOUBLE PRECISION NOT NULL,
    idempotency_key VARCHAR(32) NOT NULL,
    CONSTRAINT pk_plan_leg PRIMARY KEY (id),
    CONSTRAINT uq_plan_leg_plan_id_step_no_leg_no UNIQUE (plan_id, step_no, leg_no),
    CONSTRAINT fk_plan_leg_plan_id_plan_step FOREIGN KEY (plan_id, step_no) REFERENCES plan_step (plan_id, step_no),
    CONSTRAINT ck_plan_leg_kind CHECK (kind IN ('internal', 'sub_account', 'convert', 'margin_order', 'withdrawal')),
    CONSTRAINT ck_plan_leg_from_wallet CHECK (from_wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')),
    CONSTRAINT ck_plan_leg_to_wallet CHECK (to_wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')),
    CONSTRAINT fk_plan_leg_plan_id_plan FOREIGN KEY (plan_id) REFERENCES plan (id),
    CONSTRAINT fk_plan_leg_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id),
    CONSTRAINT fk_plan_leg_to_venue_id_venue FOREIGN KEY (to_venue_id) REFERENCES venue (id),
    CONSTRAINT uq_plan_leg_idempotency_key UNIQUE (idempotency_key)
);
CREATE INDEX IF NOT EXISTS ix_plan_leg_plan_id ON plan_leg (plan_id);

-- transfer: A collateral movement: the intent (written `pending` before sending) and its result.
CREATE TABLE IF NOT EXISTS transfer (
    id BIGSERIAL NOT NULL,
    idempotency_key VARCHAR(32) NOT NULL,
    margin_call_id VARCHAR(64),
    plan_id VARCHAR(64),
    step_no INTEGER,
    source_id VARCHAR(128),
    mode VARCHAR(16) NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    from_wallet VARCHAR(16) NOT NULL,
    to_venue_id VARCHAR(64) NOT NULL,
    to_wallet VARCHAR(16) NOT NULL,
    asset VARCHAR(16) NOT NULL,
    amount NUMERIC(38, 18) NOT NULL,
    to_asset VARCHAR(16),
    amount_usd NUMERIC(38, 18),
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    sent_at TIMESTAMP WITH TIME ZONE,
    finished_at TIMESTAMP WITH TIME ZONE,
    latency_ms DOUBLE PRECISION,
    venue_transfer_id VARCHAR(128),
    error_kind VARCHAR(64),
    error_message TEXT,
    result JSONB,
    plan_version INTEGER,
    leg_no INTEGER,
    route_id VARCHAR(64),
    owner VARCHAR(64),
    lease_expires_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT pk_transfer PRIMARY KEY (id),
    CONSTRAINT ck_transfer_mode CHECK (mode IN ('pnl_offset', 'in_place', 'transfer', 'swap', 'withdrawal')),
    CONSTRAINT ck_transfer_from_wallet CHECK (from_wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')),
    CONSTRAINT ck_transfer_to_wallet CHECK (to_wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')),
    CONSTRAINT ck_transfer_status CHECK (status IN ('pending', 'sent', 'confirmed', 'failed', 'unknown', 'refused')),
    CONSTRAINT fk_transfer_plan_id_plan_step FOREIGN KEY (plan_id, step_no) REFERENCES plan_step (plan_id, step_no),
    CONSTRAINT fk_transfer_plan_id_plan_leg FOREIGN KEY (plan_id, step_no, leg_no) REFERENCES plan_leg (plan_id, step_no, leg_no),
    CONSTRAINT uq_transfer_idempotency_key UNIQUE (idempotency_key),
    CONSTRAINT fk_transfer_margin_call_id_margin_call FOREIGN KEY (margin_call_id) REFERENCES margin_call (id),
    CONSTRAINT fk_transfer_plan_id_plan FOREIGN KEY (plan_id) REFERENCES plan (id),
    CONSTRAINT fk_transfer_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id),
    CONSTRAINT fk_transfer_to_venue_id_venue FOREIGN KEY (to_venue_id) REFERENCES venue (id)
);
CREATE INDEX IF NOT EXISTS ix_transfer_margin_call_id ON transfer (margin_call_id);
CREATE INDEX IF NOT EXISTS ix_transfer_plan_id ON transfer (plan_id);
CREATE INDEX IF NOT EXISTS ix_transfer_route_id ON transfer (route_id);
CREATE INDEX IF NOT EXISTS ix_transfer_status ON transfer (status);

-- audit_event: One immutable event, hash-chained to its predecessor so tampering shows (DESIGN §7).
CREATE TABLE IF NOT EXISTS audit_event (
    seq BIGINT NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    kind VARCHAR(64) NOT NULL,
    ts_event BIGINT NOT NULL,
    ts_init BIGINT NOT NULL,
    margin_call_id VARCHAR(64),
    plan_id VARCHAR(64),
    transfer_key VARCHAR(32),
    payload JSONB NOT NULL,
    prev_hash VARCHAR(64) NOT NULL,
    hash VARCHAR(64) NOT NULL,
    hash_scheme VARCHAR(16) DEFAULT 'sha256' NOT NULL,
    CONSTRAINT pk_audit_event PRIMARY KEY (seq),
    CONSTRAINT ck_audit_event_hash_scheme CHECK (hash_scheme IN ('sha256', 'hmac-sha256')),
    CONSTRAINT uq_audit_event_event_id UNIQUE (event_id),
    CONSTRAINT uq_audit_event_hash UNIQUE (hash)
);
CREATE INDEX IF NOT EXISTS ix_audit_event_kind ON audit_event (kind);
CREATE INDEX IF NOT EXISTS ix_audit_event_margin_call_id ON audit_event (margin_call_id);

-- audit_anchor: The audit chain's head `(seq, hash)` as it was at `anchored_at`, kept off the chain.
CREATE TABLE IF NOT EXISTS audit_anchor (
    id BIGSERIAL NOT NULL,
    seq BIGINT NOT NULL,
    hash VARCHAR(64) NOT NULL,
    anchored_at TIMESTAMP WITH TIME ZONE NOT NULL,
    recorded_by VARCHAR(64) NOT NULL,
    mac VARCHAR(64),
    CONSTRAINT pk_audit_anchor PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_audit_anchor_seq ON audit_anchor (seq);

-- recon_drift: A difference between what the ledger expected and what a venue reported.
CREATE TABLE IF NOT EXISTS recon_drift (
    id BIGSERIAL NOT NULL,
    detected_at TIMESTAMP WITH TIME ZONE NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    wallet VARCHAR(16) NOT NULL,
    asset VARCHAR(16) NOT NULL,
    expected NUMERIC(38, 18) NOT NULL,
    reported NUMERIC(38, 18) NOT NULL,
    drift NUMERIC(38, 18) NOT NULL,
    drift_usd NUMERIC(38, 18),
    tolerance NUMERIC(38, 18) NOT NULL,
    expected_snapshot_id BIGINT,
    reported_snapshot_id BIGINT,
    status VARCHAR(16) NOT NULL,
    resolved_at TIMESTAMP WITH TIME ZONE,
    note TEXT,
    CONSTRAINT pk_recon_drift PRIMARY KEY (id),
    CONSTRAINT ck_recon_drift_wallet CHECK (wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')),
    CONSTRAINT ck_recon_drift_status CHECK (status IN ('open', 'explained', 'resolved')),
    CONSTRAINT fk_recon_drift_venue_id_venue FOREIGN KEY (venue_id) REFERENCES venue (id),
    CONSTRAINT fk_recon_drift_expected_snapshot_id_snapshot FOREIGN KEY (expected_snapshot_id) REFERENCES snapshot (id),
    CONSTRAINT fk_recon_drift_reported_snapshot_id_snapshot FOREIGN KEY (reported_snapshot_id) REFERENCES snapshot (id)
);
CREATE INDEX IF NOT EXISTS ix_recon_drift_detected_at ON recon_drift (detected_at);

-- rate_weight: One write's request weight, spent on a venue's API family at `ts_ns` (revision 0005).
CREATE TABLE IF NOT EXISTS rate_weight (
    id BIGSERIAL NOT NULL,
    venue_id VARCHAR(64) NOT NULL,
    family VARCHAR(16) NOT NULL,
    ts_ns BIGINT NOT NULL,
    weight INTEGER NOT NULL,
    owner VARCHAR(64),
    CONSTRAINT pk_rate_weight PRIMARY KEY (id),
    CONSTRAINT ck_rate_weight_weight_positive CHECK (weight > 0)
);
CREATE INDEX IF NOT EXISTS ix_rate_weight_ts_ns ON rate_weight (ts_ns);

-- venue_ban: A venue that banned us (HTTP 418) until `banned_until_ns`: honoured by every process
CREATE TABLE IF NOT EXISTS venue_ban (
    venue_id VARCHAR(64) NOT NULL,
    banned_until_ns BIGINT NOT NULL,
    family VARCHAR(16),
    reason TEXT,
    CONSTRAINT pk_venue_ban PRIMARY KEY (venue_id)
);

-- alembic_version: the schema revision this store is at (core/ledger/migrations).
CREATE TABLE IF NOT EXISTS alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO alembic_version (version_num)
SELECT '0006' WHERE NOT EXISTS (SELECT 1 FROM alembic_version);
